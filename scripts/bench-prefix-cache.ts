// Time to first token with a long system prompt, cold and with its prefix cached: the case of a
// Home Assistant-like client that sends the same ~1,000-token system prompt with every question.
//
//   npx vite-node scripts/bench-prefix-cache.ts [-- --model FILE] [--threads 2] [--system-tokens 1000] [--reps 3]
//
// Without --model it writes a synthetic model of Bonsai-1.7B's exact shape (random 1-bit weights,
// the real Qwen3 vocabulary from the fixtures) to $BONSAI_BENCH_DIR (default /tmp). As in the
// daemon, one model stays loaded, and another prompt runs between two questions, so the context
// never holds the system prompt when a question arrives. Three cases:
//   cold      no cache: the whole prompt is evaluated;
//   memory    the prefix's blocks from the in-memory tier (filled by a first question);
//   restart   a new process, the first questions after its start: the blocks come from the SQLite
//             file; and again after the read-ahead a daemon does once online (PrefixCache.warm).
// Each case asks questions that differ, with the same system prompt. Prints one JSON object.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Caches } from '../src/cache/caches.js';
import { CACHE_DEFAULTS } from '../src/cache/defaults.js';
import { Model } from '../src/engine/engine.js';
import { synthesize } from '../src/gguf/synth.js';

const here = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(here), '..');
const fixtures = process.env.BONSAI_FIXTURES ?? path.resolve(repoRoot, '../shared/fixtures');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'system-tokens': { type: 'string', default: '1000' },
    reps: { type: 'string', default: '3' },
    cache: { type: 'string' },
    'restart-child': { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
const reps = Number(args.reps);

const QUESTIONS = ['Is the kitchen light on?', 'Turn off the heating in the bedroom.', 'What is the temperature outside?', 'Lock the front door.', 'Is the garage open?'];

/** A system prompt like a smart home's: entities and their states, about `tokens` tokens long. */
function systemPrompt(model: Model, tokens: number): string {
  const rooms = ['kitchen', 'living room', 'bedroom', 'bathroom', 'garage', 'hall', 'office', 'garden'];
  const lines = ['You are a voice assistant for a smart home. Answer briefly. These are the devices:'];
  for (let i = 0; model.tokenizer.encode(lines.join('\n'), { addSpecial: true }).length < tokens; i++) {
    const room = rooms[i % rooms.length]!;
    lines.push(`- light.${room.replace(' ', '_')}_${i}: ${room} light ${i}, state ${i % 3 ? 'off' : 'on'}, brightness ${(i * 37) % 100}%`);
  }
  return lines.join('\n');
}

/**
 * ms to the first generated token of each question, on one model with the prefix cache `caches`
 * (or none); an unrelated prompt runs before each question, as other requests would.
 */
async function ttft(file: string, caches: Caches | undefined, system: string, questions: string[]): Promise<{ ms: number[]; cachedTokens: number[]; promptTokens: number }> {
  const model = await Model.load(file, { threads, contextSize: 2048 });
  await caches?.attach(model);
  const ms: number[] = [];
  const cachedTokens: number[] = [];
  let promptTokens = 0;
  for (const question of questions) {
    await model.generate({ prompt: `Something else entirely: ${question}`, maxTokens: 1, sampling: { temperature: 0 } });
    const started = performance.now();
    const r = await model.generate({ messages: [{ role: 'system', content: system }, { role: 'user', content: question }], maxTokens: 1, sampling: { temperature: 0 } });
    ms.push(performance.now() - started);
    cachedTokens.push(r.timings.cachedTokens);
    promptTokens = r.promptIds.length;
  }
  model.close();
  return { ms, cachedTokens, promptTokens };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const file = args.model ?? path.join(process.env.BONSAI_BENCH_DIR ?? tmpdir(), 'bonsai-1.7b-synth.gguf');
  if (!args.model && !existsSync(file)) {
    await synthesize(file, { shape: '1.7b', seed: 1, vocabFrom: path.join(fixtures, 'qwen3-vocab/ggml-vocab-qwen3.gguf') });
  }
  const probe = await Model.load(file, { threads: 1, contextSize: 2048 });
  const system = systemPrompt(probe, Number(args['system-tokens']));
  probe.close();

  if (args['restart-child']) {
    // The restarted process: a new Caches over the file the parent filled; first the questions as
    // they come right after the start, then after the read-ahead a daemon does once online.
    const caches = new Caches({ ...CACHE_DEFAULTS, path: args.cache! });
    const first = await ttft(file, caches, system, QUESTIONS.slice(2, 2 + reps));
    const fresh = new Caches({ ...CACHE_DEFAULTS, path: args.cache! });
    await fresh.prefix.warm();
    const warmed = await ttft(file, fresh, system, QUESTIONS.slice(2, 2 + reps));
    caches.close();
    fresh.close();
    process.stdout.write(JSON.stringify({ first, warmed }));
    return;
  }

  const dir = mkdtempSync(path.join(tmpdir(), 'bonsai-prefix-bench-'));
  const cacheFile = path.join(dir, 'cache.db');
  try {
    const cold = await ttft(file, undefined, system, QUESTIONS.slice(0, reps));
    const caches = new Caches({ ...CACHE_DEFAULTS, path: cacheFile });
    // The first question fills the cache; the others find its prefix in memory.
    await ttft(file, caches, system, QUESTIONS.slice(0, 1));
    const memory = await ttft(file, caches, system, QUESTIONS.slice(1, 1 + reps));
    caches.close();
    // The same script again under the same runner (vite-node: argv[1]), as a new process.
    const runner = process.argv[1]!;
    const child = spawnSync(process.execPath, [runner, here, '--', '--restart-child', '--cache', cacheFile, ...process.argv.slice(2)], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (child.status !== 0) throw new Error(`restart process failed: ${child.stderr}`);
    const restart = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { first: typeof cold; warmed: typeof cold };
    const row = (r: typeof cold) => ({
      ttft_ms: Math.round(median(r.ms)),
      first_ms: Math.round(r.ms[0]!),
      all_ms: r.ms.map(Math.round),
      cached_tokens: median(r.cachedTokens),
      speedup: Math.round((median(cold.ms) / median(r.ms)) * 10) / 10,
      first_speedup: Math.round((median(cold.ms) / r.ms[0]!) * 10) / 10,
    });
    process.stdout.write(
      `${JSON.stringify({
        model: file,
        threads,
        prompt_tokens: cold.promptTokens,
        cold: row(cold),
        memory: row(memory),
        restart: row(restart.first),
        restart_after_read_ahead: row(restart.warmed),
      })}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
