// Throughput beyond one stream, measured in one run on this machine (print the CPU beside it):
//
//   npx vite-node scripts/bench-throughput.ts [-- --threads 2] [--tokens 64] [--reps 3]
//
// 1. Generations decoded together (`queue.parallel`): `bonsai bench --parallel 1,2,4` on a
//    synthetic model of Bonsai-1.7B's exact shape (written to $BONSAI_BENCH_DIR, default /tmp):
//    each stream's tokens/s and all streams' together.
// 2. What a batch costs: milliseconds to evaluate n tokens at once on that shape. Both gains rest
//    on it: n streams, or n - 1 draft tokens, cost batch(n) instead of n times batch(1).
// 3. Speculative decoding (draft 8 against 0) on models whose text is real, greedy: by prompt
//    lookup on the stories260K fixture and the bundled model, and with the bundled model drafting
//    for stories260K (its teacher); free generation (a story from its first words) and a
//    repetition-heavy task (a story, then its opening again: continuing it repeats the prompt).
//    Outputs must be identical; tokens/s and drafts accepted are reported.
// Prints Markdown.
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { runBench as RunBench } from '../src/bench/bench.js';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { Model, type GenerateRequest } from '../src/engine/engine.js';
import { synthesize } from '../src/gguf/synth.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the built benchmark: it forks its worker from dist/ (npm run build first)
const built = pathToFileURL(path.join(repoRoot, 'dist/bench/bench.js')).href;
const { runBench } = (await import(built)) as { runBench: typeof RunBench };
const fixtures = process.env.BONSAI_FIXTURES ?? path.resolve(repoRoot, '../shared/fixtures');
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '64' },
    reps: { type: 'string', default: '3' },
  },
});
const threads = Number(args.threads);
const tokens = Number(args.tokens);
const reps = Number(args.reps);

const shape = path.join(process.env.BONSAI_BENCH_DIR ?? '/tmp', 'bonsai-1.7b-synth.gguf');
if (!existsSync(shape)) await synthesize(shape, { shape: '1.7b', seed: 1, vocabFrom: path.join(fixtures, 'qwen3-vocab/ggml-vocab-qwen3.gguf') });

console.log(`# Throughput on ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads\n`);

const report = await runBench({ model: shape, prompt: 0, gen: tokens, threads: [threads], parallel: [1, 2, 4], reps, kvType: 'f32', vsPeer: false, onProgress: (m) => process.stderr.write(`${m}\n`) });
const alone = report.rows.find((r) => r.parallel === 1)!;
console.log(`## Generations decoded together (Bonsai-1.7B shape, tg${tokens})\n`);
console.log('| streams | all streams tok/s | x one stream | each stream tok/s | time per token x alone |');
console.log('|---|---|---|---|---|');
for (const r of report.rows) {
  console.log(`| ${r.parallel} | ${r.aggregateTokensPerS!.toFixed(1)} | ${(r.aggregateTokensPerS! / alone.tokensPerS).toFixed(2)}x | ${r.tokensPerS.toFixed(1)} | ${(alone.tokensPerS / r.tokensPerS).toFixed(2)}x |`);
}
console.log(`\nroofline: ${((report.bandwidthGbps * 1e9) / report.bytesPerToken).toFixed(1)} tokens/s for one stream (${report.bandwidthGbps.toFixed(1)} GB/s)\n`);

console.log('## What a batch of n tokens costs (Bonsai-1.7B shape)\n');
const model = await Model.load(shape, { threads, contextSize: 512 });
await timeBatch(model, 9); // the weights paged in before anything is timed
const sizes = [1, 2, 3, 5, 9];
const costs = new Map<number, number>();
for (const n of sizes) costs.set(n, await timeBatch(model, n));
model.close();
const once = costs.get(1)!;
console.log('| tokens | ms | x one token | ceiling (n tokens for the price of n single ones) |\n|---|---|---|---|');
for (const [n, ms] of costs) console.log(`| ${n} | ${ms.toFixed(1)} | ${(ms / once).toFixed(2)} | ${((n * once) / ms).toFixed(2)}x |`);

console.log('\n## Speculative decoding (greedy, draft 8 vs 0)\n');
console.log('| model, drafts from | task | plain tok/s | draft tok/s | x plain | drafts accepted | same output |');
console.log('|---|---|---|---|---|---|---|');
const stories = readFileSync(path.join(fixtures, 'tinystories/tinystories_val_head.txt'), 'utf8')
  .split('\n')
  .filter((p) => p.trim().length > 200)
  .slice(0, 12);
const tasks: [string, (story: string) => GenerateRequest][] = [
  ['free generation', (story) => ({ prompt: story.slice(0, 40), maxTokens: 200, ignoreEog: true })],
  ['repeat from the prompt', (story) => ({ prompt: `${story}\n${story.slice(0, 60)}`, maxTokens: 120 })],
];
const stories260K = path.join(fixtures, 'stories260K/stories260K.gguf');
for (const [name, file, contextSize, draftModel] of [
  ['stories260K, prompt lookup', stories260K, 512, undefined],
  ['bundled, prompt lookup', BUNDLED_MODEL, 256, undefined],
  ['stories260K, the bundled model', stories260K, 256, BUNDLED_MODEL],
] as const) {
  const m = await Model.load(file, { threads, contextSize, ...(draftModel ? { draftModel } : {}) });
  for (const [task, request] of tasks) {
    const total = { plainMs: 0, plainTokens: 0, draftMs: 0, draftTokens: 0, drafted: 0, accepted: 0, same: 0 };
    for (let rep = 0; rep < reps; rep++) {
      for (const story of stories) {
        const req = { ...request(story), sampling: { temperature: 0 } };
        const plain = await m.generate({ ...req, draft: 0 });
        const drafted = await m.generate({ ...req, draft: 8 });
        total.plainMs += plain.timings.genMs;
        total.plainTokens += plain.ids.length;
        total.draftMs += drafted.timings.genMs;
        total.draftTokens += drafted.ids.length;
        total.drafted += drafted.timings.draftedTokens;
        total.accepted += drafted.timings.acceptedTokens;
        total.same += plain.ids.join() === drafted.ids.join() ? 1 : 0;
      }
    }
    const plainRate = (total.plainTokens * 1000) / total.plainMs;
    const draftRate = (total.draftTokens * 1000) / total.draftMs;
    console.log(`| ${name} | ${task} | ${plainRate.toFixed(0)} | ${draftRate.toFixed(0)} | ${(draftRate / plainRate).toFixed(2)}x | ${total.accepted} of ${total.drafted} | ${total.same} of ${stories.length * reps} |`);
  }
  m.close();
}

/** Median milliseconds of evaluating n fresh tokens at once (all their logits, as a draft check). */
async function timeBatch(m: Model, n: number): Promise<number> {
  const times: number[] = [];
  for (let rep = 0; rep <= reps; rep++) {
    const ids = Array.from({ length: n }, (_, i) => 1000 + 37 * i + rep);
    const t0 = performance.now();
    await m.logits(ids);
    if (rep > 0) times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}
