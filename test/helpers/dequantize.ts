// An F32 copy of a GGUF whose matrices are Q1_0: the reference the engine's Q1_0 kernels are
// compared with (same metadata and tensor order, every weight dequantized: +d or -d).
import { openSync, readSync, closeSync } from 'node:fs';
import { readGguf } from '../../src/gguf/reader.js';
import { GGML_TYPE, writeGguf, type GgufMetaType, type GgufTensorSource } from '../../src/gguf/writer.js';

function fp16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

export function dequantizeQ1_0(blocks: Uint8Array): Float32Array {
  const out = new Float32Array((blocks.length / 18) * 128);
  for (let b = 0; b < blocks.length / 18; b++) {
    const d = fp16Value(blocks[b * 18]! | (blocks[b * 18 + 1]! << 8));
    for (let j = 0; j < 128; j++) out[b * 128 + j] = (blocks[b * 18 + 2 + (j >> 3)]! >> (j & 7)) & 1 ? d : -d;
  }
  return out;
}

export async function writeF32Copy(src: string, dst: string): Promise<void> {
  const info = readGguf(src);
  const kvs = Object.keys(info.metadata)
    .filter((key) => key !== 'general.file_type')
    .map((key) => ({ key, type: info.metadataTypes[key] as GgufMetaType, value: info.metadata[key] }));
  const fd = openSync(src, 'r');
  try {
    const tensors: GgufTensorSource[] = info.tensors.map((t) => {
      const raw = new Uint8Array(t.bytes);
      readSync(fd, raw, 0, t.bytes, info.dataOffset + t.offset);
      if (t.typeName !== 'q1_0' && t.typeName !== 'f32') throw new Error(`${t.name}: ${t.typeName} is not Q1_0 or F32`);
      const values = t.typeName === 'q1_0' ? new Uint8Array(dequantizeQ1_0(raw).buffer) : raw;
      return { name: t.name, type: GGML_TYPE.F32, dims: t.dims, *data() { yield values; } };
    });
    await writeGguf(dst, [...kvs, { key: 'general.file_type', type: 'u32', value: 0 }], tensors);
  } finally {
    closeSync(fd);
  }
}
