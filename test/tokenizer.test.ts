// Tokenizers against llama.cpp's own outputs: its tokenizer test vectors (.inp/.out), Qwen3 ids with
// and without special-token parsing, and run.c's ids for stories260K (which llama.cpp reproduces).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readGguf } from '../src/gguf/reader.js';
import { createTokenizer, type Tokenizer } from '../src/engine/tokenizer/index.js';
import { cleanSpaces } from '../src/engine/tokenizer/decoder.js';
import { FIXTURES, HAVE_FIXTURES } from './helpers/fixtures.js';

const haveFixtures = HAVE_FIXTURES;
const fixture = (...p: string[]) => path.join(FIXTURES, ...p);
const load = (file: string): Tokenizer => createTokenizer(readGguf(file).metadata);

/** tests/test-tokenizer-0's framing: inputs separated by a marker line, one line of ids per input. */
function vocabVectors(gguf: string): [text: string, ids: number[]][] {
  const inputs = readFileSync(`${gguf}.inp`, 'utf8').split('\n__ggml_vocab_test__\n');
  const outputs = readFileSync(`${gguf}.out`, 'utf8').split('\n');
  if (inputs.at(-1) === '') inputs.pop();
  if (outputs.at(-1) === '') outputs.pop();
  expect(inputs.length).toBe(outputs.length);
  return inputs.map((text, i) => [text, outputs[i]!.split(' ').filter(Boolean).map(Number)]);
}

/** Read at collection time, so empty when the fixtures are absent (the suites are skipped then). */
function jsonl<T>(file: string): T[] {
  if (!haveFixtures) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}

function streamAll(tok: Tokenizer, ids: number[], startOfText: boolean): { text: string; chunks: string[] } {
  const sd = tok.createStreamDecoder({ startOfText });
  const chunks = ids.map((id) => sd.push(id));
  chunks.push(sd.flush());
  return { text: chunks.join(''), chunks };
}

// Vocabs whose llama.cpp detokenizer applies clean_up_tokenization_spaces.
const CLEANS_SPACES = new Set(['gpt-2', 'falcon', 'mpt', 'refact', 'starcoder']);
const VOCABS: [name: string, file: string][] = [
  ...['llama-spm', 'phi-3', 'gpt-2', 'deepseek-llm', 'deepseek-coder', 'falcon', 'mpt', 'refact', 'starcoder'].map(
    (v): [string, string] => [v, fixture('tokenizer-vectors', `ggml-vocab-${v}.gguf`)],
  ),
  ['qwen3', fixture('qwen3-vocab', 'ggml-vocab-qwen3.gguf')],
];

describe.skipIf(!haveFixtures)('llama.cpp tokenizer vectors', () => {
  describe.each(VOCABS)('%s', (name, file) => {
    let tok: Tokenizer;
    let vectors: [string, number[]][];
    beforeAll(() => {
      tok = load(file);
      vectors = vocabVectors(file);
    });

    it('encodes all 46 strings to llama.cpp ids (add_special=false, parse_special=false)', () => {
      const failures = vectors.filter(([text, ids]) => JSON.stringify(tok.encode(text, { addSpecial: false })) !== JSON.stringify(ids));
      expect(failures.map(([text]) => text)).toEqual([]);
    });

    it('decodes them back as llama.cpp detokenize does', () => {
      for (const [text, ids] of vectors) {
        expect(tok.decode(ids)).toBe(CLEANS_SPACES.has(name) ? cleanSpaces(text) : text);
      }
    });

    it('stream-decodes token by token to the raw text, only ever emitting whole characters', () => {
      for (const [text, ids] of vectors) {
        const { text: streamed, chunks } = streamAll(tok, ids, true);
        expect(streamed).toBe(text);
        if (!text.includes('\uFFFD')) expect(chunks.filter((c) => c.includes('\uFFFD'))).toEqual([]);
      }
    });
  });
});

describe.skipIf(!haveFixtures)('Qwen3 tokenizer (Bonsai)', () => {
  let tok: Tokenizer;
  beforeAll(() => {
    tok = load(fixture('qwen3-vocab', 'ggml-vocab-qwen3.gguf'));
  });
  type Case = { text: string; add_special: boolean; parse_special: boolean; ids: number[] };
  const cases = jsonl<Case>(fixture('qwen3-vocab', 'encode_llamacpp.jsonl'));

  it.each(cases.map((c) => [c.parse_special, c.text.slice(0, 40), c] as const))(
    'parse_special=%s: %j',
    (_p, _t, c) => {
      expect(tok.encode(c.text, { addSpecial: c.add_special, parseSpecial: c.parse_special })).toEqual(c.ids);
    },
  );

  it('reads the special ids and end-of-generation set', () => {
    expect([tok.model, tok.vocabSize, tok.bos, tok.eos, tok.eot, tok.addBos]).toEqual(['gpt2', 151936, 151643, 151645, 151645, false]);
    expect(tok.isEog(151645)).toBe(true); // <|im_end|>
    expect(tok.isEog(151643)).toBe(true); // <|endoftext|>
    expect(tok.isEog(151644)).toBe(false); // <|im_start|>
    expect(tok.isEog(151667)).toBe(false); // <think>
    expect(tok.tokenText(151667)).toBe('<think>');
  });

  it('prints control tokens unless skipSpecial, and user-defined ones always', () => {
    const ids = tok.encode('<|im_start|>assistant\n<think>\n\n</think>\n\nHi<|im_end|>', { parseSpecial: true });
    expect(tok.decode(ids)).toBe('<|im_start|>assistant\n<think>\n\n</think>\n\nHi<|im_end|>');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('assistant\n<think>\n\n</think>\n\nHi');
  });

  it('holds partial UTF-8 across byte-level tokens (emoji, CJK)', () => {
    const text = '🦙🚀 你好世界 😶‍🌫️';
    const ids = tok.encode(text);
    const { text: streamed, chunks } = streamAll(tok, ids, false);
    expect(streamed).toBe(text);
    expect(chunks.some((c) => c === '')).toBe(true); // some tokens end mid-character
    expect(chunks.join('')).not.toContain('\uFFFD');
    const sd = tok.createStreamDecoder();
    const partial = ids.slice(0, 1).map((id) => sd.push(id)).join('');
    expect(partial + sd.flush()).toBe(tok.decode(ids.slice(0, 1)));
  });
});

describe.skipIf(!haveFixtures)('stories260K SentencePiece vocab', () => {
  let tok: Tokenizer;
  beforeAll(() => {
    tok = load(fixture('stories260K', 'stories260K.gguf'));
  });
  const cases = jsonl<{ text: string; ids: number[] }>(fixture('stories260K', 'golden', 'tok512_encode_runc.jsonl'));

  it.each(cases.map((c) => [c.text, c.ids] as const))('encodes %j with BOS like run.c and llama.cpp', (text, ids) => {
    expect(tok.encode(text)).toEqual(ids);
  });

  it('decodes as llama.cpp: the space prefix goes, byte-fallback tokens reassemble UTF-8', () => {
    for (const { text, ids } of cases) {
      expect(tok.decode(ids.slice(1))).toBe(text);
      expect(streamAll(tok, ids.slice(1), true).text).toBe(text);
    }
    // With BOS: control text is printed by default; skipSpecial drops it and (as llama.cpp) keeps the space.
    expect(tok.decode([1, 403, 407, 261, 378])).toBe('<s> Once upon a time');
    expect(tok.decode([1, 403, 407, 261, 378], { skipSpecial: true })).toBe(' Once upon a time');
    expect([tok.model, tok.bos, tok.eos, tok.eot, tok.addBos, tok.isEog(2)]).toEqual(['llama', 1, 2, undefined, true, true]);
  });

  it('matches control tokens in text only with parseSpecial', () => {
    expect(tok.encode('</s>', { addSpecial: false, parseSpecial: true })).toEqual([2]);
    expect(tok.encode('</s>', { addSpecial: false })).not.toContain(2);
  });
});

describe('createTokenizer errors', () => {
  it('rejects unsupported tokenizer models and pre-tokenizers with a clear message', () => {
    expect(() => createTokenizer({ 'tokenizer.ggml.model': 'bert', 'tokenizer.ggml.tokens': ['a'] })).toThrow(/unsupported tokenizer model 'bert'/);
    expect(() =>
      createTokenizer({ 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'nope', 'tokenizer.ggml.tokens': ['a'], 'tokenizer.ggml.merges': [] }),
    ).toThrow(/unsupported BPE pre-tokenizer 'nope'/);
    expect(() => createTokenizer({ 'tokenizer.ggml.model': 'llama' })).toThrow(/tokenizer.ggml.tokens/);
  });
});
