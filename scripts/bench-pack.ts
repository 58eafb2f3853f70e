// What .bnz packs and runtime images buy, measured in one run on this machine:
//
//   npx vite-node scripts/bench-pack.ts [-- --model FILE] [--reps 3] [--cold]
//
// 1. Per model (the fixtures, the bundled model, a synthetic Bonsai-1.7B): bits per weight before
//    and after packing, each stream's share and decode MB/s on one thread (build/tools/bench_pack,
//    built by `npm run build`).
// 2. Start-up of one model (default: the synthetic Bonsai-1.7B shape, random 1-bit weights and the
//    real Qwen3 vocabulary, written to $BONSAI_BENCH_DIR or /tmp), each start a new process:
//      gguf          today's path: map the GGUF, repack its matrices;
//      gguf+image    the GGUF, its repacked matrices mapped from a runtime image;
//      bnz           the pack, decoded and repacked (no image);
//      bnz+image     the pack, everything mapped from its runtime image (nothing decoded);
//      bnz→image     the first start with a cache: decode, repack, write the image.
//    And the alternative design, the image kept as 1 MiB blobs in SQLite (better-sqlite3) rather
//    than a file mapped in place: the time and peak RSS of only reading those blobs into memory,
//    in a new process (a lower bound for a load from it: nothing is bound or run).
//    Each gives the load time, the time to the first generated token (load, tokenizer, prompt of
//    a few tokens) and the process's peak RSS; medians over --reps starts, variants alternating.
//    With --cold the page cache is dropped before every start (root only), as after a reboot.
// Prints one JSON object.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { sqliteBinding } from '../src/cache/database.js';
import { Model } from '../src/engine/engine.js';
import { synthesize } from '../src/gguf/synth.js';
import { packModel } from '../src/pack/pack.js';

const here = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(here), '..');
const fixtures = process.env.BONSAI_FIXTURES ?? path.resolve(repoRoot, '../shared/fixtures');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    reps: { type: 'string', default: '3' },
    cold: { type: 'boolean', default: false },
    probe: { type: 'string' },
    'probe-sqlite': { type: 'string' },
  },
});

interface Probe {
  file: string;
  image?: { path: string; key: string };
}

/** One start, in this process: load, first token, peak RSS. */
async function probe(p: Probe): Promise<void> {
  const t0 = performance.now();
  const model = await Model.load(p.file, { threads: 2, contextSize: 256, ...(p.image ? { image: p.image } : {}) });
  const loadMs = performance.now() - t0;
  await model.generate({ prompt: 'Once upon a time', maxTokens: 1, sampling: { temperature: 0 } });
  const ttftMs = performance.now() - t0;
  const out = { loadMs, engineLoadMs: model.loadInfo.ms, ttftMs, peakRssMiB: process.resourceUsage().maxRSS / 1024, image: model.loadInfo.image };
  model.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const BLOB = 1 << 20;

/** The image file as 1 MiB blobs in a SQLite table. */
function imageToSqlite(image: string, dbFile: string): void {
  const db = new Database(dbFile, { nativeBinding: sqliteBinding() });
  db.exec('CREATE TABLE parts (i INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  const bytes = readFileSync(image);
  const insert = db.prepare('INSERT INTO parts (i, data) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i * BLOB < bytes.length; i++) insert.run(i, bytes.subarray(i * BLOB, (i + 1) * BLOB));
  })();
  db.close();
}

/** Reads every blob into one buffer, as a load from SQLite would have to. */
function probeSqlite(dbFile: string): void {
  const t0 = performance.now();
  const db = new Database(dbFile, { readonly: true, nativeBinding: sqliteBinding() });
  const { n } = db.prepare('SELECT count(*) AS n FROM parts').get() as { n: number };
  const out = Buffer.allocUnsafe(n * BLOB);
  let at = 0;
  for (const row of db.prepare('SELECT data FROM parts ORDER BY i').iterate() as Iterable<{ data: Buffer }>) at += row.data.copy(out, at);
  db.close();
  const loadMs = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ loadMs, engineLoadMs: loadMs, ttftMs: null, peakRssMiB: process.resourceUsage().maxRSS / 1024, image: `${at} bytes read` })}\n`);
}

function dropCaches(): void {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

/** A new process (the same runner: vite-node is argv[1]) for one start. */
function start(p: Probe | { sqlite: string }): Record<string, number | string | null> {
  if (args.cold) dropCaches();
  const flag = 'sqlite' in p ? ['--probe-sqlite', p.sqlite] : ['--probe', JSON.stringify(p)];
  const child = spawnSync(process.execPath, [process.argv[1]!, here, '--', ...flag], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (child.status !== 0) throw new Error(`probe failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as Record<string, number | string | null>;
}

/** The median, to 0.1 (null where a variant has no such figure). */
function median(xs: (number | null)[]): number | null {
  const s = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  return s.length ? +s[Math.floor(s.length / 2)]!.toFixed(1) : null;
}

function packStats(file: string): unknown {
  const tool = path.join(repoRoot, 'build', 'tools', 'bench_pack');
  return JSON.parse(execFileSync(tool, [file], { encoding: 'utf8', maxBuffer: 16 << 20 }));
}

async function main(): Promise<void> {
  if (args.probe) return probe(JSON.parse(args.probe) as Probe);
  if (args['probe-sqlite']) return probeSqlite(args['probe-sqlite']);
  const dir = mkdtempSync(path.join(process.env.BONSAI_BENCH_DIR ?? tmpdir(), 'bonsai-bench-pack-'));
  try {
    let model = args.model;
    if (!model) {
      model = path.join(dir, 'bonsai-1.7b-synthetic.gguf');
      await synthesize(model, { shape: '1.7b', vocabFrom: path.join(fixtures, 'qwen3-vocab', 'ggml-vocab-qwen3.gguf'), seed: 1 });
    }
    const models: Record<string, string> = {
      'stories260K (F32)': path.join(fixtures, 'stories260K', 'stories260K.gguf'),
      ...Object.fromEntries(['q1_0', 'tq1_0', 'tq2_0', 'q8_0', 'f32'].map((t) => [`tiny-qwen3 ${t}`, path.join(fixtures, 'qwen3-tiny', 'models', `tiny-qwen3-${t}.gguf`)])),
      'bundled tinystories-xs (Q1_0, trained)': path.join(repoRoot, 'models', 'tinystories-xs-q1_0.gguf'),
      [args.model ? path.basename(model) : 'synthetic Bonsai-1.7B (Q1_0, random)']: model,
    };
    const packs = Object.fromEntries(Object.entries(models).filter(([, f]) => existsSync(f)).map(([name, f]) => [name, packStats(f)]));

    const bnz = path.join(dir, 'model.bnz');
    const packStart = performance.now();
    await packModel(model, bnz);
    const packSeconds = (performance.now() - packStart) / 1000;
    const ggufImage = { path: path.join(dir, 'gguf.img'), key: 'gguf' };
    const bnzImage = { path: path.join(dir, 'bnz.img'), key: 'bnz' };
    const sqliteFile = path.join(dir, 'image.db');
    const variants: Record<string, () => Probe | { sqlite: string }> = {
      gguf: () => ({ file: model }),
      'gguf+image': () => ({ file: model, image: ggufImage }),
      bnz: () => ({ file: bnz }),
      'bnz+image': () => ({ file: bnz, image: bnzImage }),
      'bnz→image': () => {
        rmSync(path.join(dir, 'first.img'), { force: true });
        return { file: bnz, image: { path: path.join(dir, 'first.img'), key: 'first' } };
      },
      'bnz image as SQLite blobs (read only)': () => ({ sqlite: sqliteFile }),
    };
    start(variants['gguf+image']!()); // writes the images the warm variants use
    start(variants['bnz+image']!());
    imageToSqlite(bnzImage.path, sqliteFile);
    const runs: Record<string, Record<string, number | string | null>[]> = {};
    for (let r = 0; r < Number(args.reps); r++) {
      for (const [name, make] of Object.entries(variants)) (runs[name] ??= []).push(start(make()));
    }
    const startup = Object.fromEntries(
      Object.entries(runs).map(([name, rs]) => [
        name,
        {
          image: rs[0]!.image,
          loadMs: median(rs.map((x) => x.loadMs as number | null)),
          engineLoadMs: median(rs.map((x) => x.engineLoadMs as number | null)),
          ttftMs: median(rs.map((x) => x.ttftMs as number | null)),
          peakRssMiB: median(rs.map((x) => x.peakRssMiB as number | null)),
        },
      ]),
    );
    const cpu = /model name\s*:\s*(.*)/.exec(execFileSync('cat', ['/proc/cpuinfo'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
    process.stdout.write(`${JSON.stringify({ cpu, cold: args.cold, reps: Number(args.reps), model, packSeconds: +packSeconds.toFixed(2), packs, startup }, null, 1)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
