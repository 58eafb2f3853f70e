// A GGUF v3 writer: metadata of every value type, the tensor table, and tensor data streamed to
// disk chunk by chunk (a 300 MB model never sits in memory). Reading stays with native/gguf/gguf.c.
import { open } from 'node:fs/promises';

export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
/** Type names as readGguf's metadataTypes spells them, so a file's keys can be copied as they are. */
export type GgufMetaType = GgufScalarType | `array<${GgufScalarType}>`;

export interface GgufKv {
  key: string;
  type: GgufMetaType;
  /** number or bigint for integers, number for floats, boolean, string, or an array-like of those. */
  value: unknown;
}

export interface GgufTensorSource {
  name: string;
  /** ggml type id. */
  type: number;
  /** dims[0] is the row length. */
  dims: number[];
  /** The tensor's bytes, in order; their total must equal the tensor's size. */
  data(): Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

/** Block geometry of the ggml types this project reads. */
export const GGML_TYPES: Record<number, { name: string; blockSize: number; blockBytes: number }> = {
  0: { name: 'f32', blockSize: 1, blockBytes: 4 },
  1: { name: 'f16', blockSize: 1, blockBytes: 2 },
  2: { name: 'q4_0', blockSize: 32, blockBytes: 18 },
  8: { name: 'q8_0', blockSize: 32, blockBytes: 34 },
  30: { name: 'bf16', blockSize: 1, blockBytes: 2 },
  34: { name: 'tq1_0', blockSize: 256, blockBytes: 54 },
  35: { name: 'tq2_0', blockSize: 256, blockBytes: 66 },
  41: { name: 'q1_0', blockSize: 128, blockBytes: 18 },
};

export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, Q1_0: 41 } as const;

const VALUE_TYPE_IDS: Record<GgufScalarType | 'array', number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
};

const DEFAULT_ALIGNMENT = 32;

export function tensorBytes(type: number, dims: number[]): number {
  const t = GGML_TYPES[type];
  if (!t) throw new Error(`ggml type ${type} is not supported by the writer`);
  if (dims.length < 1 || dims.length > 4 || dims.some((d) => !Number.isSafeInteger(d) || d < 1)) {
    throw new Error(`bad tensor dims [${dims.join(', ')}]`);
  }
  if (dims[0]! % t.blockSize !== 0) throw new Error(`row length ${dims[0]} is not a multiple of ${t.name}'s block size ${t.blockSize}`);
  return (dims.reduce((a, b) => a * b, 1) / t.blockSize) * t.blockBytes;
}

export interface WriteResult {
  bytes: number;
  dataOffset: number;
}

/**
 * Writes a GGUF v3 file. general.alignment, if among the kvs, sets the alignment (default 32).
 * The header is built in memory (a 150k-token vocabulary is a few MB), tensor data is streamed.
 */
export async function writeGguf(file: string, kvs: GgufKv[], tensors: GgufTensorSource[]): Promise<WriteResult> {
  const alignment = alignmentOf(kvs);
  const header = new ByteWriter();
  header.bytes(Buffer.from('GGUF', 'latin1'));
  header.u32(3);
  header.u64(BigInt(tensors.length));
  header.u64(BigInt(kvs.length));
  for (const kv of kvs) writeKv(header, kv);
  const sizes = tensors.map((t) => tensorBytes(t.type, t.dims));
  let offset = 0;
  tensors.forEach((t, i) => {
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(BigInt(d));
    header.u32(t.type);
    header.u64(BigInt(offset));
    offset = alignUp(offset + sizes[i]!, alignment);
  });
  const dataOffset = alignUp(header.length, alignment);

  const fh = await open(file, 'w');
  try {
    await fh.write(header.finish(dataOffset));
    for (const [i, t] of tensors.entries()) {
      let written = 0;
      for await (const chunk of t.data()) {
        written += chunk.byteLength;
        if (written > sizes[i]!) break;
        await fh.write(chunk);
      }
      if (written !== sizes[i]) throw new Error(`tensor ${t.name}: data has ${written} bytes, its type and dims need ${sizes[i]}`);
      const pad = alignUp(written, alignment) - written;
      if (pad) await fh.write(Buffer.alloc(pad));
    }
  } finally {
    await fh.close();
  }
  return { bytes: dataOffset + offset, dataOffset };
}

function alignmentOf(kvs: GgufKv[]): number {
  const kv = kvs.find((k) => k.key === 'general.alignment');
  if (!kv) return DEFAULT_ALIGNMENT;
  const a = Number(kv.value);
  if (kv.type !== 'u32' || !Number.isInteger(a) || a < 1 || (a & (a - 1)) !== 0) {
    throw new Error('general.alignment must be a u32 power of two');
  }
  return a;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function writeKv(w: ByteWriter, { key, type, value }: GgufKv): void {
  w.string(key);
  const array = /^array<(\w+)>$/.exec(type);
  if (!array) {
    w.u32(VALUE_TYPE_IDS[type as GgufScalarType]);
    writeScalar(w, type as GgufScalarType, value, key);
    return;
  }
  const elem = array[1] as GgufScalarType;
  if (!(elem in VALUE_TYPE_IDS) || (elem as string) === 'array') throw new Error(`${key}: unsupported array type ${type}`);
  if (typeof value !== 'object' || value === null || typeof (value as ArrayLike<unknown>).length !== 'number') {
    throw new Error(`${key}: ${type} needs an array value`);
  }
  const items = value as ArrayLike<unknown>;
  w.u32(VALUE_TYPE_IDS.array);
  w.u32(VALUE_TYPE_IDS[elem]);
  w.u64(BigInt(items.length));
  for (let i = 0; i < items.length; i++) writeScalar(w, elem, items[i], key);
}

function writeScalar(w: ByteWriter, type: GgufScalarType, v: unknown, key: string): void {
  const bad = () => new Error(`${key}: ${String(v)} is not a valid ${type}`);
  switch (type) {
    case 'string':
      if (typeof v !== 'string') throw bad();
      return w.string(v);
    case 'bool':
      if (typeof v !== 'boolean') throw bad();
      return w.scalar(1, (b, o) => b.writeUInt8(v ? 1 : 0, o));
    case 'u64':
    case 'i64': {
      if (typeof v !== 'bigint' && !Number.isSafeInteger(v)) throw bad();
      const big = BigInt(v as number | bigint);
      return w.scalar(8, (b, o) => (type === 'u64' ? b.writeBigUInt64LE(big, o) : b.writeBigInt64LE(big, o)));
    }
    default: {
      if (typeof v !== 'number') throw bad();
      const [size, put] = NUMERIC_WRITERS[type];
      return w.scalar(size, (b, o) => put(b, v, o));
    }
  }
}

// Buffer's writers range-check integers and throw a RangeError naming the bounds.
const NUMERIC_WRITERS: Record<Exclude<GgufScalarType, 'string' | 'bool' | 'u64' | 'i64'>, [number, (b: Buffer, v: number, o: number) => number]> = {
  u8: [1, (b, v, o) => b.writeUInt8(v, o)],
  i8: [1, (b, v, o) => b.writeInt8(v, o)],
  u16: [2, (b, v, o) => b.writeUInt16LE(v, o)],
  i16: [2, (b, v, o) => b.writeInt16LE(v, o)],
  u32: [4, (b, v, o) => b.writeUInt32LE(v, o)],
  i32: [4, (b, v, o) => b.writeInt32LE(v, o)],
  f32: [4, (b, v, o) => b.writeFloatLE(v, o)],
  f64: [8, (b, v, o) => b.writeDoubleLE(v, o)],
};

/** A growable little-endian byte buffer. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  scalar(size: number, put: (b: Buffer, offset: number) => unknown): void {
    this.reserve(size);
    put(this.buf, this.length);
    this.length += size;
  }
  u32(v: number): void {
    this.scalar(4, (b, o) => b.writeUInt32LE(v, o));
  }
  u64(v: bigint): void {
    this.scalar(8, (b, o) => b.writeBigUInt64LE(v, o));
  }
  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(BigInt(n));
    this.reserve(n);
    this.length += this.buf.write(s, this.length, 'utf8');
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.byteLength);
    this.buf.set(b, this.length);
    this.length += b.byteLength;
  }
  /** The bytes written, zero-padded to `size`. */
  finish(size: number): Buffer {
    this.reserve(size - this.length);
    this.buf.fill(0, this.length, size);
    return this.buf.subarray(0, size);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = Buffer.alloc(cap);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
}
