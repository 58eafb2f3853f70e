// `bonsai cache stats|verify|clear|vacuum`: the cache file of the daemon and of the commands.
import type { Command } from 'commander';
import { CacheDatabase, defaultCachePath } from '../cache/database.js';
import { cacheFileStats, clearCacheFile, vacuumCacheFile, verifyCacheFile } from '../cache/maintenance.js';

interface CacheFlags {
  cache?: string;
  json?: boolean;
}

type Action = (cache: CacheDatabase, flags: CacheFlags) => number;

export function register(program: Command): void {
  const cache = program.command('cache').description('the cache file: prompt prefixes, answers, the request journal');
  const sub = (name: string, description: string, action: Action) =>
    cache
      .command(name)
      .description(description)
      .option('--cache <file>', 'the cache file (default: $BONSAI_CACHE_PATH, else the default path)')
      .option('--json', 'print JSON')
      .action((flags: CacheFlags) => {
        const db = new CacheDatabase(flags.cache ?? (process.env.BONSAI_CACHE_PATH || defaultCachePath()), {
          log: { warn: (fields, message) => process.stderr.write(`bonsai cache: ${message}${fields.err ? ` (${String(fields.err)})` : ''}\n`) },
        });
        try {
          if (!db.available) throw new Error(`cannot open the cache file ${db.file}: ${db.reason}`);
          process.exitCode = action(db, flags);
        } finally {
          db.close();
        }
      });
  sub('stats', 'sizes and counts', (db, flags) => {
    const s = cacheFileStats(db)!;
    if (flags.json) print(s);
    else {
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
      console.log(`${s.file}: ${mib(s.file_bytes)}`);
      console.log(`  prompt-prefix blocks: ${s.prefix_blocks} (${mib(s.prefix_bytes)})`);
      console.log(`  answers: ${s.answers} (${mib(s.answer_bytes)})`);
      console.log(`  models: ${s.models}, chat sessions: ${s.chat_sessions}`);
      console.log(`  runtime images: ${s.images} (${mib(s.image_bytes)})`);
      console.log(`  journal: ${Object.entries(s.journal).map(([k, n]) => `${k} ${n}`).join(', ') || 'empty'}`);
    }
    return 0;
  });
  sub('verify', 'check the file and every prompt-prefix block; damaged blocks are dropped (exit 1 when any was)', (db, flags) => {
    const r = verifyCacheFile(db)!;
    if (flags.json) print(r);
    else console.log(`integrity: ${r.integrity}; ${r.blocks_checked} blocks checked, ${r.blocks_dropped} damaged and dropped`);
    return r.integrity === 'ok' && r.blocks_dropped === 0 ? 0 : 1;
  });
  sub('clear', 'delete every cached prefix, answer and finished journal entry', (db, flags) => {
    if (!clearCacheFile(db)) throw new Error(`cannot clear ${db.file}: ${db.reason}`);
    if (flags.json) print({ cleared: true });
    else console.log(`cleared ${db.file}`);
    return 0;
  });
  sub('vacuum', 'give the space of deleted entries back to the disk', (db, flags) => {
    const r = vacuumCacheFile(db);
    if (!r) throw new Error(`cannot vacuum ${db.file}: ${db.reason}`);
    if (flags.json) print(r);
    else console.log(`${db.file}: ${r.before} -> ${r.after} bytes`);
    return 0;
  });
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
