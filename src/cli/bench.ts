// `bonsai bench`: llama-bench-style speed figures, against the bandwidth roofline and the peer.
import { InvalidArgumentError, type Command } from 'commander';
import { benchJson, formatBench, runBench } from '../bench/bench.js';
import { defaultThreads } from '../engine/engine.js';
import { addRuntimeOptions, intOption } from './options.js';
import { registerKernels } from './bench-kernels.js';

interface BenchCliOptions {
  model?: string;
  nPrompt: number;
  nGen: number;
  threads: number[];
  parallel: number[];
  depth: number[];
  repetitions: number;
  ctxSize?: number;
  kvType: 'f32' | 'f16';
  kernels?: string;
  json?: boolean;
  vsPeer?: boolean;
}

export function register(program: Command): void {
  const bench = addRuntimeOptions(
    program.command('bench'),
    'room for -p and -n, rounded up to 256 as llama-bench does',
  )
    .description(
      'measure prompt (pp) and generation (tg) tokens/s, load time and peak RSS, as fractions of the memory bandwidth roofline measured in the same run',
    )
    // checked in the action, not by commander, which would demand it of `bench kernels` too
    .option('-m, --model <file>', 'GGUF model file (required)')
    .option('-p, --n-prompt <n>', 'prompt tokens for the pp test (0 = skip)', intOption('n-prompt', 0, 1 << 16), 512)
    .option('-n, --n-gen <n>', 'generated tokens for the tg test (0 = skip)', intOption('n-gen', 0, 1 << 16), 128)
    .option('-t, --threads <list>', 'comma-separated thread counts, e.g. 1,2', countsOption('threads', 256), [defaultThreads()])
    .option('--parallel <list>', 'tg with this many generations decoded together, e.g. 1,2,4: aggregate and per-stream tokens/s', countsOption('parallel', 16), [1])
    .option('-d, --depth <list>', "tg after a context already holding this many tokens, e.g. 0,512,1024 (llama-bench's -d)", countsOption('depth', 1 << 16, 0), [0])
    .option('-r, --repetitions <n>', 'timed repetitions per test (after one warm-up)', intOption('repetitions', 1, 1000), 3)
    .option('--vs-peer', 'also run node-llama-cpp (llama.cpp) on the same file, threads and context, and show the ratio')
    .option('--json', 'print one JSON object instead of the table')
    .action(async (opts: BenchCliOptions) => {
      if (opts.model === undefined) throw new Error("required option '-m, --model <file>' not specified");
      if (opts.nPrompt === 0 && opts.nGen === 0) throw new Error('nothing to measure: -p and -n are both 0');
      const report = await runBench({
        model: opts.model,
        prompt: opts.nPrompt,
        gen: opts.nGen,
        threads: opts.threads,
        parallel: opts.parallel,
        depth: opts.depth,
        reps: opts.repetitions,
        kvType: opts.kvType,
        ...(opts.ctxSize !== undefined ? { contextSize: opts.ctxSize } : {}),
        ...(opts.kernels !== undefined ? { kernels: opts.kernels } : {}),
        vsPeer: opts.vsPeer ?? false,
        onProgress: (m) => process.stderr.write(`bonsai bench: ${m}\n`),
      });
      process.stdout.write(opts.json ? `${JSON.stringify(benchJson(report))}\n` : formatBench(report));
    });
  registerKernels(bench);
}

/** A comma-separated list of counts from min (default 1) to max, e.g. 1,2. */
function countsOption(name: string, max: number, min = 1): (value: string) => number[] {
  return (value) => {
    const parts = value.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < min || Number(p) > max)) {
      throw new InvalidArgumentError(`${name} must be comma-separated integers from ${min} to ${max}, e.g. ${min},2`);
    }
    return parts.map(Number);
  };
}
