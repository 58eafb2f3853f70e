// Runtime images (native/model/image.h): a model's weights decoded and repacked for this CPU's
// kernel path, in a file beside the cache database that the next load maps in place instead of
// decoding (a .bnz pack) and repacking. One per model content and kernel path; the database
// indexes them so that the least recently used beyond KEEP_IMAGES are deleted. The engine checks
// each image whole (key, kernel path, layout version, a CRC-32 per MiB) and rebuilds one that does
// not match, so a stale or damaged file costs a rebuild, never a wrong answer.
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { LoadInfo } from '../engine/engine.js';
import type { CacheDatabase } from './database.js';
import { modelIdentity } from './identity.js';

/** Images kept: a board runs one model, and a few cover switching between kernel paths or models. */
export const KEEP_IMAGES = 3;

export interface ImageChoice {
  path: string;
  key: string;
}

/** The image a model file runs from on this kernel path (kernels undefined: the CPU's best). */
export async function imageFor(db: CacheDatabase | undefined, file: string, kernels?: string): Promise<ImageChoice | undefined> {
  if (!db?.available) return undefined;
  const key = await modelIdentity(file, db);
  const name = createHash('sha256').update(`${key}\n${kernels ?? 'auto'}`).digest('hex').slice(0, 32);
  const dir = path.join(path.dirname(db.file), 'images');
  try {
    mkdirSync(dir, { recursive: true });
  } catch {
    return undefined; // a read-only cache directory: the model loads without an image
  }
  return { path: path.join(dir, `${name}.img`), key };
}

/** After a load that used or wrote `image`: marks it used and deletes the least recently used beyond KEEP_IMAGES. */
export function noteImage(db: CacheDatabase | undefined, image: ImageChoice, info: LoadInfo): void {
  if (!db || (info.image !== 'used' && info.image !== 'written')) return;
  let bytes = 0;
  try {
    bytes = statSync(image.path).size;
  } catch {
    return;
  }
  const stale = db.use(
    'images',
    (d) => {
      d.prepare('INSERT OR REPLACE INTO images (path, key, bytes, used) VALUES (?, ?, ?, ?)').run(image.path, image.key, bytes, Date.now());
      const old = d.prepare('SELECT path FROM images ORDER BY used DESC LIMIT -1 OFFSET ?').all(KEEP_IMAGES) as { path: string }[];
      for (const row of old) d.prepare('DELETE FROM images WHERE path = ?').run(row.path);
      return old.map((r) => r.path);
    },
    [] as string[],
  );
  for (const file of stale) rmSync(file, { force: true });
}

/** Deletes every indexed image (`bonsai cache clear`). */
export function clearImages(db: CacheDatabase): void {
  const files = db.use('images', (d) => (d.prepare('SELECT path FROM images').all() as { path: string }[]).map((r) => r.path), [] as string[]);
  for (const file of files) rmSync(file, { force: true });
}
