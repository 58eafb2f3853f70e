// The cache file when things go wrong: corrupt, truncated, of another version or another
// application; a read-only directory, a full disk, a lock held by another process; a damaged
// block. The cache must never throw at its callers: it moves bad files aside and rebuilds, or
// turns itself off with a warning and tries again later. And its budgets hold.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { AnswerCache } from '../src/cache/answers.js';
import { CacheDatabase, SCHEMA_VERSION, sqliteBinding } from '../src/cache/database.js';
import { RequestJournal } from '../src/cache/journal.js';
import { clearCacheFile, verifyCacheFile } from '../src/cache/maintenance.js';
import { PrefixCache } from '../src/cache/prefix.js';
import { runCli } from './helpers/cli.js';
import { mountTmpfs } from './helpers/mounts.js';
import { seeded } from './helpers/random.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-cachedb-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(tmp, `c${n++}`, 'cache.db');

/** A cache database with its warnings recorded. */
function open(file: string, retryMs = 60_000): { db: CacheDatabase; warnings: { message: string; fields: Record<string, unknown> }[] } {
  const warnings: { message: string; fields: Record<string, unknown> }[] = [];
  const db = new CacheDatabase(file, { retryMs, log: { warn: (fields, message) => warnings.push({ message, fields }) } });
  return { db, warnings };
}

function block(bytes: number, seed: number): Uint8Array {
  const random = seeded(seed);
  return Uint8Array.from({ length: bytes }, () => Math.floor(random() * 256));
}

const aside = (file: string) => readdirSync(path.dirname(file)).filter((f) => f.includes('.corrupt-') && !f.endsWith('-wal') && !f.endsWith('-shm'));

describe('a damaged or foreign cache file is moved aside and rebuilt, with one warning', () => {
  const cases: [string, (file: string) => void][] = [
    ['random bytes', (file) => writeFileSync(file, Buffer.from(block(8192, 1)))],
    [
      'a truncated cache',
      (file) => {
        const { db } = open(file);
        const prefix = new PrefixCache(db, { memoryBytes: 0, diskBytes: 1 << 30 });
        for (let i = 0; i < 8; i++) prefix.put(`h${i}`, block(64 << 10, i));
        prefix.flush();
        db.close();
        writeFileSync(file, readFileSync(file).subarray(0, Math.floor(statSync(file).size / 3)));
      },
    ],
    [
      'a newer schema version',
      (file) => {
        open(file).db.close();
        const raw = new Database(file, { nativeBinding: sqliteBinding() });
        raw.pragma(`user_version = ${SCHEMA_VERSION + 7}`);
        raw.close();
      },
    ],
    [
      "another application's SQLite file",
      (file) => {
        const raw = new Database(file, { nativeBinding: sqliteBinding() });
        raw.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)');
        raw.close();
      },
    ],
  ];
  for (const [what, damage] of cases) {
    it(what, () => {
      const file = fresh();
      mkdirSync(path.dirname(file), { recursive: true });
      damage(file);
      const { db, warnings } = open(file);
      expect(db.available).toBe(true);
      expect(warnings.map((w) => w.message)).toEqual(['cache database unusable: moved aside, starting a new one']);
      expect(aside(file)).toHaveLength(1);
      const prefix = new PrefixCache(db, { memoryBytes: 0, diskBytes: 1 << 20 });
      prefix.put('after', block(1000, 9));
      prefix.flush();
      expect(prefix.get('after')).toEqual(block(1000, 9));
      db.close();
      // The rebuilt file is sound: opened again without a warning.
      expect(open(file).warnings).toEqual([]);
    });
  }
});

describe('a cache that cannot write turns itself off, warns once, answers without it, and comes back', () => {
  it('a read-only directory', () => {
    const mount = mountTmpfs(path.join(tmp, 'ro'), { readOnly: true });
    if (!mount) return void console.warn('skipped: cannot mount a read-only tmpfs here (needs root)');
    try {
      const { db, warnings } = open(path.join(mount.dir, 'cache.db'), 50);
      expect(db.available).toBe(false);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toBe('cache off: answering without it');
      const prefix = new PrefixCache(db, { memoryBytes: 1 << 20, diskBytes: 1 << 20 });
      prefix.put('x', block(100, 1));
      prefix.flush();
      // Memory still serves; the disk tier is simply absent.
      expect(prefix.get('x')).toEqual(block(100, 1));
      expect(new AnswerCache(db, 1 << 20).get('k')).toBeUndefined();
      expect(warnings).toHaveLength(1);
    } finally {
      mount.unmount();
    }
  });

  it('a full disk (a 2 MiB file system)', () => {
    const mount = mountTmpfs(path.join(tmp, 'full'), { sizeBytes: 2 << 20 });
    if (!mount) return void console.warn('skipped: cannot mount a size-limited tmpfs here (needs root)');
    try {
      const { db, warnings } = open(path.join(mount.dir, 'cache.db'), 60_000);
      const prefix = new PrefixCache(db, { memoryBytes: 0, diskBytes: 1 << 30 });
      for (let i = 0; i < 12; i++) {
        prefix.put(`b${i}`, block(256 << 10, i));
        prefix.flush();
      }
      expect(warnings.filter((w) => w.message === 'cache off: answering without it')).toHaveLength(1);
      expect(String(warnings.at(-1)!.fields.err)).toMatch(/full|disk|SQLITE_FULL/i);
      expect(db.available).toBe(false);
      expect(prefix.get('b11')).toBeUndefined();
    } finally {
      mount.unmount();
    }
  });

  it('a lock held by another process', async () => {
    const file = fresh();
    const { db, warnings } = open(file, 200);
    db.close();
    // Another process takes the write lock and holds it.
    const holder = spawn(process.execPath, ['-e', `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(file)}, { nativeBinding: ${JSON.stringify(sqliteBinding())} }); db.exec('BEGIN EXCLUSIVE'); console.log('locked'); setTimeout(() => {}, 60000);`], {
      cwd: path.resolve('.'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
      const answers = new AnswerCache(db, 1 << 20);
      const started = Date.now();
      answers.put('k', { text: 'hi', finish_reason: 'stop', completion_tokens: 1 });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(warnings.map((w) => w.message)).toContain('cache off: answering without it');
      expect(answers.get('k')).toBeUndefined();
      holder.kill();
      await new Promise((r) => holder.once('exit', r));
      await new Promise((r) => setTimeout(r, 250));
      // Tried again after retryMs: back on.
      answers.put('k', { text: 'hi', finish_reason: 'stop', completion_tokens: 1 });
      expect(answers.get('k')).toMatchObject({ text: 'hi' });
    } finally {
      holder.kill();
      db.close();
    }
  });
});

describe('prompt-prefix blocks', () => {
  it('a block that fails its checksum is dropped, never returned; verify finds and drops such blocks', () => {
    const file = fresh();
    const { db } = open(file);
    const prefix = new PrefixCache(db, { memoryBytes: 0, diskBytes: 1 << 30 });
    prefix.put('good', block(4096, 1));
    prefix.put('bad', block(4096, 2));
    prefix.put('bad2', block(4096, 3));
    prefix.flush();
    db.use('damage', (d) => d.prepare("UPDATE kv_blocks SET data = ? WHERE hash IN ('bad', 'bad2')").run(Buffer.from(block(4096, 99))), undefined);
    expect(prefix.get('bad')).toBeUndefined();
    expect(prefix.stats().damaged).toBe(1);
    expect(prefix.has('bad')).toBe(false);
    expect(prefix.get('good')).toEqual(block(4096, 1));
    expect(verifyCacheFile(db)).toEqual({ integrity: 'ok', blocks_checked: 2, blocks_dropped: 1 });
    expect(prefix.has('bad2')).toBe(false);
    db.close();
  });

  it('memory and disk budgets hold under a stream of distinct blocks, the least recently used going first', () => {
    const file = fresh();
    const { db } = open(file);
    const memoryBytes = 5 * 10_000;
    const diskBytes = 12 * 10_000;
    const prefix = new PrefixCache(db, { memoryBytes, diskBytes });
    for (let i = 0; i < 200; i++) {
      prefix.put(`s${i}`, block(10_000, i));
      if (i % 7 === 0) prefix.flush();
      // An old block used again stays while newer ones push others out.
      expect(prefix.get('s0'), `step ${i}`).toBeDefined();
      const s = prefix.stats();
      expect(s.memory.bytes).toBeLessThanOrEqual(memoryBytes);
      expect(s.disk.bytes).toBeLessThanOrEqual(diskBytes);
    }
    prefix.flush();
    const s = prefix.stats();
    expect(s.memory.blocks).toBe(5);
    expect(s.disk.blocks).toBe(12);
    expect(prefix.get('s1')).toBeUndefined();
    expect(prefix.get('s199')).toEqual(block(10_000, 199));
    db.close();
  });
});

describe('request journal', () => {
  it('keeps each request to its final reply; a new run sees what the earlier one left unfinished, per node', () => {
    const file = fresh();
    const first = open(file).db;
    const a = new RequestJournal(first, 'bonsai/a');
    const other = new RequestJournal(first, 'bonsai/b');
    const r1 = a.record('bonsai/a/request', Buffer.from('{"id":"1","prompt":"x"}'), {}, 1000)!;
    const r2 = a.record('bonsai/a/request', Buffer.from('{"id":"2","prompt":"x"}'), { responseTopic: 'rt', correlationData: Buffer.from([0, 1]) }, 2000)!;
    const r3 = a.record('bonsai/a/request', Buffer.from('{"id":"3","prompt":"x"}'), {}, 3000)!;
    other.record('bonsai/request', Buffer.from('{"id":"9","prompt":"x"}'), {}, 4000);
    expect(a.settle(r1, 'k1')).toEqual({ kind: 'new' });
    a.mark(r1, 'running');
    a.final(r1, '{"id":"1","type":"done"}');
    a.mark(r1, 'done');
    expect(a.settle(r2, 'k2')).toEqual({ kind: 'new' });
    a.mark(r2, 'running');
    a.final(r3, '{"id":"3","type":"error"}');
    first.close();

    const second = open(file).db;
    const again = new RequestJournal(second, 'bonsai/a');
    const left = again.interrupted();
    expect(left.map((r) => [r.row, r.state])).toEqual([
      [r2, 'running'],
      [r3, 'final'],
    ]);
    expect(left[0]).toMatchObject({ responseTopic: 'rt', correlationData: Buffer.from([0, 1]), receivedAt: 2000, key: 'k2' });
    // The same key later: the answered one replays, the one in flight is not run twice.
    const dup1 = again.record('bonsai/a/request', Buffer.from('{"id":"1","prompt":"x"}'), {}, 5000)!;
    expect(again.settle(dup1, 'k1')).toEqual({ kind: 'answered', final: '{"id":"1","type":"done"}' });
    const dup2 = again.record('bonsai/a/request', Buffer.from('{"id":"2","prompt":"x"}'), {}, 5000)!;
    expect(again.settle(dup2, 'k2')).toEqual({ kind: 'in-flight' });
    expect(again.prune(0)).toBe(1);
    expect(clearCacheFile(second)).toBe(true);
    expect(again.interrupted()).toHaveLength(2);
    second.close();
  });
});

describe('bonsai cache', () => {
  it('stats, verify, clear and vacuum, with --json and exit codes scripts can use', async () => {
    const file = fresh();
    const { db } = open(file);
    const prefix = new PrefixCache(db, { memoryBytes: 0, diskBytes: 1 << 30 });
    for (let i = 0; i < 3; i++) prefix.put(`h${i}`, block(100_000, i));
    prefix.flush();
    new AnswerCache(db, 1 << 20).put('a', { text: 'x', finish_reason: 'stop', completion_tokens: 1 });
    db.close();
    const stats = await runCli(['cache', 'stats', '--cache', file, '--json']);
    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ file, prefix_blocks: 3, prefix_bytes: 300_000, answers: 1 });
    expect(JSON.parse((await runCli(['cache', 'verify', '--cache', file, '--json'])).stdout)).toEqual({ integrity: 'ok', blocks_checked: 3, blocks_dropped: 0 });
    const raw = new Database(file, { nativeBinding: sqliteBinding() });
    raw.prepare("UPDATE kv_blocks SET data = zeroblob(100000) WHERE hash = 'h1'").run();
    raw.close();
    const damaged = await runCli(['cache', 'verify', '--cache', file]);
    expect(damaged.code).toBe(1);
    expect(damaged.stdout).toMatch(/3 blocks checked, 1 damaged and dropped/);
    expect((await runCli(['cache', 'clear', '--cache', file])).code).toBe(0);
    expect(JSON.parse((await runCli(['cache', 'stats', '--cache', file, '--json'])).stdout)).toMatchObject({ prefix_blocks: 0, answers: 0 });
    const vacuum = JSON.parse((await runCli(['cache', 'vacuum', '--cache', file, '--json'])).stdout) as { before: number; after: number };
    expect(vacuum.after).toBeLessThan(vacuum.before);
    expect(existsSync(file)).toBe(true);
  });
});
