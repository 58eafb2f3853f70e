// The vocabulary as llama.cpp's llama_vocab sees it: token texts, scores, attributes, special ids,
// end-of-generation set and the list of tokens matched verbatim in text before tokenization.
import type { GgufValue } from '../../native.js';

export type Metadata = Record<string, GgufValue>;

/** GGUF tokenizer.ggml.token_type values. */
export enum TokenType {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** Texts llama.cpp treats as end-of-generation whatever the metadata says. */
const EOG_TEXTS = [
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>',
];
/** Candidates for the EOT token when tokenizer.ggml.eot_token_id is absent (llama.cpp's list). */
const EOT_TEXTS = [
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<EOT>', '<｜end▁of▁sentence｜>',
];
/** Fill-in-the-middle pad / repo / file-separator tokens: llama.cpp stops generation on them too. */
const FIM_EOG_TEXTS = [
  ['<|fim_pad|>', '<fim-pad>', '<PAD>'],
  ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>'],
  ['<|file_sep|>'],
];

export interface SpecialToken {
  id: number;
  text: string;
  /** Whitespace right of a match is dropped (llama.cpp sets this for Phi-3's specials only). */
  rstrip: boolean;
}

export class Vocab {
  readonly tokens: string[];
  readonly scores: Float32Array;
  readonly types: Int32Array;
  readonly textToId = new Map<string, number>();
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly eot: number | undefined;
  readonly unk: number | undefined;
  readonly eog = new Set<number>();
  /** CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first (llama.cpp's cache_special_tokens). */
  readonly specials: SpecialToken[];

  constructor(meta: Metadata, isSpm: boolean) {
    const tokens = meta['tokenizer.ggml.tokens'];
    if (!Array.isArray(tokens) || tokens.length === 0 || typeof tokens[0] !== 'string') {
      throw new Error('GGUF metadata has no tokenizer.ggml.tokens string array');
    }
    const n = tokens.length;
    // llama.cpp renames empty pieces so every token has a distinct, non-empty text.
    this.tokens = (tokens as string[]).map((t, i) => (t === '' ? `[EMPTY_${i}]` : t));
    this.tokens.forEach((t, i) => this.textToId.set(t, i));
    this.scores = numberArray(meta['tokenizer.ggml.scores'], n, Float32Array);
    this.types = numberArray(meta['tokenizer.ggml.token_type'], n, Int32Array, TokenType.Normal);

    // Defaults are llama.cpp's per tokenizer family; ids outside the vocab are ignored as there.
    this.bos = idKey(meta, 'bos_token_id', n, isSpm ? 1 : 11);
    this.eos = idKey(meta, 'eos_token_id', n, isSpm ? 2 : 11);
    this.unk = idKey(meta, 'unknown_token_id', n, isSpm ? 0 : undefined);
    this.eot = this.idOrText(meta, 'eot_token_id', EOT_TEXTS);
    const eom = this.idOrText(meta, 'eom_token_id', ['<|eom_id|>']);
    this.collectEog([this.eos, this.eot, eom]);
    this.specials = this.collectSpecials(String(meta['general.name'] ?? '').toLowerCase());
  }

  get size(): number {
    return this.tokens.length;
  }

  isType(id: number, type: TokenType): boolean {
    return this.types[id] === type;
  }

  private findText(texts: string[]): number | undefined {
    for (const t of texts) {
      const id = this.textToId.get(t);
      if (id !== undefined) return id;
    }
    return undefined;
  }

  /** A special id from metadata, else found by its text; llama.cpp forces the latter to CONTROL. */
  private idOrText(meta: Metadata, key: string, texts: string[]): number | undefined {
    const fromMeta = idKey(meta, key, this.size, undefined);
    if (fromMeta !== undefined) return fromMeta;
    const id = this.findText(texts);
    if (id !== undefined) this.types[id] = TokenType.Control;
    return id;
  }

  /** End-of-generation ids; llama.cpp also forces the text-matched ones to CONTROL so they never print. */
  private collectEog(ids: (number | undefined)[]): void {
    const byText = [...FIM_EOG_TEXTS.map((texts) => this.findText(texts)), ...EOG_TEXTS.map((t) => this.textToId.get(t))];
    for (const id of byText) {
      if (id === undefined) continue;
      this.eog.add(id);
      this.types[id] = TokenType.Control;
    }
    for (const id of ids) if (id !== undefined) this.eog.add(id);
  }

  private collectSpecials(modelName: string): SpecialToken[] {
    // Phi-3's tokenizer strips the whitespace after its specials except <unk>, <s>, <|endoftext|>.
    const phi3 = modelName.includes('phi-3') || modelName.includes('phi3');
    const noRstrip = new Set(['<unk>', '<s>', '<|endoftext|>']);
    const specials: SpecialToken[] = [];
    this.types.forEach((type, id) => {
      if (type !== TokenType.Control && type !== TokenType.UserDefined && type !== TokenType.Unknown) return;
      const text = this.tokens[id]!;
      specials.push({ id, text, rstrip: phi3 && !noRstrip.has(text) });
    });
    // llama.cpp orders by length in UTF-8 bytes; that decides which of two overlapping specials wins.
    const bytes = new Map(specials.map((s) => [s.id, Buffer.byteLength(s.text)]));
    return specials.sort((a, b) => bytes.get(b.id)! - bytes.get(a.id)! || a.id - b.id);
  }
}

type NumArrayCtor<T> = { new (n: number): T; new (a: ArrayLike<number>): T; from(a: ArrayLike<number>): T };

function numberArray<T extends Float32Array | Int32Array>(
  value: GgufValue | undefined,
  n: number,
  ctor: NumArrayCtor<T>,
  fill = 0,
): T {
  if (value === undefined) {
    const filled = new ctor(n);
    filled.fill(fill);
    return filled;
  }
  if (typeof value !== 'object' || !('length' in value) || value.length !== n) {
    throw new Error(`GGUF tokenizer array has the wrong length (expected ${n})`);
  }
  // Already the wanted kind (the usual case): a copy, which the vocabulary may then amend.
  if (value instanceof ctor) return new ctor(value);
  return ctor.from(Array.from(value as ArrayLike<number | bigint | boolean>, Number));
}

function idKey(meta: Metadata, key: string, n: number, dflt: number | undefined): number | undefined {
  const v = meta[`tokenizer.ggml.${key}`];
  if (typeof v !== 'number' && typeof v !== 'bigint') return dflt;
  const id = Number(v);
  return id >= 0 && id < n ? id : dflt;
}

export function boolKey(meta: Metadata, key: string, dflt: boolean): boolean {
  const v = meta[`tokenizer.ggml.${key}`];
  return typeof v === 'boolean' ? v : dflt;
}
