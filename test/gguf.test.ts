// The GGUF reader as JavaScript sees it: real files read correctly, and damaged files — through
// the native parser and the N-API glue — throw one clean error naming the file, never crash.
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GgufError, readGguf, summarize } from '../src/gguf/reader.js';
import { writeGguf } from '../src/gguf/writer.js';
import { HAVE_FIXTURES, fixture } from './helpers/fixtures.js';
import { seeded } from './helpers/random.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-gguf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('readGguf string arrays', () => {
  // Arrays are decoded in one piece when no string holds a NUL, string by string otherwise.
  const cases: [string, string[]][] = [
    ['empty', []],
    ['one empty string', ['']],
    ['empty strings around text', ['', 'a', '', '', 'Ġthe', '']],
    ['non-ASCII and a trailing space', ['ü', '日本', '😀', 'x ', '<|im_end|>']],
    ['a NUL inside a string', ['a', 'b\0c', '\0', '']],
  ];
  it.each(cases)('reads back %s exactly', async (_name, strings) => {
    const file = path.join(tmp, 'strings.gguf');
    await writeGguf(file, [{ key: 'test.strings', type: 'array<string>', value: strings }], []);
    expect(readGguf(file).metadata['test.strings']).toEqual(strings);
  });
});

describe.skipIf(!HAVE_FIXTURES)('readGguf', () => {
  it('reads the qwen3 vocabulary with typed arrays and the chat template', () => {
    const info = readGguf(fixture('qwen3-vocab/ggml-vocab-qwen3.gguf'));
    const tokens = info.metadata['tokenizer.ggml.tokens'] as string[];
    expect(tokens).toHaveLength(151936);
    expect(tokens[151645]).toBe('<|im_end|>');
    expect(info.metadata['tokenizer.ggml.merges']).toHaveLength(151387);
    expect(info.metadata['tokenizer.ggml.token_type']).toBeInstanceOf(Int32Array);
    expect(info.metadataTypes['tokenizer.ggml.token_type']).toBe('array<i32>');
    expect(info.metadata['tokenizer.ggml.add_bos_token']).toBe(false);
    expect(info.metadata['tokenizer.ggml.eos_token_id']).toBe(151645);
    expect(info.metadata['tokenizer.chat_template']).toMatch(/im_start/);
    expect(info.tensors).toHaveLength(0);
  });

  it('summarises the Q1_0 tiny qwen3 at 1.125 bits per quantized weight', () => {
    const info = readGguf(fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf'));
    const s = summarize(info);
    expect(s.architecture).toBe('qwen3');
    expect(s.tensorTypes).toEqual({ q1_0: 16, f32: 9 });
    const q = info.tensors.filter((t) => t.typeName === 'q1_0');
    const weights = q.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    const bytes = q.reduce((n, t) => n + t.bytes, 0);
    expect((bytes * 8) / weights).toBe(1.125);
  });

  it('turns 600 mutated and truncated files into clean errors or consistent results', () => {
    const original = readFileSync(fixture('stories260K/stories260K.gguf'));
    const random = seeded(20261129);
    const file = path.join(tmp, 'mutant.gguf');
    let refused = 0;
    for (let i = 0; i < 600; i++) {
      // The header and tables are the first 14,176 bytes; damage lands there most of the time.
      const bytes = Buffer.from(original.subarray(0, i % 3 === 0 ? Math.floor(random() * 15000) : original.length));
      for (let flips = 1 + Math.floor(random() * 4); flips > 0 && bytes.length; flips--) {
        const at = Math.floor(random() * Math.min(bytes.length, 14176));
        bytes[at] = bytes[at]! ^ (1 << Math.floor(random() * 8));
      }
      writeFileSync(file, bytes);
      try {
        const info = readGguf(file);
        for (const t of info.tensors) expect(info.dataOffset + t.offset + t.bytes).toBeLessThanOrEqual(info.fileSize);
      } catch (e) {
        expect(e).toBeInstanceOf(GgufError);
        const message = (e as Error).message;
        expect(message.startsWith(file)).toBe(true);
        expect(message).not.toContain('\n');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });
});

describe('readGguf errors', () => {
  it('names a missing file', () => {
    expect(() => readGguf(path.join(tmp, 'missing.gguf'))).toThrow(/missing\.gguf.*No such file/);
  });
  it('refuses an empty file', () => {
    const f = path.join(tmp, 'empty.gguf');
    writeFileSync(f, '');
    expect(() => readGguf(f)).toThrow(GgufError);
  });
});
