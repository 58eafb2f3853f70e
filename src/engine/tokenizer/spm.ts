// SentencePiece (BPE-style, scores as merge priorities) as llama.cpp's llm_tokenizer_spm: start from
// single characters, repeatedly merge the adjacent pair whose concatenation is the highest-scoring
// vocab piece (leftmost on ties), then emit leftover unknown characters as <0xNN> byte tokens.
import { Heap } from './heap.js';
import type { Vocab } from './vocab.js';

interface Bigram {
  left: number;
  right: number;
  score: number;
  size: number;
}

const byScoreThenLeft = (a: Bigram, b: Bigram) => a.score > b.score || (a.score === b.score && a.left < b.left);
const encoder = new TextEncoder();

export class SpmModel {
  private readonly byteIds: (number | undefined)[];

  constructor(private readonly vocab: Vocab) {
    this.byteIds = Array.from({ length: 256 }, (_, b) => this.byteToken(b));
  }

  /** Appends the ids of `text`, which already has spaces escaped as U+2581. */
  encode(text: string, out: number[]): void {
    const { starts, lens, next } = this.merge(text);
    for (let i = 0; i !== -1 && lens.length > 0; i = next[i]!) {
      const piece = text.substr(starts[i]!, lens[i]!);
      const id = this.vocab.textToId.get(piece);
      // Merged symbols are vocab pieces by construction, so only single characters can miss.
      if (id !== undefined) out.push(id);
      else for (const b of encoder.encode(piece)) this.pushByte(b, out);
    }
  }

  private merge(text: string) {
    const starts: number[] = [];
    const lens: number[] = [];
    for (let i = 0; i < text.length; ) {
      const len = text.codePointAt(i)! > 0xffff ? 2 : 1;
      starts.push(i);
      lens.push(len);
      i += len;
    }
    const n = starts.length;
    const next = starts.map((_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = starts.map((_, i) => i - 1);
    const queue = new Heap<Bigram>(byScoreThenLeft);
    const tryAdd = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const size = lens[left]! + lens[right]!;
      const id = this.vocab.textToId.get(text.substr(starts[left]!, size));
      if (id !== undefined) queue.push({ left, right, score: this.vocab.scores[id]!, size });
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);
    for (let b = queue.pop(); b !== undefined; b = queue.pop()) {
      // Skip pairs whose sides have merged with something else since they were queued.
      if (lens[b.left] === 0 || lens[b.right] === 0 || lens[b.left]! + lens[b.right]! !== b.size) continue;
      lens[b.left] = b.size;
      lens[b.right] = 0;
      next[b.left] = next[b.right]!;
      if (next[b.right]! >= 0) prev[next[b.right]!] = b.left;
      tryAdd(prev[b.left]!, b.left);
      tryAdd(b.left, next[b.left]!);
    }
    return { starts, lens, next };
  }

  private pushByte(b: number, out: number[]): void {
    const id = this.byteIds[b] ?? this.vocab.unk;
    if (id !== undefined) out.push(id);
  }

  /** llama.cpp's byte_to_token: the <0xNN> piece, else the byte as a one-character piece. */
  private byteToken(b: number): number | undefined {
    const hex = b.toString(16).toUpperCase().padStart(2, '0');
    return this.vocab.textToId.get(`<0x${hex}>`) ?? (b < 0x80 ? this.vocab.textToId.get(String.fromCharCode(b)) : undefined);
  }
}
