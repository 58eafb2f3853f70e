// .bnz packs (native/pack/bnz.h): a GGUF's tensor data entropy-coded in checksummed chunks. Packing,
// verifying and unpacking run on the addon's worker threads; this module gives them defaults.
import os from 'node:os';
import { native, type PackProgress, type PackStreams } from '../native.js';

export const PACK_EXTENSION = '.bnz';
export const DEFAULT_LEVEL = 2;
export const MAX_LEVEL = 3;

export interface PackResult {
  /** Bytes of GGUF data and of coded data, per stream kind. */
  decoded: PackStreams;
  coded: PackStreams;
}

export interface PackJobOptions {
  threads?: number;
  onProgress?: PackProgress;
}

function threadsOf(o: PackJobOptions): number {
  return o.threads ?? Math.max(1, Math.min(8, os.availableParallelism()));
}

const quiet: PackProgress = () => {};

export function packModel(gguf: string, out: string, level = DEFAULT_LEVEL, o: PackJobOptions = {}): Promise<PackResult> {
  return native.packWrite(gguf, out, level, threadsOf(o), o.onProgress ?? quiet);
}

export async function verifyPack(pack: string, o: PackJobOptions = {}): Promise<void> {
  await native.packVerify(pack, threadsOf(o), o.onProgress ?? quiet);
}

export async function unpackModel(pack: string, out: string, o: PackJobOptions = {}): Promise<void> {
  await native.packUnpack(pack, out, threadsOf(o), o.onProgress ?? quiet);
}

/** The file a pack of `gguf` is written to when none is named: its name with .bnz for .gguf. */
export function defaultPackName(gguf: string): string {
  return gguf.replace(/\.gguf$/i, '') + PACK_EXTENSION;
}
