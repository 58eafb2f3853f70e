// Byte-level BPE as llama.cpp's llm_tokenizer_bpe: each pre-token's UTF-8 bytes are mapped to GPT-2's
// printable byte characters, then adjacent symbols are merged lowest merge rank first (leftmost on ties).
import { Heap } from './heap.js';
import type { Vocab } from './vocab.js';

/** GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 upwards. */
function byteChars(): string[] {
  const chars = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}

export const BYTE_TO_CHAR = byteChars();
export const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

interface Bigram {
  left: number;
  rank: number;
  text: string;
}

const byRankThenLeft = (a: Bigram, b: Bigram) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left);
const encoder = new TextEncoder();
const CACHE_LIMIT = 16384;

export class BpeModel {
  /** Merge rank keyed by the merge line "left right". */
  private readonly ranks = new Map<string, number>();
  /** Recently tokenized pre-tokens; prompts repeat words a lot (bounded, least recently used out). */
  private readonly cache = new Map<string, number[]>();

  constructor(
    private readonly vocab: Vocab,
    merges: string[],
    private readonly ignoreMerges: boolean,
  ) {
    // Backwards, so that of duplicate lines the first (lowest) rank is the one left standing.
    for (let rank = merges.length - 1; rank >= 0; rank--) this.ranks.set(merges[rank]!, rank);
  }

  /** Appends the ids of one pre-token (raw text, not yet byte-mapped). */
  encodeWord(word: string, out: number[]): void {
    let ids = this.cache.get(word);
    if (ids) {
      this.cache.delete(word);
    } else {
      ids = this.tokenize(byteLevel(word));
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(word, ids);
    for (const id of ids) out.push(id);
  }

  private tokenize(word: string): number[] {
    const whole = this.vocab.textToId.get(word);
    if (this.ignoreMerges && whole !== undefined) return [whole];
    return this.merge(word).flatMap((sym) => this.symbolIds(sym));
  }

  /** The merged symbols of a byte-level word. */
  private merge(word: string): string[] {
    const syms = Array.from(word);
    const next = syms.map((_, i) => (i + 1 < syms.length ? i + 1 : -1));
    const prev = syms.map((_, i) => i - 1);
    const queue = new Heap<Bigram>(byRankThenLeft);
    const addBigram = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const rank = this.ranks.get(`${syms[left]} ${syms[right]}`);
      if (rank !== undefined) queue.push({ left, rank, text: syms[left]! + syms[right]! });
    };
    for (let i = 1; i < syms.length; i++) addBigram(i - 1, i);
    for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
      const right = next[b.left]!;
      // Entries go stale when either side has merged since; their text no longer matches.
      if (syms[b.left] === '' || right < 0 || syms[b.left]! + syms[right]! !== b.text) continue;
      syms[b.left] = b.text;
      syms[right] = '';
      next[b.left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = b.left;
      addBigram(prev[b.left]!, b.left);
      addBigram(b.left, next[b.left]!);
    }
    return syms.filter((s) => s !== '');
  }

  /** A symbol's id; if it is not in the vocab, llama.cpp falls back to its single-byte pieces. */
  private symbolIds(sym: string): number[] {
    const id = this.vocab.textToId.get(sym);
    if (id !== undefined) return [id];
    const ids: number[] = [];
    for (const b of encoder.encode(sym)) {
      const byteId = b < 0x80 ? this.vocab.textToId.get(String.fromCharCode(b)) : undefined;
      if (byteId !== undefined) ids.push(byteId);
    }
    return ids;
  }
}

function byteLevel(text: string): string {
  let out = '';
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}
