// The prompt-prefix KV blocks in two tiers: an in-memory LRU for the hot path, and the cache
// database for persistence across restarts, each with a byte budget, least recently used out
// first. Blocks are checksummed on disk; one that fails its check is deleted and reported as
// absent, so the engine computes it again rather than use it. Disk writes are queued and done one
// block per turn of the event loop, so storing a long prompt's blocks never holds up replies.
import { crc32 } from 'node:zlib';
import type { PrefixStore } from '../engine/prefix.js';
import type { CacheDatabase, Sqlite } from './database.js';

export interface PrefixCacheOptions {
  memoryBytes: number;
  diskBytes: number;
}

export interface PrefixCacheStats {
  memory: { blocks: number; bytes: number; budget: number; hits: number };
  disk: { blocks: number; bytes: number; budget: number; hits: number; available: boolean };
  misses: number;
  /** Blocks found damaged on disk and dropped. */
  damaged: number;
}

export class PrefixCache implements PrefixStore {
  private readonly memory = new Map<string, Uint8Array>();
  private memoryBytes = 0;
  private readonly pending = new Map<string, Uint8Array>();
  /** Blocks read from disk whose last use is not written yet (written after the request, not during it). */
  private readonly touched = new Set<string>();
  private flushing = false;
  private hits = { memory: 0, disk: 0 };
  private misses = 0;
  private damaged = 0;

  constructor(
    private readonly db: CacheDatabase | undefined,
    private readonly options: PrefixCacheOptions,
  ) {}

  has(hash: string): boolean {
    return this.memory.has(hash) || this.pending.has(hash) || this.onDisk(hash);
  }

  get(hash: string): Uint8Array | undefined {
    const held = this.memory.get(hash) ?? this.pending.get(hash);
    if (held) {
      this.hits.memory++;
      this.remember(hash, held);
      return held;
    }
    const rows = this.readDisk(hash);
    if (!rows) {
      this.misses++;
      return undefined;
    }
    this.hits.disk++;
    this.remember(hash, rows);
    return rows;
  }

  put(hash: string, rows: Uint8Array): void {
    this.remember(hash, rows);
    if (!this.db || rows.byteLength > this.options.diskBytes) return;
    this.pending.set(hash, rows);
    this.scheduleFlush();
  }

  /** Writes every queued block and use now (before a process exits). */
  flush(): void {
    for (const [hash, rows] of this.pending) this.writeDisk(hash, rows);
    this.pending.clear();
    this.writeUses();
  }

  /**
   * Reads the most recently used blocks from disk into memory, up to the memory budget, one block
   * per turn of the event loop: a daemon does this once it is online, so that the first prompts
   * after a restart find their prefix in memory. Resolves when done.
   */
  async warm(): Promise<number> {
    const hashes = this.db?.use('warm', (db) => (db.prepare('SELECT hash, bytes FROM kv_blocks ORDER BY used DESC').all() as { hash: string; bytes: number }[]), []) ?? [];
    let room = this.options.memoryBytes - this.memoryBytes;
    const chosen: string[] = [];
    for (const { hash, bytes } of hashes) {
      if (bytes > room) break;
      room -= bytes;
      chosen.push(hash);
    }
    let warmed = 0;
    // The least recently used first, so that the memory tier keeps the disk's order of use.
    for (const hash of chosen.reverse()) {
      await new Promise((r) => setImmediate(r));
      if (this.memory.has(hash)) continue;
      const rows = this.readDisk(hash);
      if (!rows) continue;
      this.remember(hash, rows);
      warmed++;
    }
    return warmed;
  }

  stats(): PrefixCacheStats {
    const disk = this.db?.use('stats', (db) => db.prepare('SELECT count(*) AS blocks, coalesce(sum(bytes), 0) AS bytes FROM kv_blocks').get() as { blocks: number; bytes: number }, undefined);
    return {
      memory: { blocks: this.memory.size, bytes: this.memoryBytes, budget: this.options.memoryBytes, hits: this.hits.memory },
      disk: { blocks: disk?.blocks ?? 0, bytes: disk?.bytes ?? 0, budget: this.options.diskBytes, hits: this.hits.disk, available: disk !== undefined },
      misses: this.misses,
      damaged: this.damaged,
    };
  }

  /** Most recently used last; the oldest go when the budget is exceeded. */
  private remember(hash: string, rows: Uint8Array): void {
    const earlier = this.memory.get(hash);
    if (earlier) {
      this.memory.delete(hash);
      this.memoryBytes -= earlier.byteLength;
    }
    if (rows.byteLength > this.options.memoryBytes) return;
    this.memory.set(hash, rows);
    this.memoryBytes += rows.byteLength;
    for (const [oldest, old] of this.memory) {
      if (this.memoryBytes <= this.options.memoryBytes) break;
      this.memory.delete(oldest);
      this.memoryBytes -= old.byteLength;
    }
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flushOne());
  }

  private flushOne(): void {
    const next = this.pending.entries().next();
    if (next.done) {
      this.writeUses();
      this.flushing = false;
      return;
    }
    const [hash, rows] = next.value;
    this.writeDisk(hash, rows);
    this.pending.delete(hash);
    setImmediate(() => this.flushOne());
  }

  private onDisk(hash: string): boolean {
    return this.db?.use('lookup', (db) => db.prepare('SELECT 1 FROM kv_blocks WHERE hash = ?').get(hash) !== undefined, false) ?? false;
  }

  private readDisk(hash: string): Uint8Array | undefined {
    return this.db?.use(
      'read',
      (db) => {
        const row = db.prepare('SELECT data, checksum FROM kv_blocks WHERE hash = ?').get(hash) as { data: Buffer; checksum: string } | undefined;
        if (!row) return undefined;
        if (checksum(row.data) !== row.checksum) {
          db.prepare('DELETE FROM kv_blocks WHERE hash = ?').run(hash);
          this.damaged++;
          return undefined;
        }
        this.touched.add(hash);
        this.scheduleFlush();
        return new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength);
      },
      undefined,
    );
  }

  private writeUses(): void {
    if (this.touched.size === 0) return;
    const hashes = [...this.touched];
    this.touched.clear();
    const now = Date.now();
    this.db?.use(
      'write',
      (db) => {
        const touch = db.prepare('UPDATE kv_blocks SET used = ? WHERE hash = ?');
        db.transaction(() => hashes.forEach((hash) => touch.run(now, hash)))();
      },
      undefined,
    );
  }

  private writeDisk(hash: string, rows: Uint8Array): void {
    this.db?.use(
      'write',
      (db) =>
        db.transaction(() => {
          db.prepare('INSERT OR REPLACE INTO kv_blocks (hash, bytes, checksum, data, used) VALUES (?, ?, ?, ?, ?)').run(hash, rows.byteLength, checksum(rows), rows, Date.now());
          evictOldest(db, 'kv_blocks', this.options.diskBytes);
        })(),
      undefined,
    );
  }
}

export function checksum(data: Uint8Array): string {
  return `crc32:${crc32(data).toString(16).padStart(8, '0')}`;
}

/** Deletes the least recently used rows of a table until its bytes fit the budget. */
export function evictOldest(db: Sqlite, table: 'kv_blocks' | 'answers', budget: number): void {
  let { total } = db.prepare(`SELECT coalesce(sum(bytes), 0) AS total FROM ${table}`).get() as { total: number };
  if (total <= budget) return;
  const oldest = db.prepare(`SELECT rowid, bytes FROM ${table} ORDER BY used LIMIT 64`);
  const drop = db.prepare(`DELETE FROM ${table} WHERE rowid = ?`);
  while (total > budget) {
    const rows = oldest.all() as { rowid: number; bytes: number }[];
    if (rows.length === 0) break;
    for (const row of rows) {
      if (total <= budget) break;
      drop.run(row.rowid);
      total -= row.bytes;
    }
  }
}
