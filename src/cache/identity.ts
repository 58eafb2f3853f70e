// What identifies a model's weights for the caches: the SHA-256 of the whole file. Reading a large
// model to hash it takes a moment, so the result is kept in the cache database against the file's
// path, size, modification time and inode, and computed again only when one of them changes.
import { createHash } from 'node:crypto';
import { createReadStream, realpathSync, statSync } from 'node:fs';
import type { CacheDatabase } from './database.js';

export async function modelIdentity(file: string, db: CacheDatabase | undefined): Promise<string> {
  const real = realpathSync(file);
  const st = statSync(real);
  const known = db?.use(
    'identity',
    (d) => d.prepare('SELECT identity FROM models WHERE path = ? AND size = ? AND mtime_ms = ? AND ino = ?').get(real, st.size, st.mtimeMs, st.ino) as { identity: string } | undefined,
    undefined,
  );
  if (known) return known.identity;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(real, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  const identity = `sha256:${hash.digest('hex')}`;
  db?.use(
    'identity',
    (d) => d.prepare('INSERT OR REPLACE INTO models (path, size, mtime_ms, ino, identity) VALUES (?, ?, ?, ?, ?)').run(real, st.size, st.mtimeMs, st.ino, identity),
    undefined,
  );
  return identity;
}
