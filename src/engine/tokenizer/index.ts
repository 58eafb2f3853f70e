// Tokenizers for GGUF vocabularies, matching llama.cpp: SentencePiece ("llama") and byte-level BPE
// ("gpt2"). Special tokens are split out of the text first, then each text fragment is tokenized.
import { BpeModel } from './bpe.js';
import { cleanSpaces, lstrip, Pieces, streamDecoder, type StreamDecoder } from './decoder.js';
import { preTokenizer } from './pretokenize.js';
import { SpmModel } from './spm.js';
import { boolKey, TokenType, Vocab, type Metadata, type SpecialToken } from './vocab.js';

export type { StreamDecoder } from './decoder.js';

const utf8 = new TextDecoder('utf-8');

export interface EncodeOptions {
  /** Add BOS (and EOS) as the vocab asks (tokenizer.ggml.add_bos_token / add_eos_token). Default true. */
  addSpecial?: boolean;
  /** Match CONTROL tokens such as <|im_start|> in the text. Default false; USER_DEFINED ones always match. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /**
   * Default false: CONTROL tokens print as their text (llama.cpp's unparse_special). True: they print
   * nothing, and a leading BOS / trailing EOS the vocab adds itself is dropped (remove_special).
   */
  skipSpecial?: boolean;
}

export interface StreamDecoderOptions {
  skipSpecial?: boolean;
  /**
   * The first pushed token begins the text, as in decode(): a SentencePiece vocab's space prefix is
   * removed. Default false, for streaming a continuation (generated tokens after a prompt).
   */
  startOfText?: boolean;
}

export interface Tokenizer {
  readonly model: 'llama' | 'gpt2';
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly eot: number | undefined;
  readonly addBos: boolean;
  encode(text: string, options?: EncodeOptions): number[];
  /** The raw vocab piece (U+2581 / GPT-2 byte characters included). */
  tokenText(id: number): string;
  decode(ids: number[], options?: DecodeOptions): string;
  /** Incremental decode that only ever emits complete UTF-8 characters. */
  createStreamDecoder(options?: StreamDecoderOptions): StreamDecoder;
  /** eos, eot and the other end-of-generation tokens llama.cpp recognises. */
  isEog(id: number): boolean;
}

type Fragment = string | number;

interface Model {
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  /** Whether BOS is added when the metadata has no tokenizer.ggml.add_bos_token. */
  readonly addBosDefault: boolean;
  /** Appends the ids of one text fragment; `afterSpecial` is true at the start and after a special token. */
  encodeText(text: string, afterSpecial: boolean, out: number[]): void;
}

export function createTokenizer(metadata: Metadata): Tokenizer {
  const model = metadata['tokenizer.ggml.model'];
  if (model !== 'llama' && model !== 'gpt2') {
    throw new Error(`unsupported tokenizer model '${String(model)}' (tokenizer.ggml.model; expected llama or gpt2)`);
  }
  const isSpm = model === 'llama';
  const vocab = new Vocab(metadata, isSpm);
  const impl = isSpm ? spmModel(vocab, metadata) : bpeModel(vocab, metadata);
  const addBos = boolKey(metadata, 'add_bos_token', impl.addBosDefault);
  const addEos = boolKey(metadata, 'add_eos_token', false);
  const pieces = new Pieces(vocab, isSpm);

  const decodeBytes = (ids: number[], special: boolean, stripFirst: boolean): string => {
    const parts = ids.map((id) => pieces.bytes(id, { special }));
    if (stripFirst && parts.length > 0) parts[0] = lstrip(parts[0]!);
    const text = utf8.decode(Buffer.concat(parts));
    return impl.cleanSpaces ? cleanSpaces(text) : text;
  };

  return {
    model,
    vocabSize: vocab.size,
    bos: vocab.bos,
    eos: vocab.eos,
    eot: vocab.eot,
    addBos,
    encode(text, { addSpecial = true, parseSpecial = false } = {}) {
      const out: number[] = [];
      if (addSpecial && addBos && vocab.bos !== undefined) out.push(vocab.bos);
      let afterSpecial = true;
      for (const f of splitSpecials(text, vocab.specials, parseSpecial, vocab)) {
        if (typeof f === 'number') out.push(f);
        else impl.encodeText(f, afterSpecial, out);
        afterSpecial = typeof f === 'number';
      }
      if (addSpecial && addEos && vocab.eos !== undefined) out.push(vocab.eos);
      return out;
    },
    tokenText(id) {
      const t = vocab.tokens[id];
      if (t === undefined) throw new Error(`token id ${id} is out of range`);
      return t;
    },
    decode(ids, { skipSpecial = false } = {}) {
      let body = ids;
      let strip = impl.addSpacePrefix;
      // As llama.cpp's detokenize: removing the BOS also keeps the space after it.
      if (skipSpecial && addBos && body.length > 0 && body[0] === vocab.bos) {
        body = body.slice(1);
        strip = false;
      }
      if (skipSpecial && addEos && body.length > 0 && body[body.length - 1] === vocab.eos) body = body.slice(0, -1);
      return decodeBytes(body, !skipSpecial, strip);
    },
    createStreamDecoder({ skipSpecial = false, startOfText = false } = {}) {
      return streamDecoder(pieces, !skipSpecial, startOfText && impl.addSpacePrefix);
    },
    isEog: (id) => vocab.eog.has(id),
  };
}

function spmModel(vocab: Vocab, metadata: Metadata): Model {
  const spm = new SpmModel(vocab);
  const addSpacePrefix = boolKey(metadata, 'add_space_prefix', true);
  return {
    addSpacePrefix,
    cleanSpaces: false,
    addBosDefault: true,
    encodeText(text, afterSpecial, out) {
      // The space prefix goes before the text and after every special token, as in llama.cpp.
      const prefixed = addSpacePrefix && afterSpecial ? ` ${text}` : text;
      spm.encode(prefixed.replaceAll(' ', '\u2581'), out);
    },
  };
}

function bpeModel(vocab: Vocab, metadata: Metadata): Model {
  const pre = metadata['tokenizer.ggml.pre'];
  const pt = preTokenizer(typeof pre === 'string' && pre !== '' ? pre : undefined);
  const merges = metadata['tokenizer.ggml.merges'];
  if (!Array.isArray(merges) || (merges.length > 0 && typeof merges[0] !== 'string')) {
    throw new Error('GGUF metadata has no tokenizer.ggml.merges string array (needed by gpt2 tokenizers)');
  }
  const bpe = new BpeModel(vocab, merges as string[], pt.ignoreMerges);
  return {
    addSpacePrefix: boolKey(metadata, 'add_space_prefix', false),
    cleanSpaces: pt.cleanSpaces,
    // Only llama3-style pre-tokenizers default to adding BOS in llama.cpp.
    addBosDefault: pt.addBos,
    encodeText(text, _afterSpecial, out) {
      for (const word of pt.split(text)) bpe.encodeWord(word, out);
    },
  };
}

/**
 * llama.cpp's tokenizer_st_partition: for each special token, longest first, split every remaining
 * text fragment at its occurrences. CONTROL and UNKNOWN tokens take part only with parseSpecial.
 */
function splitSpecials(text: string, specials: SpecialToken[], parseSpecial: boolean, vocab: Vocab): Fragment[] {
  let fragments: Fragment[] = text === '' ? [] : [text];
  for (const special of specials) {
    if (!parseSpecial && !vocab.isType(special.id, TokenType.UserDefined)) continue;
    if (!fragments.some((f) => typeof f === 'string' && f.includes(special.text))) continue;
    fragments = fragments.flatMap((f) => (typeof f === 'string' ? splitAt(f, special) : [f]));
  }
  return fragments;
}

function splitAt(text: string, special: SpecialToken): Fragment[] {
  const out: Fragment[] = [];
  let rest = text;
  for (let at = rest.indexOf(special.text); at >= 0; at = rest.indexOf(special.text)) {
    if (at > 0) out.push(rest.slice(0, at));
    out.push(special.id);
    rest = rest.slice(at + special.text.length);
    if (special.rstrip) rest = rest.replace(/^[ \t\n\v\f\r]+/, '');
  }
  if (rest !== '') out.push(rest);
  return out;
}
