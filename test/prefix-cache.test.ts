// The prompt-prefix cache is exact: a prompt that reuses stored KV blocks gives the same greedy
// tokens as a cold run, and the logits of every position after the cached prefix are the same bits,
// within one process (memory) and after a restart (a new process reading the SQLite file). On the
// fixtures' stories260K and qwen3-tiny, and on a synthetic model of Bonsai's shape.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Caches } from '../src/cache/caches.js';
import { CACHE_DEFAULTS } from '../src/cache/defaults.js';
import { Model } from '../src/engine/engine.js';
import { blockHashes, chainRoot } from '../src/engine/prefix.js';
import { synthesize } from '../src/gguf/synth.js';
import { native } from '../src/native.js';
import { CLI, runCli } from './helpers/cli.js';
import { fixture, HAVE_FIXTURES } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-prefix-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const BLOCK = 16;
const settings = (file: string) => ({ ...CACHE_DEFAULTS, path: file, blockTokens: BLOCK });

/** A prompt of about `tokens` tokens of plain story text. */
function storyPrompt(model: Model, tokens: number): number[] {
  const sentence = 'Once upon a time there was a little girl named Lily who loved to play in the park with her dog. ';
  let text = sentence;
  while (model.tokenizer.encode(text, { addSpecial: true }).length < tokens) text += sentence;
  return model.tokenizer.encode(text, { addSpecial: true }).slice(0, tokens);
}

interface Subject {
  name: string;
  file: () => string;
}

const subjects: Subject[] = [
  { name: 'stories260K', file: () => fixture('stories260K/stories260K.gguf') },
  { name: 'qwen3-tiny q1_0', file: () => fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf') },
  { name: 'qwen3-tiny f32', file: () => fixture('qwen3-tiny/models/tiny-qwen3-f32.gguf') },
  { name: 'synthetic Bonsai shape (2 layers)', file: () => path.join(tmp, 'synth.gguf') },
];

beforeAll(async () => {
  if (!HAVE_FIXTURES) return;
  await synthesize(path.join(tmp, 'synth.gguf'), { shape: '1.7b', layers: 2, seed: 5, vocabFrom: fixture('qwen3-vocab/ggml-vocab-qwen3.gguf') });
}, 120_000);

describe.skipIf(!HAVE_FIXTURES)('prompt-prefix cache: reuse is exact', () => {
  for (const kvType of ['f32', 'f16'] as const) {
    for (const subject of subjects) {
      it(`${subject.name}, ${kvType} KV: greedy tokens and logits after the cached prefix are identical, in memory and after a restart`, async () => {
        const db = path.join(tmp, `${subject.name.replace(/\W+/g, '-')}-${kvType}.db`);
        const load = () => Model.load(subject.file(), { threads: 2, contextSize: 256, kvType });
        const greedy = (ids: number[]) => ({ promptIds: ids, maxTokens: 12, sampling: { temperature: 0 } });

        const cold = await load();
        const prompt = storyPrompt(cold, 5 * BLOCK + 7);
        const expected = await cold.generate(greedy(prompt));
        const coldLogits = await cold.logits(prompt);
        cold.close();
        expect(expected.timings.cachedTokens).toBe(0);

        // First run with the cache: nothing to reuse yet, the prompt's 5 blocks are stored.
        const caches = new Caches(settings(db));
        const first = await load();
        await caches.attach(first);
        const stored = await first.generate(greedy(prompt));
        expect(stored.ids).toEqual(expected.ids);
        expect(stored.timings.cachedTokens).toBe(0);
        first.close();

        // Same process, a fresh context: the 5 blocks come from memory.
        const second = await load();
        await caches.attach(second);
        const warm = await second.generate(greedy(prompt));
        expect(warm.timings.cachedTokens).toBe(5 * BLOCK);
        expect(warm.ids).toEqual(expected.ids);
        expect(warm.text).toBe(expected.text);
        expect(caches.prefix.stats().memory.hits).toBe(5);
        second.close();
        caches.close();

        // "After a restart": new caches over the same file, nothing in memory.
        const restarted = new Caches(settings(db));
        const third = await load();
        await restarted.attach(third);
        const fromDisk = await third.generate(greedy(prompt));
        expect(fromDisk.timings.cachedTokens).toBe(5 * BLOCK);
        expect(fromDisk.ids).toEqual(expected.ids);
        expect(restarted.prefix.stats().disk.hits).toBe(5);

        // Logits: the stored blocks imported into a fresh context, then the rest of the prompt.
        const root = chainRoot(restarted.modelIdentity!, kvType, third.kernels, BLOCK);
        const hashes = blockHashes(root, prompt, BLOCK, 5);
        const raw = await native.loadModel(subject.file(), {});
        const ctx = raw.createContext({ nCtx: 256, kvType, threads: 2 });
        hashes.forEach((hash, b) => ctx.kvImport(Int32Array.from(prompt.slice(b * BLOCK, (b + 1) * BLOCK)), restarted.prefix.get(hash)!));
        const rest = await ctx.eval(Int32Array.from(prompt.slice(5 * BLOCK)), true);
        const vocab = raw.hparams.nVocab;
        const after = new Uint8Array(coldLogits.buffer, coldLogits.byteOffset + 5 * BLOCK * vocab * 4, rest.byteLength);
        expect(rest.length).toBe((prompt.length - 5 * BLOCK) * vocab);
        expect(Buffer.compare(Buffer.from(after), Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength))).toBe(0);
        ctx.close();
        raw.close();
        third.close();
        restarted.close();
      }, 120_000);
    }
  }

  it('a different model, KV type or block size never shares blocks (the chain root differs)', () => {
    const roots = new Set([
      chainRoot('sha256:a', 'f32', 'avx2', 64),
      chainRoot('sha256:b', 'f32', 'avx2', 64),
      chainRoot('sha256:a', 'f16', 'avx2', 64),
      chainRoot('sha256:a', 'f32', 'scalar', 64),
      chainRoot('sha256:a', 'f32', 'avx2', 32),
    ]);
    expect(roots.size).toBe(5);
    // A block's name depends on every token before it, not only its own.
    const [a] = blockHashes('r', [1, 2, 3, 4], 2, 2).slice(1);
    const [b] = blockHashes('r', [9, 2, 3, 4], 2, 2).slice(1);
    expect(a).not.toBe(b);
  });

  it('bonsai chat --session: the conversation is taken up again by the next start', () => {
    const db = path.join(tmp, 'chat.db');
    const chat = (line: string) =>
      spawnSync(process.execPath, [CLI, 'chat', '-m', fixture('stories260K/stories260K.gguf'), '--session', 'kitchen', '--cache', db, '--temp', '0', '-n', '6'], { input: `${line}\n`, encoding: 'utf8', timeout: 60_000 });
    const first = chat('Lily went to the park.');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stderr).toBe('');
    const second = chat('Then she went home.');
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).toBe('bonsai chat: session kitchen: 2 earlier messages\n');
    const noCache = spawnSync(process.execPath, [CLI, 'chat', '-m', fixture('stories260K/stories260K.gguf'), '--session', 'x', '--no-cache'], { input: 'hi\n', encoding: 'utf8', timeout: 60_000 });
    expect(noCache.status).toBe(1);
    expect(noCache.stderr).toMatch(/--session .* cannot be used with --no-cache/);
  });

  it('bonsai run: --json reports cached_tokens; a second run reuses the prefix, --no-cache does not', async () => {
    const db = path.join(tmp, 'cli.db');
    const model = fixture('stories260K/stories260K.gguf');
    const prompt = 'Once upon a time there was a little girl named Lily who loved to play in the park with her dog. '.repeat(4);
    const run = async (...extra: string[]) => {
      const r = await runCli(['run', '-m', model, '-p', prompt, '-n', '8', '--temp', '0', '--json', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { tokens: number[]; timings: { cached_tokens: number } };
    };
    const first = await run('--cache', db);
    const second = await run('--cache', db);
    const none = await run('--no-cache');
    expect(first.timings.cached_tokens).toBe(0);
    expect(second.timings.cached_tokens).toBeGreaterThanOrEqual(64);
    expect(none.timings.cached_tokens).toBe(0);
    expect(second.tokens).toEqual(first.tokens);
    expect(none.tokens).toEqual(first.tokens);
  });
});
