// Token ids back to text, following llama.cpp's token_to_piece / detokenize: pieces are bytes
// (byte-fallback tokens and GPT-2 byte characters can split a UTF-8 sequence across tokens).
import { CHAR_TO_BYTE } from './bpe.js';
import { TokenType, type Vocab } from './vocab.js';

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const SPACE = 0x20;

export interface PieceOptions {
  /** Render CONTROL/UNKNOWN tokens as their text (llama.cpp's `special`); otherwise they are empty. */
  special: boolean;
}

export class Pieces {
  private readonly cache: (Uint8Array | undefined)[];

  constructor(
    private readonly vocab: Vocab,
    private readonly isSpm: boolean,
  ) {
    this.cache = new Array(vocab.size);
  }

  bytes(id: number, { special }: PieceOptions): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab.size) throw new Error(`token id ${id} is out of range`);
    const type = this.vocab.types[id];
    if (!special && (type === TokenType.Control || type === TokenType.Unknown)) return EMPTY;
    return (this.cache[id] ??= this.render(id, type!));
  }

  private render(id: number, type: number): Uint8Array {
    const text = this.vocab.tokens[id]!;
    switch (type) {
      case TokenType.Control:
      case TokenType.Unknown:
      case TokenType.UserDefined:
        return encoder.encode(text);
      case TokenType.Normal:
        return this.isSpm ? encoder.encode(text.replaceAll('\u2581', ' ')) : byteLevelDecode(text);
      case TokenType.Byte:
        return this.isSpm ? Uint8Array.of(parseInt(text.slice(3, 5), 16)) : EMPTY;
      default:
        // UNUSED and UNDEFINED tokens print nothing in llama.cpp.
        return EMPTY;
    }
  }
}

/** Reverses GPT-2's byte mapping; characters outside it are shown as llama.cpp does. */
function byteLevelDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) {
      out.push(b);
      continue;
    }
    const utf8 = encoder.encode(ch);
    const hex = Array.from(utf8, (x) => x.toString(16).padStart(2, '0')).join('');
    out.push(...encoder.encode(`[UNK_BYTE_0x${hex}${text}]`));
  }
  return Uint8Array.from(out);
}

/** Drops one leading space of the first piece (the SentencePiece space prefix). */
export function lstrip(piece: Uint8Array): Uint8Array {
  return piece.length > 0 && piece[0] === SPACE ? piece.subarray(1) : piece;
}

/** llama.cpp's clean_up_tokenization_spaces passes: " ?" " !" " ." " ,", " ' ", " 's" " 'm" " 're" " 've". */
export function cleanSpaces(text: string): string {
  return text
    .replace(/ (?=[?!.,])/g, '')
    .replace(/ ' /g, "'")
    .replace(/ '(?=[sm]|re|ve)/g, "'");
}

export interface StreamDecoder {
  /** Text completed by this token; bytes of an unfinished UTF-8 sequence are held back. */
  push(id: number): string;
  /** Whatever is held back, with U+FFFD for an incomplete sequence; the decoder is then reset. */
  flush(): string;
}

export function streamDecoder(pieces: Pieces, special: boolean, stripFirst: boolean): StreamDecoder {
  const utf8 = new TextDecoder('utf-8');
  let first = stripFirst;
  return {
    push(id) {
      let piece = pieces.bytes(id, { special });
      if (first) piece = lstrip(piece);
      first = false;
      return utf8.decode(piece, { stream: true });
    },
    flush() {
      first = stripFirst;
      return utf8.decode();
    },
  };
}
