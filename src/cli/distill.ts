// `bonsai distill`: trains a 1-bit student from a float teacher (quantization-aware distillation)
// and writes it as a GGUF; Ctrl-C saves a checkpoint that --resume continues from.
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { defaultThreads } from '../engine/engine.js';
import { distill, type DistillOptions } from '../train/distill.js';
import { STUDENT_SHAPES, TRAINING_DEFAULTS, parseStudentShape } from '../train/student.js';
import { floatOption, intOption } from './options.js';

interface DistillCliOptions {
  teacher: string;
  output: string;
  shape: string;
  data: string[];
  separator: string;
  skipPieces: number;
  valPieces: number;
  generate: number;
  steps: number;
  batch: number;
  seqLen: number;
  threads: number;
  seed: number;
  lr: number;
  lrMin: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  kl: number;
  ce: number;
  float?: boolean;
  type: 'q1_0' | 'f32';
  checkpoint?: string;
  resume?: boolean;
  initFrom?: string;
  saveEvery: number;
  evalEvery: number;
  json?: boolean;
}

export function register(program: Command): void {
  const d = TRAINING_DEFAULTS;
  program
    .command('distill')
    .description('train a 1-bit student from a float teacher (quantization-aware distillation) and write it as GGUF')
    .requiredOption('--teacher <file>', 'float llama GGUF teacher (its tokenizer is the student\'s)')
    .requiredOption('-o, --output <file>', 'student GGUF to write')
    .option('--shape <shape>', `student shape: ${Object.keys(STUDENT_SHAPES).join(', ')} or dim=,hidden=,layers=,heads=,kv=,head=`, 'xs')
    .option('--data <file>', 'training text (repeatable), split into pieces on --separator', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--separator <sep>', 'piece separator (escapes \\n and \\t are understood)', '\\n\\n')
    .option('--skip-pieces <n>', 'pieces at the start of each --data file never trained on (a test set)', intOption('--skip-pieces', 0), 0)
    .option('--val-pieces <n>', 'pieces after those held out and scored during training', intOption('--val-pieces', 0), 100)
    .option('--generate <n>', 'also train on n sequences sampled from the teacher (cached in OUTPUT.samples.bin)', intOption('--generate', 0), 0)
    .option('--steps <n>', 'optimizer steps', intOption('--steps', 1), 2000)
    .option('--batch <n>', 'sequences per step', intOption('--batch', 1, 4096), 16)
    .option('--seq-len <n>', 'positions per sequence (the student\'s context)', intOption('--seq-len', 2, 8192), d.seqLen)
    .option('-t, --threads <n>', 'threads', intOption('--threads', 1, 256), defaultThreads())
    .option('--seed <n>', 'seed of the initial weights and the batches', intOption('--seed', 0, 2 ** 31), 1)
    .option('--lr <x>', 'peak learning rate', floatOption('--lr', 1e-7, 1), d.lr)
    .option('--lr-min <x>', 'final learning rate of the cosine decay', floatOption('--lr-min', 0, 1), d.lrMin)
    .option('--warmup <n>', 'warm-up steps', intOption('--warmup', 0), d.warmupSteps)
    .option('--weight-decay <x>', 'AdamW weight decay of the matrices', floatOption('--weight-decay', 0, 1), d.weightDecay)
    .option('--clip <x>', 'clip the gradient norm to this (0: no clipping)', floatOption('--clip', 0, 1e6), d.clip)
    .option('--kl <x>', 'weight of KL(teacher || student)', floatOption('--kl', 0, 100), d.klWeight)
    .option('--ce <x>', 'weight of the cross-entropy on the data', floatOption('--ce', 0, 100), d.ceWeight)
    .option('--float', 'train in float (no 1-bit forward): the post-training-quantization baseline')
    .addOption(new Option('--type <type>', 'weights of the written file: q1_0 (matrices 1-bit, norms F32) or f32').choices(['q1_0', 'f32']).default('q1_0'))
    .option('--checkpoint <file>', 'checkpoint file (default OUTPUT.ckpt)')
    .option('--resume', 'continue from the checkpoint if there is one')
    .option('--init-from <checkpoint>', "start from another run's weights (same shape), e.g. a --float run's, with a fresh optimizer")
    .option('--save-every <n>', 'steps between checkpoints', intOption('--save-every', 1), 200)
    .option('--eval-every <n>', 'steps between validation scores', intOption('--eval-every', 1), 250)
    .option('--json', 'print the result as JSON')
    .action(async (opts: DistillCliOptions) => {
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const bar = new cliProgress.SingleBar(
        {
          format: 'step {value}/{total} |{bar}| loss {loss} kl {kl} nll {nll} | {tps} tok/s | ETA {remaining}',
          noTTYOutput: true,
          notTTYSchedule: 30_000,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      const options: DistillOptions = {
        teacher: opts.teacher,
        out: opts.output,
        dims: parseStudentShape(opts.shape),
        settings: {
          ...TRAINING_DEFAULTS,
          seqLen: opts.seqLen,
          quantize: !opts.float,
          lr: opts.lr,
          lrMin: opts.lrMin,
          warmupSteps: opts.warmup,
          weightDecay: opts.weightDecay,
          clip: opts.clip,
          klWeight: opts.kl,
          ceWeight: opts.ce,
        },
        data: opts.data,
        separator: opts.separator.replace(/\\n/g, '\n').replace(/\\t/g, '\t'),
        skipPieces: opts.skipPieces,
        valPieces: opts.valPieces,
        generate: opts.generate,
        steps: opts.steps,
        batch: opts.batch,
        threads: opts.threads,
        seed: opts.seed,
        checkpoint: opts.checkpoint ?? `${opts.output}.ckpt`,
        resume: Boolean(opts.resume),
        ...(opts.initFrom ? { initFrom: opts.initFrom } : {}),
        saveEvery: opts.saveEvery,
        evalEvery: opts.evalEvery,
        type: opts.type,
        signal: abort.signal,
        onLog: (line) => {
          if (bar.isActive) bar.stop();
          process.stderr.write(`${line}\n`);
        },
        onStep: (m, run) => {
          const values = { loss: m.loss.toFixed(4), kl: m.kl.toFixed(4), nll: m.nll.toFixed(4), tps: Math.round(run.tokensPerS), remaining: duration(run.etaMs) };
          const last = run.steps === run.totalSteps;
          if (!bar.isActive && !last) bar.start(run.totalSteps, run.steps, values);
          if (!bar.isActive) return;
          bar.update(run.steps, values);
          if (last) bar.stop();
        },
      };
      try {
        const r = await distill(options);
        if (bar.isActive) bar.stop();
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ...r, history: undefined })}\n`);
        } else if (r.finished) {
          const val = r.valNll !== undefined ? `, validation PPL ${Math.exp(r.valNll).toFixed(3)}` : '';
          const teacher = r.teacherValNll !== undefined ? ` (teacher ${Math.exp(r.teacherValNll).toFixed(3)})` : '';
          process.stdout.write(`wrote ${r.file}: ${r.bytes} bytes, ${r.steps} steps, ${r.tokensSeen} tokens in ${(r.elapsedMs / 60000).toFixed(1)} min${val}${teacher}\n`);
          if (opts.float && opts.type === 'q1_0') {
            process.stdout.write('the validation figures are of the float weights; the file holds them sign-rounded to Q1_0 (measure it with bonsai perplexity)\n');
          }
        }
        if (!r.finished) process.exitCode = 130;
      } finally {
        if (bar.isActive) bar.stop();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

/** 1h02m, 12m30s, 45s. */
function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
