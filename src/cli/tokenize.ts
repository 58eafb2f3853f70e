// `bonsai tokenize`: the token ids of a text (only the vocabulary is read, not the weights).
import type { Command } from 'commander';
import { BUNDLED_MODEL } from '../bundled.js';
import { readGguf } from '../gguf/reader.js';
import { createTokenizer } from '../engine/tokenizer/index.js';

export function register(program: Command): void {
  program
    .command('tokenize')
    .description("print the token ids of a text under a model's tokenizer")
    .option('-m, --model <file>', 'GGUF model (or vocab-only) file (default: the bundled model)', BUNDLED_MODEL)
    .argument('<text>', 'text to tokenize')
    .option('--no-bos', 'do not add the BOS token even if the model asks for it')
    .option('--parse-special', 'match control tokens such as <|im_start|> in the text')
    .option('--json', 'print {"ids": [...], "pieces": [...]}')
    .action((text: string, opts: { model: string; bos: boolean; parseSpecial?: boolean; json?: boolean }) => {
      const tokenizer = createTokenizer(readGguf(opts.model).metadata);
      const ids = tokenizer.encode(text, { addSpecial: opts.bos, parseSpecial: opts.parseSpecial ?? false });
      const pieces = ids.map((id) => tokenizer.tokenText(id));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ids, pieces })}\n`);
        return;
      }
      for (let i = 0; i < ids.length; i++) process.stdout.write(`${String(ids[i]).padStart(7)} -> ${JSON.stringify(pieces[i])}\n`);
    });
}
