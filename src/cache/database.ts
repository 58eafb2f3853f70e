// The cache database: one SQLite file (WAL) holding the prompt-prefix KV blocks, cached answers,
// the daemon's request journal and the index of runtime images (files beside it). It must never stop the service or fail a request. A file that is
// corrupt, truncated, of another schema version or another application is moved aside
// (`<file>.corrupt-<time>`) and rebuilt, with one warning. A failure while running (disk full, a
// read-only directory, a lock held by another process, an I/O error) turns the database off with
// a warning; it is opened again on the first use after `retryMs`, and every caller falls back to
// working without it meanwhile.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { PREBUILD_DIR, chooseBinary } from '../prebuilds.js';

export type Sqlite = Database.Database;

const MMAP_BYTES = 1 << 30;

let sqliteBinary: string | undefined;
/** better-sqlite3's binary: its own build, or the one prebuilt for this platform in the package. */
export function sqliteBinding(): string {
  if (!sqliteBinary) {
    const own = path.dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json'));
    sqliteBinary = chooseBinary(
      'better-sqlite3 (better_sqlite3.node)',
      [path.join(own, 'build', 'Release', 'better_sqlite3.node'), path.join(PREBUILD_DIR, 'better_sqlite3.node')],
      'npm rebuild better-sqlite3 (needs python3 and a C++ compiler)',
    );
  }
  return sqliteBinary;
}

/** 'BNZC': what tells this application's cache file from any other SQLite file. */
const APPLICATION_ID = 0x424e5a43;

/** Each entry brings the schema from version i to i + 1. */
const MIGRATIONS: string[] = [
  `CREATE TABLE models (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms REAL NOT NULL, ino INTEGER NOT NULL, identity TEXT NOT NULL);
   CREATE TABLE kv_blocks (hash TEXT PRIMARY KEY, bytes INTEGER NOT NULL, checksum TEXT NOT NULL, data BLOB NOT NULL, used INTEGER NOT NULL);
   CREATE INDEX kv_blocks_used ON kv_blocks (used);
   CREATE TABLE answers (key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, reply TEXT NOT NULL, used INTEGER NOT NULL);
   CREATE INDEX answers_used ON answers (used);
   CREATE TABLE journal (
     row INTEGER PRIMARY KEY, node TEXT NOT NULL, run TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
     response_topic TEXT, correlation BLOB, received_at INTEGER NOT NULL, key TEXT,
     state TEXT NOT NULL, final TEXT, updated_at INTEGER NOT NULL);
   CREATE INDEX journal_key ON journal (key);
   CREATE TABLE chat_sessions (name TEXT NOT NULL, model TEXT NOT NULL, messages TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (name, model));
   CREATE INDEX journal_state ON journal (state, updated_at);`,
  `CREATE TABLE images (path TEXT PRIMARY KEY, key TEXT NOT NULL, bytes INTEGER NOT NULL, used INTEGER NOT NULL);`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

export interface CacheLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface CacheDatabaseOptions {
  /** PRAGMA synchronous: FULL for the journal (power loss), NORMAL for the rest. */
  synchronous?: 'FULL' | 'NORMAL';
  /** After a failure, how long the database stays off before it is tried again. */
  retryMs?: number;
  /** How long to wait for a lock another process holds before giving up on one use. */
  busyTimeoutMs?: number;
  log?: CacheLog;
}

/**
 * The default place of the cache file: the state or cache directory systemd gives the service,
 * else ~/.cache/bonsai-edge/.
 */
export function defaultCachePath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.STATE_DIRECTORY?.split(':')[0] || env.CACHE_DIRECTORY?.split(':')[0] || path.join(os.homedir(), '.cache', 'bonsai-edge');
  return path.join(dir, 'cache.db');
}

export class CacheDatabase {
  private db: Sqlite | undefined;
  private offUntil = 0;
  /** Why the database is off, while it is. */
  reason: string | undefined;
  private readonly log: CacheLog;

  constructor(
    readonly file: string,
    private readonly options: CacheDatabaseOptions = {},
  ) {
    this.log = options.log ?? { warn: () => undefined };
    this.open();
  }

  get available(): boolean {
    return this.connection() !== undefined;
  }

  /**
   * Runs fn on the database; on any SQLite failure the database goes off (one warning) and
   * `fallback` is returned. A corrupt file found here is moved aside and rebuilt at the next use.
   */
  use<T>(what: string, fn: (db: Sqlite) => T, fallback: T): T {
    const db = this.connection();
    if (!db) return fallback;
    try {
      return fn(db);
    } catch (err) {
      this.fail(what, err);
      return fallback;
    }
  }

  close(): void {
    try {
      this.db?.close();
    } catch {
      // closing a database whose file went away: nothing left to do
    }
    this.db = undefined;
  }

  private connection(): Sqlite | undefined {
    if (!this.db && Date.now() >= this.offUntil) this.open();
    return this.db;
  }

  private open(): void {
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      this.db = this.openChecked();
      this.reason = undefined;
    } catch (err) {
      this.turnOff('open', err);
    }
  }

  /** Opens the file, moving it aside once if it is not a sound cache of a schema this code knows. */
  private openChecked(): Sqlite {
    let problem: string | undefined;
    try {
      const db = this.connect();
      problem = unsound(db);
      if (!problem) return prepare(db);
      db.close();
    } catch (err) {
      if (!isDamage(err)) throw err;
      problem = (err as Error).message;
    }
    const aside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(this.file + suffix)) renameSync(this.file + suffix, aside + suffix);
    }
    this.log.warn({ file: this.file, moved_to: aside, problem }, 'cache database unusable: moved aside, starting a new one');
    return prepare(this.connect());
  }

  private connect(): Sqlite {
    const db = new Database(this.file, { timeout: this.options.busyTimeoutMs ?? 200, nativeBinding: sqliteBinding() });
    try {
      // Prompt-prefix blocks are blobs of megabytes: large pages halve the time to write them,
      // and reads through the memory map save a copy (measured: 230 MB in 0.3 s vs 0.6 s).
      // page_size only takes effect on a new file.
      db.pragma('page_size = 65536');
      db.pragma(`mmap_size = ${MMAP_BYTES}`);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.options.synchronous ?? 'NORMAL'}`);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private fail(what: string, err: unknown): void {
    if (isDamage(err)) {
      // Found damaged while in use: closed now, moved aside and rebuilt when next opened.
      this.close();
      this.log.warn({ file: this.file, during: what, err: (err as Error).message }, 'cache database damaged: it is rebuilt at the next use');
      return;
    }
    this.turnOff(what, err);
  }

  private turnOff(what: string, err: unknown): void {
    const retryMs = this.options.retryMs ?? 60_000;
    this.close();
    this.offUntil = Date.now() + retryMs;
    const reason = `${what}: ${(err as Error).message}`;
    if (reason !== this.reason) this.log.warn({ file: this.file, err: reason, retry_in_ms: retryMs }, 'cache off: answering without it');
    this.reason = reason;
  }
}

/** Why an opened file is not a usable cache: another application's, a newer schema, or damaged. */
function unsound(db: Sqlite): string | undefined {
  const app = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
  if (app !== APPLICATION_ID && tables.n > 0) return `not a bonsai-edge cache (application_id ${app})`;
  if (version > SCHEMA_VERSION) return `schema version ${version} is newer than this bonsai-edge knows (${SCHEMA_VERSION})`;
  const check = db.pragma('quick_check', { simple: true }) as string;
  return check === 'ok' ? undefined : `quick_check: ${check}`;
}

/** Brings a sound file to the current schema. */
function prepare(db: Sqlite): Sqlite {
  const version = db.pragma('user_version', { simple: true }) as number;
  db.transaction(() => {
    for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
  return db;
}

/** Errors that mean the file itself is bad (as opposed to the disk, permissions or a lock). */
function isDamage(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT'));
}
