// Where the shared oracles live (../shared/fixtures beside the checkout, or $BONSAI_FIXTURES),
// and small readers for them. Tests that need them skip with a clear message when absent.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = process.env.BONSAI_FIXTURES ?? path.resolve(REPO_ROOT, '..', 'shared', 'fixtures');
export const HAVE_FIXTURES = existsSync(FIXTURES);
if (!HAVE_FIXTURES) console.warn(`fixtures not found at ${FIXTURES}: oracle tests are skipped (set BONSAI_FIXTURES)`);

export function fixture(rel: string): string {
  return path.join(FIXTURES, rel);
}

export function readJson<T = unknown>(rel: string): T {
  return JSON.parse(readFileSync(fixture(rel), 'utf8')) as T;
}

/** A little-endian f32 file as a Float32Array. */
export function readF32(file: string): Float32Array {
  const buf = readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
