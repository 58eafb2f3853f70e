// Perplexity over a text, with the protocol of the project's golden data: split the text on a
// separator, strip leading/trailing newlines, skip empty pieces, encode each piece with BOS,
// score every piece as a fresh sequence, PPL = exp(sum NLL / tokens scored).
import { EngineError } from '../errors.js';
import type { Model } from './engine.js';

export interface PerplexityResult {
  tokens_scored: number;
  mean_nll: number;
  ppl: number;
  pieces: number;
  /** Pieces cut to fit the context. */
  truncated: number;
}

export function splitPieces(text: string, separator: string): string[] {
  // An empty separator would split the text into single characters: never what is meant.
  if (separator === '') throw new EngineError('bad_request', 'the separator is empty: give the string pieces are separated by (default: a blank line)');
  return text
    .split(separator)
    .map((p) => p.replace(/^\n+|\n+$/g, ''))
    .filter((p) => p.length > 0);
}

export async function perplexity(
  model: Model,
  text: string,
  separator: string,
  onPiece?: (done: number, total: number) => void,
): Promise<PerplexityResult> {
  const pieces = splitPieces(text, separator);
  let sum = 0;
  let count = 0;
  let truncated = 0;
  for (const [i, piece] of pieces.entries()) {
    let ids = model.tokenizer.encode(piece, { addSpecial: true });
    if (ids.length > model.contextSize) {
      ids = ids.slice(0, model.contextSize);
      truncated++;
    }
    for (const nll of await model.nll(ids)) {
      sum += nll;
      count++;
    }
    onPiece?.(i + 1, pieces.length);
  }
  if (count === 0) {
    throw new EngineError('bad_request', pieces.length ? 'every piece is a single token: nothing to score' : 'the text is empty: nothing to score');
  }
  const mean = sum / count;
  return { tokens_scored: count, mean_nll: mean, ppl: Math.exp(mean), pieces: pieces.length, truncated };
}
