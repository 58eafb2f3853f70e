// GGUF files as the TypeScript side sees them: the native reader's result, plus the summary
// `bonsai inspect` prints. Parsing and validation happen in native/gguf/gguf.c (one parser for both
// the engine and the tools).
import { native, type GgufFileInfo, type GgufValue } from '../native.js';

export type { GgufFileInfo, GgufTensorInfo, GgufValue } from '../native.js';

export class GgufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GgufError';
  }
}

/** Reads a GGUF file's metadata and tensor table; errors name the file. */
export function readGguf(file: string): GgufFileInfo {
  try {
    return native.ggufRead(file);
  } catch (e) {
    const message = (e as Error).message;
    throw new GgufError(message.includes(file) ? message : `${file}: ${message}`);
  }
}

export function metaString(info: GgufFileInfo, key: string): string | undefined {
  const v = info.metadata[key];
  return typeof v === 'string' ? v : undefined;
}

export function metaNumber(info: GgufFileInfo, key: string): number | undefined {
  const v = info.metadata[key];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

export interface GgufSummary {
  architecture: string | undefined;
  name: string | undefined;
  parameters: number;
  tensorBytes: number;
  bitsPerWeight: number;
  /** Tensor count per type name, e.g. { q1_0: 254, f32: 145 }. */
  tensorTypes: Record<string, number>;
  /** The type holding most of the matrices' bytes: what the kernels spend their time on. */
  matrixType: string | undefined;
}

export function summarize(info: GgufFileInfo): GgufSummary {
  let parameters = 0;
  let tensorBytes = 0;
  const tensorTypes: Record<string, number> = {};
  const matrixBytes: Record<string, number> = {};
  for (const t of info.tensors) {
    parameters += t.dims.reduce((a, b) => a * b, 1);
    tensorBytes += t.bytes;
    tensorTypes[t.typeName] = (tensorTypes[t.typeName] ?? 0) + 1;
    if (t.dims.length === 2) matrixBytes[t.typeName] = (matrixBytes[t.typeName] ?? 0) + t.bytes;
  }
  const matrixType = Object.entries(matrixBytes).sort((a, b) => b[1] - a[1])[0]?.[0];
  return {
    matrixType,
    architecture: metaString(info, 'general.architecture'),
    name: metaString(info, 'general.name'),
    parameters,
    tensorBytes,
    bitsPerWeight: parameters ? (tensorBytes * 8) / parameters : 0,
    tensorTypes,
  };
}

/** A metadata value shortened for display: long arrays become "[n x type] first, ...". */
export function describeValue(value: GgufValue, type: string, maxItems = 6): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
  if (typeof value !== 'object') return String(value);
  const items = Array.from(value as ArrayLike<unknown>);
  const shown = items.slice(0, maxItems).map((v) => (typeof v === 'string' ? JSON.stringify(v) : String(v)));
  const more = items.length > maxItems ? ', …' : '';
  return `[${items.length} x ${type.replace(/^array<|>$/g, '')}] ${shown.join(', ')}${more}`;
}

/** JSON-safe copy of a metadata value, arrays summarised the same way as describeValue. */
export function jsonValue(value: GgufValue, type: string, maxItems = 6): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return value;
  const items = Array.from(value as ArrayLike<unknown>);
  return {
    type,
    count: items.length,
    first: items.slice(0, maxItems).map((v) => (typeof v === 'bigint' ? v.toString() : v)),
  };
}
