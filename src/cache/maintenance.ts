// What `bonsai cache` does to a cache file: figures, a full check, clearing and compacting. Each
// works on a file the daemon may be using at the same time (WAL lets readers and one writer share it).
import { statSync } from 'node:fs';
import type { CacheDatabase, Sqlite } from './database.js';
import { clearImages } from './images.js';
import { checksum } from './prefix.js';

export interface CacheFileStats {
  file: string;
  file_bytes: number;
  prefix_blocks: number;
  prefix_bytes: number;
  answers: number;
  answer_bytes: number;
  models: number;
  /** Runtime images (files beside the cache file) and their bytes. */
  images: number;
  image_bytes: number;
  chat_sessions: number;
  journal: Record<string, number>;
}

export function cacheFileStats(cache: CacheDatabase): CacheFileStats | undefined {
  return cache.use(
    'stats',
    (db) => {
      const one = (sql: string) => db.prepare(sql).get() as Record<string, number>;
      const blocks = one('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM kv_blocks');
      const answers = one('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM answers');
      const images = one('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM images');
      const journal = Object.fromEntries((db.prepare('SELECT state, count(*) AS n FROM journal GROUP BY state').all() as { state: string; n: number }[]).map((r) => [r.state, r.n]));
      return {
        file: cache.file,
        file_bytes: fileBytes(cache.file),
        prefix_blocks: blocks.n!,
        prefix_bytes: blocks.bytes!,
        answers: answers.n!,
        answer_bytes: answers.bytes!,
        models: one('SELECT count(*) AS n FROM models').n!,
        images: images.n!,
        image_bytes: images.bytes!,
        chat_sessions: one('SELECT count(*) AS n FROM chat_sessions').n!,
        journal,
      };
    },
    undefined,
  );
}

export interface VerifyResult {
  integrity: string;
  blocks_checked: number;
  /** Blocks whose checksum failed: deleted (the engine computes them again). */
  blocks_dropped: number;
}

/** SQLite's full integrity check, and every prefix block against its checksum. */
export function verifyCacheFile(cache: CacheDatabase): VerifyResult | undefined {
  return cache.use(
    'verify',
    (db) => {
      const integrity = (db.pragma('integrity_check', { simple: true }) as string) ?? 'unknown';
      let checked = 0;
      const damaged: string[] = [];
      for (const row of db.prepare('SELECT hash, checksum, data FROM kv_blocks').iterate() as Iterable<{ hash: string; checksum: string; data: Buffer }>) {
        checked++;
        if (checksum(row.data) !== row.checksum) damaged.push(row.hash);
      }
      const drop = db.prepare('DELETE FROM kv_blocks WHERE hash = ?');
      for (const hash of damaged) drop.run(hash);
      return { integrity, blocks_checked: checked, blocks_dropped: damaged.length };
    },
    undefined,
  );
}

/** Empties the caches and deletes the runtime images; the journal keeps the requests still owed an answer. */
export function clearCacheFile(cache: CacheDatabase): boolean {
  clearImages(cache);
  return cache.use(
    'clear',
    (db: Sqlite) => {
      db.transaction(() => {
        for (const table of ['kv_blocks', 'answers', 'models', 'chat_sessions', 'images']) db.exec(`DELETE FROM ${table}`);
        db.exec("DELETE FROM journal WHERE state = 'done'");
      })();
      return true;
    },
    false,
  );
}

/** Gives the space of deleted rows back to the file system. */
export function vacuumCacheFile(cache: CacheDatabase): { before: number; after: number } | undefined {
  const before = fileBytes(cache.file);
  return cache.use(
    'vacuum',
    (db) => {
      db.exec('VACUUM');
      db.pragma('wal_checkpoint(TRUNCATE)');
      return { before, after: fileBytes(cache.file) };
    },
    undefined,
  );
}

function fileBytes(file: string): number {
  const size = (f: string) => {
    try {
      return statSync(f).size;
    } catch {
      return 0;
    }
  };
  return size(file) + size(`${file}-wal`);
}
