// `bonsai synth`: write a synthetic model with one of Bonsai's exact shapes (random 1-bit weights),
// to test and benchmark the engine at real sizes without the real files.
import { InvalidArgumentError, type Command } from 'commander';
import { SHAPES, synthesize, type ShapeName } from '../gguf/synth.js';
import { intOption } from './options.js';

interface SynthCliOptions {
  shape: ShapeName;
  layers?: number;
  vocabFrom?: string;
  seed: number;
  output: string;
}

export function register(program: Command): void {
  const names = Object.keys(SHAPES).join('|');
  program
    .command('synth')
    .description('write a qwen3 GGUF with one of Bonsai\'s shapes: random Q1_0 matrices (seeded), F32 norms, untied output')
    .requiredOption('--shape <name>', `model shape: ${names}`, shapeOption)
    .option('--layers <n>', "number of layers (default: the shape's)", intOption('layers', 1, 1024))
    .option('--vocab-from <file>', 'copy the tokenizer (vocabulary, merges, chat template) from this GGUF (default: a byte-level stand-in)')
    .option('--seed <s>', 'random seed', intOption('seed', 0, 2 ** 53 - 1), 0)
    .requiredOption('-o, --output <file>', 'GGUF file to write')
    .action(async (opts: SynthCliOptions) => {
      const started = performance.now();
      const result = await synthesize(opts.output, {
        shape: opts.shape,
        seed: opts.seed,
        ...(opts.layers !== undefined ? { layers: opts.layers } : {}),
        ...(opts.vocabFrom !== undefined ? { vocabFrom: opts.vocabFrom } : {}),
      });
      const secs = ((performance.now() - started) / 1000).toFixed(2);
      const mib = (result.bytes / 2 ** 20).toFixed(1);
      process.stdout.write(`${opts.output}: ${result.tensors} tensors, ${mib} MiB, written in ${secs} s\n`);
    });
}

function shapeOption(value: string): ShapeName {
  const name = value.toLowerCase();
  if (!(name in SHAPES)) throw new InvalidArgumentError(`shape must be one of ${Object.keys(SHAPES).join(', ')}`);
  return name as ShapeName;
}
