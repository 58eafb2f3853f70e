// Quantization-aware distillation from the TypeScript side: the Q1_0 and fp16 encoders against
// ggml's own bytes, the exported GGUF against the format rules and through the engine (its Q1_0
// path and its F32 path agree, and both agree with the trainer's forward), checkpoints that resume
// to the very same weights, and a batch sampler that starts windows where pieces start.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Model } from '../src/engine/engine.js';
import { fp16Bits, quantizeQ1_0 } from '../src/gguf/quantize.js';
import { readGguf } from '../src/gguf/reader.js';
import { native, type TrainerConfig } from '../src/native.js';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { batchAt, corpusOf } from '../src/train/corpus.js';
import { distill, type DistillOptions } from '../src/train/distill.js';
import { writeStudent } from '../src/train/export.js';
import { STUDENT_SHAPES, TRAINING_DEFAULTS, parameterCount, parseStudentShape, studentShape } from '../src/train/student.js';
import { runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, fixture, maxAbsDiff, readF32 } from './helpers/fixtures.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-distill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('weight encoders match ggml', () => {
  it.skipIf(!HAVE_FIXTURES)('fp16Bits gives ggml fp16 bytes for real weights', () => {
    const input = readF32(fixture('ggml-quant-vectors/input_blk0_attn_q.f32'));
    const want = new Uint16Array(readFileSync(fixture('ggml-quant-vectors/f16.blocks.bin')).buffer.slice(0));
    expect(want.length).toBe(input.length);
    const got = Uint16Array.from(input, (x) => fp16Bits(x));
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('fp16Bits rounds to nearest even, keeps subnormals, saturates to infinity', () => {
    expect(fp16Bits(1)).toBe(0x3c00);
    expect(fp16Bits(-2)).toBe(0xc000);
    expect(fp16Bits(1 + 2 ** -11)).toBe(0x3c00); // a tie goes to the even mantissa
    expect(fp16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(fp16Bits(2 ** -24)).toBe(0x0001); // the smallest subnormal
    expect(fp16Bits(2 ** -26)).toBe(0);
    expect(fp16Bits(65520)).toBe(0x7c00);
    expect(fp16Bits(NaN) & 0x7c00).toBe(0x7c00);
  });

  it.skipIf(!HAVE_FIXTURES).each([128, 256, 512, 2048])('quantizeQ1_0 equals ggml_quantize_chunk for rows of %i', (n) => {
    const input = readF32(fixture(`ggml-kernels/input_n${n}.f32`));
    const want = readFileSync(fixture(`ggml-kernels/q1_0.n${n}.blocks.bin`));
    expect(Buffer.from(quantizeQ1_0(input)).equals(want)).toBe(true);
  });

  it('refuses a length that is not whole blocks', () => {
    expect(() => quantizeQ1_0(new Float32Array(100))).toThrow(/multiple of 128/);
  });
});

describe('student shapes', () => {
  it('parses presets and explicit dims, and refuses nonsense', () => {
    expect(parseStudentShape('xs')).toEqual(STUDENT_SHAPES.xs);
    expect(parseStudentShape('dim=256,layers=3')).toEqual({ ...STUDENT_SHAPES.xs, dim: 256, layers: 3 });
    expect(() => parseStudentShape('dim=0')).toThrow(/bad --shape/);
    expect(() => parseStudentShape('wide')).toThrow(/bad --shape/);
  });

  it('counts the weights of the bundled shape: 262,144 in matrices', () => {
    const s = studentShape(STUDENT_SHAPES.xs, 512, 10000, 1e-5);
    expect(parameterCount(s)).toEqual({ matrices: 512 * 128 + 2 * (128 * 256 + 128 * 128 + 3 * 128 * 128), norms: 128 * 5 });
  });
});

describe('batches', () => {
  const corpus = corpusOf([[1, 10, 11, 12], [1, 20, 21], [1, 30, 31, 32, 33], [1, 40]]);

  it('start every window at a piece start, with room for the whole window', () => {
    const b = batchAt(corpus, 3, 64, 7, 0);
    for (let i = 0; i < 64; i++) {
      const w = Array.from(b.subarray(i * 4, i * 4 + 4));
      expect(w[0]).toBe(1);
      expect(w).toHaveLength(4);
    }
    // the last piece (2 tokens) has no room for 4; the third has exactly 4 after it... and more
    const firsts = new Set(Array.from({ length: 64 }, (_, i) => b[i * 4 + 1]));
    expect(firsts.has(40)).toBe(false);
    expect(firsts.size).toBeGreaterThan(1);
  });

  it('depend only on the seed and the batch index', () => {
    expect(batchAt(corpus, 3, 8, 7, 5)).toEqual(batchAt(corpus, 3, 8, 7, 5));
    expect(batchAt(corpus, 3, 8, 7, 5)).not.toEqual(batchAt(corpus, 3, 8, 7, 6));
  });

  it('refuse a corpus shorter than one window', () => {
    expect(() => batchAt(corpusOf([[1, 2]]), 3, 1, 1, 0)).toThrow(/at least 4/);
  });
});

const TEACHER = HAVE_FIXTURES ? fixture('stories260K/stories260K.gguf') : '';

function tinyConfig(overrides: Partial<TrainerConfig> = {}): TrainerConfig {
  return {
    ...TRAINING_DEFAULTS,
    shape: studentShape({ dim: 128, hidden: 128, layers: 1, heads: 4, kvHeads: 2, headDim: 32 }, 512, 10000, 1e-5),
    seqLen: 32,
    threads: 2,
    totalSteps: 20,
    warmupSteps: 2,
    seed: 3,
    ...overrides,
  };
}

describe.skipIf(!HAVE_FIXTURES)('the exported student', () => {
  it('is a well-formed llama GGUF whose Q1_0 and F32 forms give the trainer\'s logits through the engine', async () => {
    const trainer = new native.Trainer(tinyConfig(), TEACHER);
    const tokens = new Int32Array(2 * 33).map((_, i) => (i % 33 === 0 ? 1 : (i * 37) % 512));
    for (let s = 0; s < 5; s++) await trainer.step(tokens, 2);
    const common = {
      shape: tinyConfig().shape,
      contextLength: 32,
      tensors: trainer.tensors(),
      weights: trainer.weights(),
      tokenizerFrom: TEACHER,
      name: 'test student',
      description: 'test',
    };
    const q1 = path.join(dir, 'q1.gguf');
    const f32 = path.join(dir, 'f32.gguf');
    await writeStudent(q1, { ...common, type: 'q1_0' });
    await writeStudent(f32, { ...common, type: 'f32' });

    // the format rules: alignment, types, llama.cpp's metadata keys, the teacher's tokenizer
    const info = readGguf(q1);
    const teacher = readGguf(TEACHER);
    expect(info.metadata['general.architecture']).toBe('llama');
    expect(info.metadata['general.alignment']).toBe(32);
    expect(info.dataOffset % 32).toBe(0);
    for (const key of ['llama.context_length', 'llama.embedding_length', 'llama.block_count', 'llama.feed_forward_length', 'llama.attention.head_count', 'llama.attention.head_count_kv', 'llama.rope.dimension_count', 'llama.rope.freq_base', 'llama.attention.layer_norm_rms_epsilon']) {
      expect(info.metadata[key], key).toBeDefined();
    }
    expect(info.metadata['tokenizer.ggml.tokens']).toEqual(teacher.metadata['tokenizer.ggml.tokens']);
    expect(info.metadata['tokenizer.ggml.scores']).toEqual(teacher.metadata['tokenizer.ggml.scores']);
    for (const t of info.tensors) {
      expect(Number(t.offset) % 32, t.name).toBe(0);
      expect(t.typeName, t.name).toBe(t.dims.length === 1 ? 'f32' : 'q1_0');
    }
    expect(info.tensors.map((t) => t.name)).toContain('blk.0.ffn_down.weight');
    expect(info.tensors.map((t) => t.name)).not.toContain('output.weight'); // tied, as llama.cpp reads it

    // the engine's Q1_0 kernels and its F32 path, on the same weights
    const ids = [1, 403, 407, 261, 378, 432, 383, 286];
    const a = await Model.load(q1, { threads: 1 });
    const b = await Model.load(f32, { threads: 1 });
    try {
      const la = await a.logits(ids);
      const lb = await b.logits(ids);
      const scale = Math.max(...Array.from(lb, Math.abs));
      // Q1_0 products take Q8_0 activations: agreement to within 8-bit rounding of the inputs
      expect(maxAbsDiff(la, lb) / scale).toBeLessThan(0.02);
      expect(la.indexOf(Math.max(...la))).toBe(lb.indexOf(Math.max(...lb)));
      // chat requests continue the messages' text
      expect(a.chatPrompt([{ role: 'user', content: 'Once upon a time' }]).ids).toEqual(a.tokenizer.encode('Once upon a time', { addSpecial: true }));
      expect(a.chatPrompt([{ role: 'system', content: 'Tom' }, { role: 'user', content: 'Lily' }]).text).toBe('Tom\n\nLily');
      // the trainer's own forward (F32 on the same weights) scores the sequence as the F32 file does
      const nll = (await b.nll(ids)).reduce((x, y) => x + y, 0);
      expect(Math.abs((await trainer.score(Int32Array.from(ids))) - nll)).toBeLessThan(1e-3 * ids.length);
    } finally {
      a.close();
      b.close();
      trainer.close();
    }
  });
});

describe.skipIf(!HAVE_FIXTURES)('distill runs', () => {
  const text = path.join(dir, 'text.txt');
  writeFileSync(text, Array.from({ length: 60 }, (_, i) => `Tom had a ${['red', 'big', 'small'][i % 3]} ball. He played with it every day number ${i}.`).join('\n\n'));

  function options(out: string, steps: number, extra: Partial<DistillOptions> = {}): DistillOptions {
    const c = tinyConfig();
    return {
      teacher: TEACHER,
      out,
      dims: { dim: 128, hidden: 128, layers: 1, heads: 4, kvHeads: 2, headDim: 32 },
      settings: { ...TRAINING_DEFAULTS, seqLen: c.seqLen, warmupSteps: 2, ceWeight: 0.5 },
      data: [text],
      separator: '\n\n',
      skipPieces: 5,
      valPieces: 5,
      generate: 0,
      steps,
      batch: 4,
      threads: 2,
      seed: 9,
      checkpoint: `${out}.ckpt`,
      resume: true,
      saveEvery: 1000,
      evalEvery: 3,
      type: 'q1_0',
      ...extra,
    };
  }

  it('learn (validation NLL falls), and a run stopped and resumed ends with the same weights as one that was not', async () => {
    const straight = await distill(options(path.join(dir, 'straight.gguf'), 6));
    expect(straight.finished).toBe(true);
    const vals = straight.history.filter((h) => h.valNll !== undefined).map((h) => h.valNll!);
    expect(vals.length).toBe(2);
    expect(vals[1]).toBeLessThan(vals[0]!);

    const abort = new AbortController();
    const out = path.join(dir, 'resumed.gguf');
    const first = await distill(options(out, 6, { signal: abort.signal, onStep: (m) => m.step === 3 && abort.abort() }));
    expect(first).toMatchObject({ finished: false, steps: 3 });
    const second = await distill(options(out, 6));
    expect(second).toMatchObject({ finished: true, steps: 6 });
    expect(readFileSync(out).equals(readFileSync(path.join(dir, 'straight.gguf')))).toBe(true);
  });

  it('start from another run\'s weights with --init-from (a float run, then quantization-aware training)', async () => {
    const float = path.join(dir, 'float.gguf');
    const settings = { ...options(float, 4).settings, quantize: false };
    await distill(options(float, 4, { settings, type: 'f32' }));
    const next = path.join(dir, 'from-float.gguf');
    // a step too small to move a weight: the written file holds the float run's weights
    const r = await distill(options(next, 1, { settings: { ...settings, lr: 1e-12, lrMin: 0, warmupSteps: 0 }, type: 'f32', initFrom: `${float}.ckpt` }));
    expect(r.finished).toBe(true);
    const a = readGguf(float);
    const b = readGguf(next);
    const tensor = (file: string, info: ReturnType<typeof readGguf>, name: string) => {
      const t = info.tensors.find((x) => x.name === name)!;
      return new Float32Array(readFileSync(file).buffer.slice(info.dataOffset + t.offset, info.dataOffset + t.offset + t.bytes));
    };
    for (const name of ['token_embd.weight', 'blk.0.ffn_down.weight']) {
      expect(maxAbsDiff(tensor(float, a, name), tensor(next, b, name)), name).toBeLessThan(1e-6);
    }
    const { matrices, norms } = parameterCount(tinyConfig().shape);
    expect(loadCheckpoint(`${next}.ckpt`, matrices + norms).header.initFrom).toMatchObject({ file: 'float.gguf.ckpt', steps: 4, quantize: false });
    // a checkpoint of another shape is refused
    await expect(distill(options(path.join(dir, 'wide.gguf'), 1, { dims: { ...options(next, 1).dims, hidden: 256 }, initFrom: `${float}.ckpt` }))).rejects.toThrow(/parameters/);
  });

  it('refuse to resume with other settings, and a torn checkpoint, with clear errors', async () => {
    const out = path.join(dir, 'straight.gguf');
    await expect(distill(options(out, 6, { settings: { ...options(out, 6).settings, lr: 1e-2 } }))).rejects.toThrow(/other settings/);
    const ckpt = `${out}.ckpt`;
    const full = readFileSync(ckpt);
    const { matrices, norms } = parameterCount(tinyConfig().shape);
    const { header, state } = loadCheckpoint(ckpt, matrices + norms);
    expect(header.steps).toBe(6);
    writeFileSync(ckpt, full.subarray(0, full.length - 10));
    await expect(distill(options(out, 6))).rejects.toThrow(/not a usable checkpoint/);
    saveCheckpoint(ckpt, header, state);
    expect(readFileSync(ckpt).equals(full)).toBe(true);
  });
});

describe('bonsai distill (CLI)', () => {
  it('refuses a bad shape and a missing teacher with one clear line', async () => {
    const bad = await runCli(['distill', '--teacher', 'x.gguf', '-o', path.join(dir, 'o.gguf'), '--shape', 'dim=-3']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/bad --shape/);
    const missing = await runCli(['distill', '--teacher', path.join(dir, 'none.gguf'), '-o', path.join(dir, 'o.gguf')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/none\.gguf/);
    expect(missing.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it.skipIf(!HAVE_FIXTURES)('refuses a 1-bit student whose width is not whole Q1_0 blocks', async () => {
    const r = await runCli(['distill', '--teacher', TEACHER, '-o', path.join(dir, 'o.gguf'), '--shape', 'dim=96,heads=3']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/multiples of 128/);
  });
});
