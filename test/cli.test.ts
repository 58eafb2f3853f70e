// The CLI against the golden outputs of llama2.c's run.c and llama.cpp for stories260K.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../src/native.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, fixture, maxAbsDiff, readF32, readJson } from './helpers/fixtures.js';

const MODEL = fixture('stories260K/stories260K.gguf');
const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface RunCGolden {
  prompt: string;
  tokens: number[];
  prompt_tokens: number[];
  text: string;
  logits_first_positions: { pos: number; input_token: number; logits: number[] }[];
}

interface RunJson {
  prompt_tokens: number[];
  tokens: number[];
  text: string;
  timings: Record<string, number>;
}

describe.skipIf(!HAVE_FIXTURES)('bonsai run (stories260K, greedy)', () => {
  for (const threads of ['1', '2']) {
    it(`reproduces run.c's 256 greedy tokens from BOS with ${threads} thread(s)`, async () => {
      const golden = readJson<RunCGolden>('stories260K/golden/greedy_empty_n256.json');
      const r = await runCli(['run', '-m', MODEL, '-p', '', '-n', '256', '--temp', '0', '-t', threads, '--json']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as RunJson;
      expect(out.prompt_tokens).toEqual([1]);
      expect([...out.prompt_tokens, ...out.tokens]).toEqual(golden.tokens);
      expect(out.text).toBe(golden.text);
      for (const key of ['load_ms', 'prompt_ms', 'prompt_tokens_per_s', 'gen_ms', 'gen_tokens_per_s']) {
        expect(out.timings[key]).toBeGreaterThanOrEqual(0);
      }
    });
  }

  it('continues "Once upon a time" exactly like run.c (5 prompt + 60 generated ids)', async () => {
    const golden = readJson<RunCGolden>('stories260K/golden/greedy_once_upon_a_time_n64.json');
    const r = await runCli(['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '60', '--temp', '0', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as RunJson;
    expect(out.prompt_tokens).toEqual(golden.prompt_tokens);
    expect([...out.prompt_tokens, ...out.tokens]).toEqual(golden.tokens);
    expect(golden.prompt + out.text).toBe(golden.text);
  });

  it('--draft with --draft-model (the bundled model drafting) still continues exactly like run.c', async () => {
    const golden = readJson<RunCGolden>('stories260K/golden/greedy_once_upon_a_time_n64.json');
    const r = await runCli(['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '60', '--temp', '0', '--draft', '6', '--draft-model', BUNDLED_MODEL, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as RunJson & { timings: { drafted_tokens: number; accepted_tokens: number } };
    expect([...out.prompt_tokens, ...out.tokens]).toEqual(golden.tokens);
    expect(out.timings.drafted_tokens).toBeGreaterThan(0);
    expect(out.timings.accepted_tokens).toBeLessThanOrEqual(out.timings.drafted_tokens);
  });

  it('streams the generated text (not the prompt) to stdout', async () => {
    const golden = readJson<RunCGolden>('stories260K/golden/greedy_once_upon_a_time_n64.json');
    const r = await runCli(['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '60', '--temp', '0']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${golden.text.slice(golden.prompt.length)}\n`);
  });

  it('gives the same tokens for the same seed when sampling', async () => {
    const args = ['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '40', '--temp', '1', '--seed', '42', '--json'];
    const [a, b] = await Promise.all([runCli(args), runCli(args)]);
    expect(JSON.parse(a.stdout).tokens).toEqual(JSON.parse(b.stdout).tokens);
    const c = await runCli([...args.slice(0, -3), '--seed', '43', '--json']);
    expect(JSON.parse(c.stdout).tokens).not.toEqual(JSON.parse(a.stdout).tokens);
  });
});

describe.skipIf(!HAVE_FIXTURES)('bonsai logits (stories260K)', () => {
  it("matches run.c's logits at positions 0-7 within 1e-4", async () => {
    const golden = readJson<RunCGolden>('stories260K/golden/greedy_empty_n256.json');
    const ids = golden.tokens.slice(0, 8);
    const out = path.join(tmp, 'runc.f32');
    const r = await runCli(['logits', '-m', MODEL, '--ids', ids.join(','), '-o', out]);
    expect(r.code).toBe(0);
    const logits = readF32(out);
    expect(logits.length).toBe(8 * 512);
    for (const row of golden.logits_first_positions) {
      expect(row.input_token).toBe(ids[row.pos]);
      expect(maxAbsDiff(logits.subarray(row.pos * 512, (row.pos + 1) * 512), row.logits)).toBeLessThanOrEqual(1e-4);
    }
  });

  it("matches llama.cpp's logits at all 257 positions within 1e-4", async () => {
    const golden = readJson<{ prompt_ids: number[]; generated_ids: number[] }>('stories260K/golden-llamacpp/greedy_empty_n256.json');
    const ids = [...golden.prompt_ids, ...golden.generated_ids];
    const out = path.join(tmp, 'llamacpp.f32');
    const r = await runCli(['logits', '-m', MODEL, '--ids', ids.join(','), '-o', out, '-t', '2']);
    expect(r.code).toBe(0);
    expect(maxAbsDiff(readF32(out), readF32(fixture('stories260K/golden-llamacpp/greedy_empty_n256.logits.f32')))).toBeLessThanOrEqual(1e-4);
  });
});

describe.skipIf(!HAVE_FIXTURES)('bonsai perplexity (stories260K)', () => {
  it('first 100 paragraphs of TinyStories validation: PPL 4.18568', async () => {
    const text = readFileSync(fixture('tinystories/tinystories_val_head.txt'), 'utf8');
    const head = text.split('\n\n').slice(0, 100).join('\n\n');
    const file = path.join(tmp, 'val100.txt');
    writeFileSync(file, head);
    const r = await runCli(['perplexity', '-m', MODEL, '-f', file, '--json', '-t', '2'], 120_000);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens_scored).toBe(9619);
    expect(out.mean_nll).toBeCloseTo(1.4316696259, 4);
    expect(Math.abs(out.ppl - 4.1856818841)).toBeLessThanOrEqual(0.0005);
  });

  it('the 5-story sample with separator <|endoftext|>: PPL 3.54820', async () => {
    const r = await runCli(['perplexity', '-m', MODEL, '-f', fixture('tinystories/tinystories_sample.txt'), '--separator', '<|endoftext|>', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens_scored).toBe(1804);
    expect(Math.abs(out.ppl - 3.5482016585)).toBeLessThanOrEqual(0.0005);
  });
});

describe.skipIf(!HAVE_FIXTURES)('bonsai tokenize and inspect', () => {
  it("tokenizes like run.c's encode (with BOS)", async () => {
    const lines = readFileSync(fixture('stories260K/golden/tok512_encode_runc.jsonl'), 'utf8').trim().split('\n');
    for (const line of lines.slice(0, 4)) {
      const { text, ids } = JSON.parse(line) as { text: string; ids: number[] };
      const r = await runCli(['tokenize', '-m', MODEL, text, '--json']);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).ids).toEqual(ids);
    }
  });

  it('inspect --json agrees with the independent python dump of the tensor table', async () => {
    const r = await runCli(['inspect', MODEL, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.version).toBe(3);
    expect(out.alignment).toBe(32);
    expect(out.dataOffset).toBe(14176);
    expect(out.tensors).toHaveLength(48);
    expect(out.metadata['general.architecture']).toBe('llama');
    expect(out.metadata['tokenizer.ggml.tokens']).toMatchObject({ type: 'array<string>', count: 512 });
    expect(out.metadata['tokenizer.ggml.tokens'].first.slice(0, 3)).toEqual(['<unk>', '<s>', '</s>']);
    const embd = out.tensors.find((t: { name: string }) => t.name === 'token_embd.weight');
    expect(embd).toMatchObject({ typeName: 'f32', dims: [64, 512], offset: 0, bytes: 131072 });
    expect(out.summary.architecture).toBe('llama');
    expect(out.summary.bitsPerWeight).toBeCloseTo(32, 6);
    const total = out.tensors.reduce((n: number, t: { dims: number[] }) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    expect(out.summary.parameters).toBe(total);
  });

  it('inspect names the kernels that would run the matrices, not a path that has none of its own', async () => {
    const q1 = fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf');
    const here = native.kernelPaths('q1_0');
    const r = await runCli(['inspect', q1]);
    expect(r.stdout).toContain(`kernels here: ${here.selectedLabel} for its q1_0 matrices`);
    const scalar = await runCli(['inspect', q1, '--json'], 60_000, { ...process.env, BONSAI_KERNELS: 'scalar' });
    expect(JSON.parse(scalar.stdout).summary).toMatchObject({ matrixType: 'q1_0', kernels: 'scalar' });
    // F32 matrices have no SIMD kernels: whatever the path, the scalar ones run.
    const f32 = JSON.parse((await runCli(['inspect', MODEL, '--json'])).stdout).summary;
    expect(f32.kernels).toBe(here.selected === 'scalar' ? 'scalar' : `${here.selected} (scalar kernels)`);
  });
});

describe('errors are one clear line and a non-zero exit', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['a missing file', () => ['inspect', path.join(tmp, 'nope.gguf')], /nope\.gguf.*(No such file|not found)/i],
    ['a file that is not GGUF', () => {
      const f = path.join(tmp, 'text.gguf');
      writeFileSync(f, 'hello, this is not a model file at all');
      return ['inspect', f];
    }, /not a GGUF file/i],
    ['a truncated GGUF', () => {
      const f = path.join(tmp, 'cut.gguf');
      writeFileSync(f, Buffer.from('GGUF\x03\x00\x00\x00\x30\x00\x00\x00', 'latin1'));
      return ['inspect', f];
    }, /truncated|ends|past the end/i],
    ['a bad option value', () => ['run', '-m', 'x.gguf', '-n', 'many'], /n-predict must be an integer/],
    ['a KV cache type that does not exist', () => ['run', '-m', 'x.gguf', '--kv-type', 'q8'], /Allowed choices are f32, f16/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await runCli(args());
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('prints a stack trace only with --verbose', async () => {
    const r = await runCli(['inspect', path.join(tmp, 'nope.gguf'), '--verbose']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});
