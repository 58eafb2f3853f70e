// Training text as token ids: pieces (paragraphs, or samples from the teacher) each starting
// with BOS, concatenated into one stream, and windows of seqLen + 1 ids drawn from it starting at
// a piece's BOS, as the perplexity protocol starts every piece. Batch k depends only on the seed
// and k, so a resumed run sees the batches an uninterrupted one would.

export interface Corpus {
  /** Every piece's ids, back to back. */
  stream: Int32Array;
  /** Where each piece starts in the stream. */
  starts: Int32Array;
}

export function corpusOf(pieces: ArrayLike<number>[]): Corpus {
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const stream = new Int32Array(total);
  const starts = new Int32Array(pieces.length);
  let at = 0;
  pieces.forEach((p, i) => {
    starts[i] = at;
    stream.set(p, at);
    at += p.length;
  });
  return { stream, starts };
}

/** Joins corpora (text and teacher samples) into one. */
export function joinCorpora(parts: Corpus[]): Corpus {
  const pieces: Int32Array[] = [];
  for (const c of parts) {
    for (let i = 0; i < c.starts.length; i++) pieces.push(c.stream.subarray(c.starts[i]!, i + 1 < c.starts.length ? c.starts[i + 1]! : c.stream.length));
  }
  return corpusOf(pieces);
}

/** Batch `index` of `batch` windows of seqLen + 1 ids (row-major), the same for the same seed. */
export function batchAt(corpus: Corpus, seqLen: number, batch: number, seed: number, index: number): Int32Array {
  const width = seqLen + 1;
  if (corpus.stream.length < width) throw new Error(`the training text has ${corpus.stream.length} tokens: at least ${width} are needed`);
  // a window starts at a piece whose start leaves room for a whole window
  let usable = corpus.starts.length;
  while (usable > 0 && corpus.starts[usable - 1]! + width > corpus.stream.length) usable--;
  const out = new Int32Array(batch * width);
  const next = mulberry32(mix(seed, index));
  for (let b = 0; b < batch; b++) {
    const start = usable > 0 ? corpus.starts[Math.floor(next() * usable)]! : corpus.stream.length - width;
    out.set(corpus.stream.subarray(start, start + width), b * width);
  }
  return out;
}

function mix(seed: number, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (index >>> 0), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ Math.floor(index / 2 ** 32) ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
