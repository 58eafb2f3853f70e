// Perplexity over a text, with the protocol of the project's golden data: split the text on a
// separator, strip leading/trailing newlines, skip empty pieces, encode each piece with BOS,
// score every piece as a fresh sequence, PPL = exp(sum NLL / tokens scored).
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
  const mean = count ? sum / count : NaN;
  return { tokens_scored: count, mean_nll: mean, ppl: Math.exp(mean), pieces: pieces.length, truncated };
}
