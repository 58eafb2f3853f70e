// Checkpoints of a distillation run: the trainer's config, the steps done and the run's history
// as a JSON header, then the latent weights and AdamW's moments as float32. Written to a
// temporary file, synced and renamed, so a crash or a full disk never leaves a torn checkpoint.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { TrainerConfig, TrainerState } from '../native.js';

const MAGIC = 'BONSAI-DISTILL-CKPT1\n';

export interface CheckpointHeader {
  /** The config the run was started with (threads excluded: a resume may use others). */
  config: Omit<TrainerConfig, 'threads'>;
  steps: number;
  /** Training time so far, for the ETA and the model card. */
  elapsedMs: number;
  tokensSeen: number;
  history: HistoryEntry[];
  /** The run whose weights this one started from (--init-from), with what that run had done. */
  initFrom?: { file: string; steps: number; quantize: boolean; tokensSeen: number; elapsedMs: number };
}

export interface HistoryEntry {
  step: number;
  elapsedMs: number;
  trainLoss: number;
  trainKl: number;
  trainNll: number;
  /** The student's NLL per token on the validation pieces, when evaluated at this step. */
  valNll?: number;
}

export function saveCheckpoint(file: string, header: CheckpointHeader, state: TrainerState): void {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (const part of [Buffer.from(MAGIC, 'latin1'), len, json, state.params, state.m, state.v]) {
      const bytes = part instanceof Float32Array ? new Uint8Array(part.buffer, part.byteOffset, part.byteLength) : part;
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw new Error(`cannot write the checkpoint ${file}: ${(e as Error).message}`);
  }
  closeSync(fd);
  renameSync(tmp, file);
}

export function loadCheckpoint(file: string, nParams: number): { header: CheckpointHeader; state: TrainerState } {
  const data = readFileSync(file);
  const bad = (why: string) => new Error(`${file} is not a usable checkpoint: ${why}`);
  if (data.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) throw bad('wrong magic');
  if (data.length < MAGIC.length + 4) throw bad('truncated header');
  const jsonLen = data.readUInt32LE(MAGIC.length);
  const floatsAt = MAGIC.length + 4 + jsonLen;
  if (floatsAt > data.length) throw bad('truncated header');
  let header: CheckpointHeader;
  try {
    header = JSON.parse(data.subarray(MAGIC.length + 4, floatsAt).toString('utf8')) as CheckpointHeader;
  } catch {
    throw bad('its header is not JSON');
  }
  if (!header || typeof header !== 'object' || !Number.isInteger(header.steps) || header.steps < 0 || !header.config?.shape) {
    throw bad('its header lacks the config or the step count');
  }
  if (data.length !== floatsAt + 3 * 4 * nParams) throw bad(`it holds ${(data.length - floatsAt) / 12} parameters per tensor set, this student has ${nParams}`);
  // copy out: the floats are not 4-byte aligned in the file
  const floats = (k: number) => new Float32Array(data.buffer.slice(data.byteOffset + floatsAt + k * 4 * nParams, data.byteOffset + floatsAt + (k + 1) * 4 * nParams));
  return { header, state: { params: floats(0), m: floats(1), v: floats(2), steps: header.steps } };
}
