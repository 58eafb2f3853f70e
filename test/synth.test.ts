// The GGUF writer read back by the native reader, Bonsai's exact shapes, and synthetic models the
// engine loads and runs.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Model } from '../src/engine/engine.js';
import { readGguf, type GgufFileInfo } from '../src/gguf/reader.js';
import { GGML_TYPE, tensorBytes, writeGguf, type GgufKv, type GgufTensorSource } from '../src/gguf/writer.js';
import { SHAPES, synthesize, tensorTable } from '../src/gguf/synth.js';
import { runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, fixture } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-synth-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const VOCAB = fixture('qwen3-vocab/ggml-vocab-qwen3.gguf');

function bytesTensor(name: string, type: number, dims: number[], fill: number): GgufTensorSource {
  return { name, type, dims, data: () => [new Uint8Array(tensorBytes(type, dims)).fill(fill)] };
}

/** A tensor's bytes as stored in the file. */
function tensorData(file: string, info: GgufFileInfo, name: string): Buffer {
  const t = info.tensors.find((x) => x.name === name)!;
  return readFileSync(file).subarray(info.dataOffset + t.offset, info.dataOffset + t.offset + t.bytes);
}

describe('GGUF writer', () => {
  const KVS: GgufKv[] = [
    { key: 'general.alignment', type: 'u32', value: 64 },
    { key: 'test.u8', type: 'u8', value: 255 },
    { key: 'test.i8', type: 'i8', value: -128 },
    { key: 'test.u16', type: 'u16', value: 65535 },
    { key: 'test.i16', type: 'i16', value: -32768 },
    { key: 'test.i32', type: 'i32', value: -2147483648 },
    { key: 'test.f32', type: 'f32', value: 1e-6 },
    { key: 'test.bool', type: 'bool', value: true },
    { key: 'test.string', type: 'string', value: 'Bonsai 盆栽 🌳' },
    { key: 'test.u64', type: 'u64', value: 2n ** 63n + 5n },
    { key: 'test.i64', type: 'i64', value: -(2n ** 62n) },
    { key: 'test.f64', type: 'f64', value: Math.PI },
    { key: 'test.strings', type: 'array<string>', value: ['a', '', 'Ġhello'] },
    { key: 'test.i32s', type: 'array<i32>', value: Int32Array.from([1, -2, 3]) },
    { key: 'test.f32s', type: 'array<f32>', value: [0.5, -1.25] },
    { key: 'test.bools', type: 'array<bool>', value: [true, false] },
    { key: 'test.u8s', type: 'array<u8>', value: [] },
  ];

  it('writes every value type, the tensor table and aligned data that the native reader accepts', async () => {
    const file = path.join(tmp, 'types.gguf');
    const tensors = [
      bytesTensor('a', GGML_TYPE.F32, [3], 1),
      bytesTensor('b', GGML_TYPE.Q1_0, [256, 3], 2),
      bytesTensor('c', GGML_TYPE.Q8_0, [32, 2, 2], 3),
    ];
    const written = await writeGguf(file, KVS, tensors);
    const info = readGguf(file);
    expect(info.version).toBe(3);
    expect(info.alignment).toBe(64);
    expect(info.dataOffset % 64).toBe(0);
    expect(info.dataOffset).toBe(written.dataOffset);
    expect(statSync(file).size).toBe(written.bytes);
    expect(Object.keys(info.metadata)).toEqual(KVS.map((kv) => kv.key));
    for (const kv of KVS) expect(info.metadataTypes[kv.key]).toBe(kv.type);
    const m = info.metadata;
    expect([m['test.u8'], m['test.i8'], m['test.u16'], m['test.i16'], m['test.i32']]).toEqual([255, -128, 65535, -32768, -2147483648]);
    expect(m['test.f32']).toBe(Math.fround(1e-6));
    expect(m['test.bool']).toBe(true);
    expect(m['test.string']).toBe('Bonsai 盆栽 🌳');
    expect(m['test.u64']).toBe(2n ** 63n + 5n);
    expect(m['test.i64']).toBe(-(2n ** 62n));
    expect(m['test.f64']).toBe(Math.PI);
    expect(m['test.strings']).toEqual(['a', '', 'Ġhello']);
    expect(Array.from(m['test.i32s'] as Int32Array)).toEqual([1, -2, 3]);
    expect(Array.from(m['test.f32s'] as Float32Array)).toEqual([0.5, -1.25]);
    expect(m['test.bools']).toEqual([true, false]);
    expect(Array.from(m['test.u8s'] as Uint8Array)).toEqual([]);
    expect(info.tensors.map((t) => [t.name, t.typeName, t.dims, t.bytes])).toEqual([
      ['a', 'f32', [3], 12],
      ['b', 'q1_0', [256, 3], 108],
      ['c', 'q8_0', [32, 2, 2], 136],
    ]);
    for (const t of info.tensors) expect(t.offset % 64).toBe(0);
    expect([...tensorData(file, info, 'b')]).toEqual(new Array(108).fill(2));
  });

  it('refuses data of the wrong size, rows that are not whole blocks, and out-of-range values', async () => {
    const file = path.join(tmp, 'bad.gguf');
    const short: GgufTensorSource = { name: 'w', type: GGML_TYPE.Q1_0, dims: [128, 2], data: () => [new Uint8Array(18)] };
    await expect(writeGguf(file, [], [short])).rejects.toThrow(/data has 18 bytes, its type and dims need 36/);
    await expect(writeGguf(file, [], [bytesTensor('w', GGML_TYPE.Q1_0, [128], 0), { ...short, dims: [100, 2] }])).rejects.toThrow(
      /row length 100 is not a multiple of q1_0's block size 128/,
    );
    await expect(writeGguf(file, [{ key: 'x', type: 'u8', value: 256 }], [])).rejects.toThrow(RangeError);
    await expect(writeGguf(file, [{ key: 'x', type: 'string', value: 5 }], [])).rejects.toThrow(/x: 5 is not a valid string/);
  });
});

describe("Bonsai's shapes", () => {
  const count = (shape: keyof typeof SHAPES) => {
    const tensors = tensorTable(SHAPES[shape], 0);
    const of = (type: number) => tensors.filter((t) => t.type === type);
    const sum = (f: (t: GgufTensorSource) => number) => tensors.reduce((a, t) => a + f(t), 0);
    return {
      q1: of(GGML_TYPE.Q1_0).length,
      f32: of(GGML_TYPE.F32).length,
      params: sum((t) => t.dims.reduce((a, b) => a * b, 1)),
      bytes: sum((t) => tensorBytes(t.type, t.dims)),
    };
  };

  it('1.7B: 198 Q1_0 + 113 F32 tensors, 2.03 B parameters, 272.93 MiB of tensors (as llama-bench reports it)', () => {
    const c = count('1.7b');
    expect([c.q1, c.f32]).toEqual([198, 113]);
    expect(c.params).toBe(2_031_739_904);
    expect((c.bytes / 2 ** 20).toFixed(2)).toBe('272.93');
  });

  it('4B: 592.34 MiB of tensors; 8B: 254 Q1_0 + 145 F32 tensors, like the real Bonsai-8B GGUF', () => {
    expect((count('4b').bytes / 2 ** 20).toFixed(2)).toBe('592.34');
    const c8 = count('8b');
    expect([c8.q1, c8.f32]).toEqual([254, 145]);
  });

  it('uses the qwen3 layout: head dim 128 independent of the embedding, GQA k/v, untied output', () => {
    const dims = Object.fromEntries(tensorTable(SHAPES['4b'], 0).map((t) => [t.name, t.dims]));
    expect(dims['blk.0.attn_q.weight']).toEqual([2560, 4096]);
    expect(dims['blk.0.attn_k.weight']).toEqual([2560, 1024]);
    expect(dims['blk.0.attn_output.weight']).toEqual([4096, 2560]);
    expect(dims['blk.0.attn_q_norm.weight']).toEqual([128]);
    expect(dims['blk.35.ffn_down.weight']).toEqual([9728, 2560]);
    expect(dims['output.weight']).toEqual([2560, 151936]);
    expect(dims['token_embd.weight']).toEqual([2560, 151936]);
  });
});

describe('synthetic models', () => {
  it('writes the qwen3 metadata and seeded random Q1_0 weights with fp16 scales near 0.02', async () => {
    const file = path.join(tmp, 'tiny.gguf');
    await synthesize(file, { shape: 'tiny', seed: 3 });
    const info = readGguf(file);
    const m = info.metadata;
    expect(m['general.architecture']).toBe('qwen3');
    expect([m['qwen3.block_count'], m['qwen3.embedding_length'], m['qwen3.feed_forward_length']]).toEqual([2, 256, 768]);
    expect([m['qwen3.attention.head_count'], m['qwen3.attention.head_count_kv'], m['qwen3.attention.key_length']]).toEqual([4, 2, 128]);
    expect(m['qwen3.rope.freq_base']).toBe(1e6);
    expect(m['qwen3.attention.layer_norm_rms_epsilon']).toBe(Math.fround(1e-6));
    expect(m['tokenizer.ggml.model']).toBe('gpt2');
    expect(info.tensors).toHaveLength(2 * 11 + 3);
    const norm = tensorData(file, info, 'blk.1.ffn_norm.weight');
    expect(new Float32Array(norm.buffer.slice(norm.byteOffset, norm.byteOffset + norm.byteLength))).toEqual(new Float32Array(256).fill(1));
    const q = tensorData(file, info, 'blk.0.ffn_up.weight');
    const blocks = q.length / 18;
    let ones = 0;
    for (let b = 0; b < blocks; b++) {
      const d = fp16ToFloat(q.readUInt16LE(b * 18));
      expect(d).toBeGreaterThanOrEqual(0.0099);
      expect(d).toBeLessThanOrEqual(0.0301);
      for (let i = 2; i < 18; i++) ones += popcount(q[b * 18 + i]!);
    }
    expect(ones / (blocks * 128)).toBeCloseTo(0.5, 2);
  });

  it('is deterministic per seed, and a model with fewer layers holds the same first layers', async () => {
    const [a, b, c, one] = ['a', 'b', 'c', 'one'].map((n) => path.join(tmp, `${n}.gguf`)) as [string, string, string, string];
    await synthesize(a, { shape: 'tiny', seed: 1 });
    await synthesize(b, { shape: 'tiny', seed: 1 });
    await synthesize(c, { shape: 'tiny', seed: 2 });
    await synthesize(one, { shape: 'tiny', seed: 1, layers: 1 });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    const name = 'blk.0.attn_v.weight';
    const [ia, ic, ione] = [a, c, one].map((f) => readGguf(f)) as [GgufFileInfo, GgufFileInfo, GgufFileInfo];
    expect(tensorData(a, ia, name).equals(tensorData(c, ic, name))).toBe(false);
    expect(tensorData(a, ia, name).equals(tensorData(one, ione, name))).toBe(true);
    expect(ione.metadata['qwen3.block_count']).toBe(1);
  });

  it.skipIf(!HAVE_FIXTURES)("copies every tokenizer key of --vocab-from with its type, chat template included", async () => {
    const file = path.join(tmp, 'vocab.gguf');
    await synthesize(file, { shape: 'tiny', layers: 1, vocabFrom: VOCAB });
    const src = readGguf(VOCAB);
    const out = readGguf(file);
    const keys = Object.keys(src.metadata).filter((k) => k.startsWith('tokenizer.'));
    expect(keys).toContain('tokenizer.chat_template');
    for (const k of keys) {
      expect(out.metadataTypes[k]).toBe(src.metadataTypes[k]);
      expect(out.metadata[k]).toEqual(src.metadata[k]);
    }
    expect(out.tensors.find((t) => t.name === 'output.weight')!.dims).toEqual([256, 151936]);
  });

  it('loads in the engine and generates', async () => {
    const file = path.join(tmp, 'run.gguf');
    await synthesize(file, { shape: 'tiny', layers: 1, seed: 5 });
    const model = await Model.load(file, { threads: 1, contextSize: 64 });
    try {
      expect(model.hparams).toMatchObject({ arch: 'qwen3', nLayer: 1, nEmbd: 256, nHead: 4, nHeadKv: 2, headDim: 128, qkNorm: true, tiedOutput: false });
      const r = await model.generate({ prompt: 'Hi', maxTokens: 4, ignoreEog: true, sampling: { temperature: 0 } });
      expect(r.ids).toHaveLength(4);
    } finally {
      model.close();
    }
  });

  it('bonsai synth writes a file from the command line', async () => {
    const file = path.join(tmp, 'cli.gguf');
    const r = await runCli(['synth', '--shape', 'tiny', '--layers', '1', '--seed', '9', '-o', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/14 tensors, [\d.]+ MiB, written in [\d.]+ s/);
    expect(readGguf(file).metadata['qwen3.block_count']).toBe(1);
  });
});

function fp16ToFloat(h: number): number {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return (h >> 15 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

function popcount(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
