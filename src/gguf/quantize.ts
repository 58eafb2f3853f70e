// Weight encodings the writer needs: IEEE half precision and ggml's Q1_0 blocks, bit for bit as
// native/quants/quants.c (and ggml) make them, so a file written here equals one quantized there.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The fp16 bit pattern of x (rounded to float32 first), round to nearest even, as ggml. */
export function fp16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const e = (bits >>> 23) & 0xff;
  const m = bits & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  const exp = e - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    // a subnormal half: h * 2^-24
    if (exp < -10) return sign;
    return sign | roundShift(m | 0x800000, 14 - exp);
  }
  // a carry out of the mantissa correctly bumps the exponent (up to infinity)
  return sign | (((exp << 10) | (m >>> 13)) + roundBit(m, 13, (m >>> 13) & 1));
}

function roundShift(v: number, shift: number): number {
  const h = v >>> shift;
  return h + roundBit(v, shift, h & 1);
}

/** 1 when the `shift` bits dropped from v round the kept value up (nearest, ties to even). */
function roundBit(v: number, shift: number, keptLsb: number): number {
  const rem = v & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && keptLsb) ? 1 : 0;
}

export const Q1_0_BLOCK = 128;
export const Q1_0_BLOCK_BYTES = 18;

/**
 * Q1_0 blocks of `values` (a multiple of 128): per block an fp16 d = mean |x| (summed in float32
 * in order, as the C quantizer), then one bit per weight, LSB first, set for x >= 0 (+d).
 */
export function quantizeQ1_0(values: Float32Array): Uint8Array {
  if (values.length % Q1_0_BLOCK) throw new Error(`Q1_0 needs a multiple of ${Q1_0_BLOCK} values, not ${values.length}`);
  const blocks = values.length / Q1_0_BLOCK;
  const out = new Uint8Array(blocks * Q1_0_BLOCK_BYTES);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q1_0_BLOCK;
    let sum = 0;
    for (let j = 0; j < Q1_0_BLOCK; j++) sum = Math.fround(sum + Math.abs(values[base + j]!));
    const d = fp16Bits(Math.fround(sum / Q1_0_BLOCK));
    const o = b * Q1_0_BLOCK_BYTES;
    out[o] = d & 0xff;
    out[o + 1] = d >> 8;
    for (let j = 0; j < Q1_0_BLOCK; j++) {
      if (values[base + j]! >= 0) out[o + 2 + (j >> 3)]! |= 1 << (j & 7);
    }
  }
  return out;
}
