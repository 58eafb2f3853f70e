// Prompt-prefix reuse across requests and restarts, the engine's side: a prompt is cut into blocks
// of a fixed number of tokens, and each block is named by a hash chain over (the model, the KV
// cache type, the kernels, this format, the block's token ids, the previous block's name). Two
// prompts that share their first k blocks share their first k names, so the KV rows of those
// blocks, stored once (PrefixStore: memory, SQLite), let any later prompt skip their prefill. The
// rows are exact: a position's keys and values depend only on the tokens up to it, and the kernels
// give the same bits whether a position is evaluated alone or in a batch.
import { createHash } from 'node:crypto';
import { packageVersion } from '../version.js';

/** Changes whenever the stored rows would mean something else (their order, the hash inputs). */
const KV_BLOCK_FORMAT = 1;
export const DEFAULT_BLOCK_TOKENS = 64;

/** Where KV blocks are kept; it never returns a block whose checksum fails. */
export interface PrefixStore {
  get(hash: string): Uint8Array | undefined;
  has(hash: string): boolean;
  put(hash: string, rows: Uint8Array): void;
}

export interface PrefixSettings {
  store: PrefixStore;
  /** What identifies the weights (e.g. a hash of the model file). */
  modelIdentity: string;
  blockTokens?: number;
}

/** The chain's root: everything besides the tokens that the rows depend on. */
export function chainRoot(modelIdentity: string, kvType: string, kernels: string, blockTokens: number): string {
  // The engine version is in it: a release may change how the rows are computed.
  return sha256(['bonsai-kv', KV_BLOCK_FORMAT, packageVersion(), modelIdentity, kvType, kernels, blockTokens].join('\0'));
}

/** The names of the first `blocks` blocks of `ids`. */
export function blockHashes(root: string, ids: readonly number[] | Int32Array, blockTokens: number, blocks: number): string[] {
  const hashes: string[] = [];
  let parent = root;
  for (let b = 0; b < blocks; b++) {
    const tokens = Int32Array.from(ids.slice(b * blockTokens, (b + 1) * blockTokens));
    parent = createHash('sha256').update(parent).update(new Uint8Array(tokens.buffer)).digest('hex');
    hashes.push(parent);
  }
  return hashes;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
