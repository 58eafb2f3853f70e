// `bonsai pack` and `bonsai unpack`: a GGUF to a .bnz pack and back, byte for byte, and
// `bonsai pack --verify` to check a pack's every chunk.
import { statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { DEFAULT_LEVEL, MAX_LEVEL, defaultPackName, packModel, unpackModel, verifyPack, type PackJobOptions } from '../pack/pack.js';
import { intOption } from './options.js';

interface PackCliOptions {
  output?: string;
  level: number;
  verify?: boolean;
  threads?: number;
  json?: boolean;
}

const MB = 1e6;

/** A progress bar on a terminal's stderr (MB done, MB/s, ETA) for a job; stop() ends it. */
function progressBar(what: string): { onProgress: NonNullable<PackJobOptions['onProgress']>; stop: () => void } {
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      format: `${what} |{bar}| {percentage}% | {value}/{total} MB | {speed} MB/s | ETA {eta_formatted}`,
      noTTYOutput: false,
      stream: process.stderr,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let shown = false;
  return {
    onProgress: (done, total) => {
      const speed = ((done / MB) / Math.max(1e-3, (Date.now() - started) / 1000)).toFixed(0);
      if (!shown) {
        bar.start(Math.round(total / MB), 0, { speed });
        shown = true;
      }
      bar.update(Math.round(done / MB), { speed });
    },
    stop: () => {
      if (shown) bar.stop();
    },
  };
}

async function withProgress<T>(what: string, job: (o: PackJobOptions) => Promise<T>, threads?: number): Promise<T> {
  const bar = progressBar(what);
  try {
    return await job({ onProgress: bar.onProgress, ...(threads ? { threads } : {}) });
  } finally {
    bar.stop();
  }
}

export function register(program: Command): void {
  program
    .command('pack')
    .description('entropy-code a GGUF model into a .bnz pack (bonsai run/serve load it directly), or --verify a pack')
    .argument('<file>', 'GGUF file to pack (with --verify: the pack to check)')
    .option('-o, --output <file>', 'the pack to write (default: FILE with .bnz for .gguf)')
    .option('--level <n>', `0 stores, 1 codes each stream, ${MAX_LEVEL - 1}+ also tries neighbourhood models`, intOption('--level', 0, MAX_LEVEL), DEFAULT_LEVEL)
    .option('--verify', "check every chunk of the pack FILE (coded and decoded CRC-32); names the first damaged one")
    .option('-t, --threads <n>', 'threads (default: the CPUs, at most 8)', intOption('--threads', 1, 256))
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: PackCliOptions) => {
      const started = Date.now();
      if (opts.verify) {
        await withProgress('verify', (o) => verifyPack(file, o), opts.threads);
        const result = { file, ok: true, seconds: (Date.now() - started) / 1000 };
        process.stdout.write(opts.json ? `${JSON.stringify(result)}\n` : `${file}: every chunk is intact\n`);
        return;
      }
      const out = opts.output ?? defaultPackName(file);
      const r = await withProgress('pack', (o) => packModel(file, out, opts.level, o), opts.threads);
      const before = statSync(file).size, after = statSync(out).size, seconds = (Date.now() - started) / 1000;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ file, out, level: opts.level, bytes: before, packedBytes: after, seconds, ...r })}\n`);
        return;
      }
      const lines = [`${out}: ${after.toLocaleString('en-US')} bytes from ${before.toLocaleString('en-US')} (${((100 * after) / before).toFixed(1)}%) in ${seconds.toFixed(1)} s`];
      for (const kind of Object.keys(r.decoded) as (keyof typeof r.decoded)[]) {
        if (r.decoded[kind] || r.coded[kind]) {
          lines.push(`  ${kind.padEnd(8)} ${r.decoded[kind].toLocaleString('en-US').padStart(14)} -> ${r.coded[kind].toLocaleString('en-US').padStart(14)} bytes`);
        }
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  program
    .command('unpack')
    .description('restore the GGUF inside a .bnz pack, byte for byte')
    .argument('<pack>', '.bnz pack')
    .requiredOption('-o, --output <file>', 'the GGUF to write')
    .option('-t, --threads <n>', 'threads (default: the CPUs, at most 8)', intOption('--threads', 1, 256))
    .action(async (pack: string, opts: { output: string; threads?: number }) => {
      await withProgress('unpack', (o) => unpackModel(pack, opts.output, o), opts.threads);
      process.stdout.write(`${opts.output}: ${statSync(opts.output).size.toLocaleString('en-US')} bytes\n`);
    });
}
