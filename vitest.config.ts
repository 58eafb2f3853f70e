import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start brokers and child processes on free ports; files run in parallel workers.
    pool: 'forks',
    // The commands' cache file (prompt prefixes, answers): one for this run, never the user's.
    // Generations running at once each hold a libuv thread (as under `bonsai`, src/cli/main.ts).
    env: { BONSAI_CACHE_PATH: path.join(mkdtempSync(path.join(tmpdir(), 'bonsai-vitest-')), 'cache.db'), UV_THREADPOOL_SIZE: '20' },
    reporters: ['default'],
  },
});
