// Synthetic models with exactly the shapes of PrismML's Bonsai GGUFs (qwen3, every matrix Q1_0,
// F32 norms, untied output) and random seeded weights: the engine can be loaded, run and
// benchmarked at real sizes without the real files. The text they produce is noise.
import { CHATML_TEMPLATE } from './chat-template.js';
import { fp16Bits } from './quantize.js';
import { readGguf } from './reader.js';
import { GGML_TYPE, tensorBytes, writeGguf, type GgufKv, type GgufMetaType, type GgufTensorSource, type WriteResult } from './writer.js';

export interface ModelShape {
  layers: number;
  embd: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  context: number;
}

/** Bonsai's published shapes, and `tiny` (the fixtures' qwen3-tiny geometry) for fast tests. */
export const SHAPES = {
  '1.7b': { layers: 28, embd: 2048, heads: 16, kvHeads: 8, headDim: 128, ffn: 6144, vocab: 151936, context: 32768 },
  '4b': { layers: 36, embd: 2560, heads: 32, kvHeads: 8, headDim: 128, ffn: 9728, vocab: 151936, context: 32768 },
  '8b': { layers: 36, embd: 4096, heads: 32, kvHeads: 8, headDim: 128, ffn: 12288, vocab: 151936, context: 32768 },
  tiny: { layers: 2, embd: 256, heads: 4, kvHeads: 2, headDim: 128, ffn: 768, vocab: 151936, context: 2048 },
} as const satisfies Record<string, ModelShape>;

export type ShapeName = keyof typeof SHAPES;

export interface SynthOptions {
  shape: ShapeName;
  /** Overrides the shape's layer count (a 1-layer 1.7B shape keeps tests fast). */
  layers?: number;
  /** A GGUF whose tokenizer.* keys (vocabulary, merges, chat template...) are copied. */
  vocabFrom?: string;
  /** Written instead of the copied (or ChatML) chat template, e.g. to try a template's variants. */
  chatTemplate?: string;
  seed?: number;
}

/** Writes the model; returns the file size and the tensor table written. */
export async function synthesize(file: string, options: SynthOptions): Promise<WriteResult & { tensors: number }> {
  let tokenizer = options.vocabFrom ? copyTokenizer(options.vocabFrom) : byteLevelTokenizer(SHAPES[options.shape].vocab);
  if (options.chatTemplate !== undefined) {
    tokenizer = [...tokenizer.filter((kv) => kv.key !== 'tokenizer.chat_template'), { key: 'tokenizer.chat_template', type: 'string', value: options.chatTemplate }];
  }
  const tokens = tokenizer.find((kv) => kv.key === 'tokenizer.ggml.tokens')!.value as ArrayLike<unknown>;
  // The embedding and output rows follow the vocabulary actually written.
  const shape: ModelShape = { ...SHAPES[options.shape], vocab: tokens.length, layers: options.layers ?? SHAPES[options.shape].layers };
  if (!Number.isInteger(shape.layers) || shape.layers < 1) throw new Error(`layers must be a positive integer, not ${shape.layers}`);
  const kvs = [...modelMetadata(options.shape, shape), ...tokenizer];
  const tensors = tensorTable(shape, options.seed ?? 0);
  const result = await writeGguf(file, kvs, tensors);
  return { ...result, tensors: tensors.length };
}

function modelMetadata(name: ShapeName, s: ModelShape): GgufKv[] {
  const u32 = (key: string, value: number): GgufKv => ({ key, type: 'u32', value });
  return [
    { key: 'general.architecture', type: 'string', value: 'qwen3' },
    { key: 'general.name', type: 'string', value: `Bonsai-${name} shape (synthetic, random weights)` },
    // Real Bonsai files say 41 although llama.cpp's enum has Q1_0 = 40; readers must not care.
    u32('general.file_type', 41),
    u32('general.quantization_version', 2),
    u32('general.alignment', 32),
    u32('qwen3.context_length', s.context),
    u32('qwen3.embedding_length', s.embd),
    u32('qwen3.block_count', s.layers),
    u32('qwen3.feed_forward_length', s.ffn),
    u32('qwen3.attention.head_count', s.heads),
    u32('qwen3.attention.head_count_kv', s.kvHeads),
    u32('qwen3.attention.key_length', s.headDim),
    u32('qwen3.attention.value_length', s.headDim),
    { key: 'qwen3.rope.freq_base', type: 'f32', value: 1e6 },
    { key: 'qwen3.attention.layer_norm_rms_epsilon', type: 'f32', value: 1e-6 },
  ];
}

/** llama.cpp's qwen3 tensor names and shapes ([row length, rows]). */
export function tensorTable(s: ModelShape, seed: number): GgufTensorSource[] {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const matrix = (name: string, cols: number, rows: number) => q1Tensor(name, [cols, rows], seed);
  const norm = (name: string, n: number) => onesTensor(name, n);
  const out = [matrix('token_embd.weight', s.embd, s.vocab)];
  for (let i = 0; i < s.layers; i++) {
    const b = `blk.${i}.`;
    out.push(
      norm(`${b}attn_norm.weight`, s.embd),
      matrix(`${b}attn_q.weight`, s.embd, q),
      matrix(`${b}attn_k.weight`, s.embd, kv),
      matrix(`${b}attn_v.weight`, s.embd, kv),
      norm(`${b}attn_q_norm.weight`, s.headDim),
      norm(`${b}attn_k_norm.weight`, s.headDim),
      matrix(`${b}attn_output.weight`, q, s.embd),
      norm(`${b}ffn_norm.weight`, s.embd),
      matrix(`${b}ffn_gate.weight`, s.embd, s.ffn),
      matrix(`${b}ffn_up.weight`, s.embd, s.ffn),
      matrix(`${b}ffn_down.weight`, s.ffn, s.embd),
    );
  }
  out.push(norm('output_norm.weight', s.embd), matrix('output.weight', s.embd, s.vocab));
  return out;
}

const Q1_BLOCK_BYTES = 18;
const BLOCKS_PER_CHUNK = 1 << 16;

/**
 * Random Q1_0 blocks: 128 random sign bits and an fp16 scale from 0.01 to 0.03, as a 1-bit model
 * of this width has. Each tensor's stream depends only on the seed and its name, so a model with
 * fewer layers holds the same first layers.
 */
function q1Tensor(name: string, dims: number[], seed: number): GgufTensorSource {
  const blocks = tensorBytes(GGML_TYPE.Q1_0, dims) / Q1_BLOCK_BYTES;
  return {
    name,
    type: GGML_TYPE.Q1_0,
    dims,
    *data() {
      const rng = xoshiro128(hashSeed(seed, name));
      // One buffer, refilled: the writer is done with a chunk before it asks for the next.
      const buf = new Uint8Array(BLOCKS_PER_CHUNK * Q1_BLOCK_BYTES);
      const words = new Uint32Array(buf.buffer);
      for (let done = 0; done < blocks; done += BLOCKS_PER_CHUNK) {
        const n = Math.min(BLOCKS_PER_CHUNK, blocks - done);
        const nWords = Math.ceil((n * Q1_BLOCK_BYTES) / 4);
        for (let w = 0; w < nWords; w++) words[w] = rng();
        // The scale's two bytes: a table entry chosen by the random byte already there.
        for (let b = 0; b < n * Q1_BLOCK_BYTES; b += Q1_BLOCK_BYTES) {
          const d = SCALES[buf[b]];
          buf[b] = d & 0xff;
          buf[b + 1] = d >> 8;
        }
        yield buf.subarray(0, n * Q1_BLOCK_BYTES);
      }
    },
  };
}

/** RMSNorm weights of 1: the norms pass activations through unscaled. */
function onesTensor(name: string, n: number): GgufTensorSource {
  return {
    name,
    type: GGML_TYPE.F32,
    dims: [n],
    *data() {
      yield new Uint8Array(new Float32Array(n).fill(1).buffer);
    },
  };
}

const SCALES = Uint16Array.from({ length: 256 }, (_, k) => fp16Bits(0.02 * (0.5 + k / 255)));

/** FNV-1a of the name, mixed with the seed. */
function hashSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** xoshiro128** (Blackman & Vigna), state from splitmix32: fast, seedable 32-bit words. */
function xoshiro128(seed: number): () => number {
  const s = new Uint32Array(4);
  let z = seed >>> 0;
  for (let i = 0; i < 4; i++) {
    z = (z + 0x9e3779b9) >>> 0;
    let t = z;
    t = Math.imul(t ^ (t >>> 16), 0x85ebca6b);
    t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
    s[i] = t ^ (t >>> 16);
  }
  return () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Every tokenizer.* key of another GGUF, with its value type. */
/** The tokenizer.* keys of a GGUF file, ready to write into another. */
export function copyTokenizer(file: string): GgufKv[] {
  const info = readGguf(file);
  const kvs = Object.keys(info.metadata)
    .filter((key) => key.startsWith('tokenizer.'))
    .map((key) => ({ key, type: info.metadataTypes[key] as GgufMetaType, value: info.metadata[key] }));
  if (!kvs.some((kv) => kv.key === 'tokenizer.ggml.tokens')) throw new Error(`${file} has no tokenizer (tokenizer.ggml.tokens)`);
  return kvs;
}

const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;

/**
 * A stand-in when no vocabulary is given: GPT-2 byte-level tokens without merges (every byte its
 * own token), the ChatML specials, padded with unused tokens to the shape's vocabulary size.
 */
function byteLevelTokenizer(vocab: number): GgufKv[] {
  const specials: [string, number][] = [
    ['<|endoftext|>', TOKEN_TYPE.control],
    ['<|im_start|>', TOKEN_TYPE.control],
    ['<|im_end|>', TOKEN_TYPE.control],
    ['<think>', TOKEN_TYPE.userDefined],
    ['</think>', TOKEN_TYPE.userDefined],
  ];
  const tokens = [...byteChars(), ...specials.map(([t]) => t)];
  const types: number[] = [...new Array<number>(256).fill(TOKEN_TYPE.normal), ...specials.map(([, t]) => t)];
  for (let i = tokens.length; i < vocab; i++) {
    tokens.push(`[PAD${i}]`);
    types.push(TOKEN_TYPE.unused);
  }
  const id = (t: string) => tokens.indexOf(t);
  return [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'qwen2' },
    { key: 'tokenizer.ggml.tokens', type: 'array<string>', value: tokens },
    { key: 'tokenizer.ggml.token_type', type: 'array<i32>', value: Int32Array.from(types) },
    { key: 'tokenizer.ggml.merges', type: 'array<string>', value: [] },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: id('<|endoftext|>') },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: id('<|im_end|>') },
    { key: 'tokenizer.ggml.eot_token_id', type: 'u32', value: id('<|im_end|>') },
    { key: 'tokenizer.ggml.padding_token_id', type: 'u32', value: id('<|endoftext|>') },
    { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: false },
    { key: 'tokenizer.chat_template', type: 'string', value: CHATML_TEMPLATE },
  ];
}

/** GPT-2's byte-to-unicode table: printable bytes stand for themselves, the rest move to U+0100+. */
function byteChars(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0x100;
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : next++));
}
