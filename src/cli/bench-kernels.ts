// `bonsai bench kernels`: a subcommand of `bench`. The parent's --json and -t/--threads apply
// (commander hands options the parent knows to the parent, wherever they appear).
import type { Command } from 'commander';
import { formatKernelBench, kernelBenchJson, parseShapes, runKernelBench } from '../bench/kernels.js';
import { intOption } from './options.js';

interface KernelsCliOptions {
  paths?: string;
  shapes?: string;
  batch: number;
  minMs: number;
  threads: number[];
  json?: boolean;
}

export function registerKernels(bench: Command): void {
  bench
    .command('kernels')
    .description(
      "time the q1_0 matrix kernels on Bonsai's shapes (decode GEMV and prefill GEMM) per path and thread count (default 1,2), against the memory bandwidth measured in the same run",
    )
    .option('--paths <list>', 'comma-separated kernel paths (default: every path this CPU supports)')
    .option('--shapes <list>', 'comma-separated <rows>x<cols> (default: 2048x2048,2048x6144,6144x2048,151936x2048)')
    .option('--batch <n>', 'tokens per GEMM (64 for the vocabulary shape, 8 on scalar; 0 = GEMV only)', intOption('batch', 0, 4096), 512)
    .option('--min-ms <n>', 'measured time per row', intOption('min-ms', 1, 600000), 300)
    .action((_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<KernelsCliOptions>();
      const threadsGiven = cmd.parent?.getOptionValueSource('threads') === 'cli';
      const report = runKernelBench({
        paths: opts.paths?.split(',').map((s) => s.trim()),
        threads: threadsGiven ? opts.threads : [1, 2],
        shapes: opts.shapes === undefined ? undefined : parseShapes(opts.shapes),
        gemmBatch: opts.batch,
        minMs: opts.minMs,
        onProgress: (m) => process.stderr.write(`bonsai bench kernels: ${m}\n`),
      });
      process.stdout.write(opts.json ? `${JSON.stringify(kernelBenchJson(report))}\n` : formatKernelBench(report));
    });
}
