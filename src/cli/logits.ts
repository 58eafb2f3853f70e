// `bonsai logits`: teacher-forced logits for every position, as raw little-endian f32
// [positions][vocab] — the tool for comparisons against golden outputs.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { addModelOptions, idsOption, loadModel, type ModelCliOptions } from './options.js';

export function register(program: Command): void {
  addModelOptions(program.command('logits').description('write teacher-forced logits for every position of a token sequence'))
    .requiredOption('--ids <ids>', 'comma-separated token ids, e.g. 1,403,407', idsOption)
    .requiredOption('-o, --output <file>', 'output file ([positions][vocab] little-endian f32)')
    .action(async (opts: ModelCliOptions & { ids: number[]; output: string }) => {
      const model = await loadModel(opts);
      try {
        const logits = await model.logits(opts.ids);
        writeFileSync(opts.output, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
        process.stderr.write(`wrote ${opts.ids.length} x ${model.hparams.nVocab} logits to ${opts.output}\n`);
      } finally {
        model.close();
      }
    });
}
