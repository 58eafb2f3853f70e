// The 1-bit model in models/: what a fresh clone runs with nothing configured. Checked against the
// format rules, against an F32 dequantized copy of itself through the engine, against the figures
// its model card states (models/quality.json, measured by scripts/evaluate-students.ts), and as a
// newcomer uses it: `bonsai run` and `bonsai serve` + `bonsai ask` with no model named.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { peerModuleUrl } from '../src/bench/peer.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { Model } from '../src/engine/engine.js';
import { perplexity } from '../src/engine/perplexity.js';
import { readGguf } from '../src/gguf/reader.js';
import { runCli } from './helpers/cli.js';
import { writeF32Copy } from './helpers/dequantize.js';
import { HAVE_FIXTURES, REPO_ROOT, fixture, maxAbsDiff } from './helpers/fixtures.js';
import { freePort } from './helpers/mosquitto.js';
import { serve } from './helpers/serve.js';

interface QualityRow {
  id: string;
  bytes: number;
  valHead100: { ppl: number; tokens: number };
  storySample: { ppl: number };
  greedy: string;
}
const quality = JSON.parse(readFileSync(path.join(REPO_ROOT, 'models', 'quality.json'), 'utf8')) as { results: QualityRow[] };
const card = quality.results.find((r) => r.id === 'bundled')!;
const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-bundled-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function firstParagraphs(n: number): string {
  const text = readFileSync(fixture('tinystories/tinystories_val_head.txt'), 'utf8');
  return text.split('\n\n').map((p) => p.replace(/^\n+|\n+$/g, '')).filter(Boolean).slice(0, n).join('\n\n');
}

describe('the bundled model', () => {
  it('is a llama GGUF of Q1_0 matrices and F32 norms, well under 1 MB, the size its card states', () => {
    const info = readGguf(BUNDLED_MODEL);
    expect(statSync(BUNDLED_MODEL).size).toBe(card.bytes);
    expect(card.bytes).toBeLessThan(100_000);
    expect(info.metadata['general.architecture']).toBe('llama');
    expect(info.dataOffset % 32).toBe(0);
    for (const t of info.tensors) expect(t.typeName, t.name).toBe(t.dims.length === 1 ? 'f32' : 'q1_0');
    expect(info.metadata['tokenizer.ggml.model']).toBe('llama');
    expect((info.metadata['tokenizer.ggml.tokens'] as unknown[]).length).toBe(512);
  });

  it.skipIf(!HAVE_FIXTURES)('is at least 20x smaller than its F32 teacher', () => {
    expect(statSync(fixture('stories260K/stories260K.gguf')).size / card.bytes).toBeGreaterThanOrEqual(20);
  });

  it.skipIf(!HAVE_FIXTURES)('scores the perplexity its card states, and its Q1_0 kernels agree with its F32 dequantized copy', async () => {
    const f32 = path.join(dir, 'bundled-f32.gguf');
    await writeF32Copy(BUNDLED_MODEL, f32);
    const q1 = await Model.load(BUNDLED_MODEL, { threads: 2 });
    const ref = await Model.load(f32, { threads: 2 });
    try {
      const r = await perplexity(q1, firstParagraphs(100), '\n\n');
      expect(r.tokens_scored).toBe(card.valHead100.tokens);
      // the card was measured on x86; each kernel path sums in its own order (arm64 neon: 2.6e-5 apart)
      expect(Math.abs(r.ppl / card.valHead100.ppl - 1)).toBeLessThan(1e-4);
      const rf = await perplexity(ref, firstParagraphs(100), '\n\n');
      // Q1_0 products take Q8_0 activations: the two paths differ by 8-bit rounding, no more
      expect(Math.abs(Math.log(rf.ppl / r.ppl))).toBeLessThan(0.01);
      const ids = q1.tokenizer.encode('Once upon a time, there was a little dog', { addSpecial: true });
      const [a, b] = [await q1.logits(ids), await ref.logits(ids)];
      expect(maxAbsDiff(a, b) / Math.max(...Array.from(b, Math.abs))).toBeLessThan(0.02);
      expect(a.indexOf(Math.max(...a))).toBe(b.indexOf(Math.max(...b)));
    } finally {
      q1.close();
      ref.close();
    }
  });

  const peer = peerModuleUrl();
  it.skipIf(!peer)('is read by llama.cpp (node-llama-cpp), whose greedy choices are ours or a near-tie of ours', async () => {
    interface PeerSequence { evaluate(ids: number[], o: { temperature: number }): AsyncGenerator<number> }
    interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
    interface PeerModel { createContext(o: { contextSize: number; threads: number }): Promise<PeerContext>; dispose(): Promise<void> }
    const { getLlama } = (await import(peer!)) as { getLlama(o: object): Promise<{ loadModel(o: object): Promise<PeerModel> }> };
    const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 0, logLevel: 'error', progressLogs: false });
    const model = await llama.loadModel({ modelPath: BUNDLED_MODEL, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    const ours = await Model.load(BUNDLED_MODEL, { threads: 1 });
    try {
      const prompt = ours.tokenizer.encode('Once upon a time', { addSpecial: true });
      const theirs: number[] = [];
      const tokens = context.getSequence().evaluate(prompt, { temperature: 0 });
      for (let i = 0; i < 32; i++) theirs.push((await tokens.next()).value as number);
      await tokens.return(undefined);
      // teacher-forced on llama.cpp's text, every token it chose is within 0.05 of our best logit
      // (its KV cache is f16, ours f32: exact ties may fall either way, nothing more)
      const all = await ours.logits([...prompt, ...theirs]);
      const V = 512;
      let agree = 0;
      theirs.forEach((tok, i) => {
        const row = all.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
        const best = Math.max(...row);
        expect(best - row[tok]!, `token ${i}`).toBeLessThan(0.05);
        if (row[tok] === best) agree++;
      });
      expect(agree).toBeGreaterThanOrEqual(30);
    } finally {
      ours.close();
      await context.dispose();
      await model.dispose();
    }
  });

  it('is what `bonsai run` runs when no model is given', async () => {
    const r = await runCli(['run', '-p', 'Once upon a time', '-n', '24', '--temp', '0', '--no-cache']);
    expect(r.code, r.stderr).toBe(0);
    // the text, then the one newline `bonsai run` ends its output with
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(card.greedy.startsWith(`Once upon a time${r.stdout.slice(0, -1)}`)).toBe(true);
    expect(r.stdout.trim().length).toBeGreaterThan(20);
  });

  it('answers through `bonsai serve` and `bonsai ask` with nothing configured', async () => {
    const port = await freePort();
    const s = serve(['--embedded-port', String(port)], {}, null);
    await s.waitLog('online', 30_000);
    const r = await runCli(['ask', '--url', `mqtt://127.0.0.1:${port}`, '--max-tokens', '24', '--temperature', '0', 'Once upon a time']);
    expect(r.code, r.stderr).toBe(0);
    expect(card.greedy.startsWith(`Once upon a time${r.stdout.replace(/\n$/, '')}`)).toBe(true);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });
});
