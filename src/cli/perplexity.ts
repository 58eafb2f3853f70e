// `bonsai perplexity`: perplexity of a model over a text file.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { perplexity } from '../engine/perplexity.js';
import { addModelOptions, loadModel, type ModelCliOptions } from './options.js';

export function register(program: Command): void {
  addModelOptions(program.command('perplexity').description('perplexity over a text file, one fresh sequence per piece'))
    .requiredOption('-f, --file <text>', 'UTF-8 text file')
    .option('--separator <sep>', 'piece separator (escapes \\n and \\t are understood)', '\\n\\n')
    .option('--json', 'print {"tokens_scored", "mean_nll", "ppl"}')
    .action(async (opts: ModelCliOptions & { file: string; separator: string; json?: boolean }) => {
      const text = readFileSync(opts.file, 'utf8');
      const separator = opts.separator.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
      const model = await loadModel(opts);
      try {
        const r = await perplexity(model, text, separator);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        process.stdout.write(
          `pieces: ${r.pieces}${r.truncated ? ` (${r.truncated} cut to the context)` : ''}\ntokens scored: ${r.tokens_scored}\nmean NLL: ${r.mean_nll.toFixed(10)}\nperplexity: ${r.ppl.toFixed(6)}\n`,
        );
      } finally {
        model.close();
      }
    });
}
