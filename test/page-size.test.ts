// Nothing may assume 4 KiB pages: a Raspberry Pi 5 runs a 16 KiB-page kernel. The engine takes its
// page size from one place (bn_page_size, native/core), which BONSAI_TEST_PAGE_SIZE raises for a
// test; a model loaded with 16 KiB pages (repacked, its file pages dropped in 16 KiB units) gives
// the very logits it gives with the machine's own pages. The madvise ranges themselves are checked
// by ctest's test_mapped_drop_16k.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { synthesize } from '../src/gguf/synth.js';
import { native } from '../src/native.js';
import { runCli } from './helpers/cli.js';
import { fixture, HAVE_FIXTURES } from './helpers/fixtures.js';
import { ENV } from './helpers/serve.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-pages-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const PAGE_16K = { ...ENV, BONSAI_TEST_PAGE_SIZE: '16384' };

describe('page size', () => {
  it('is the kernel page size, a power of two of at least 4 KiB', () => {
    const page = native.pageSize();
    expect(page).toBeGreaterThanOrEqual(4096);
    expect(page & (page - 1)).toBe(0);
  });

  it('is raised by BONSAI_TEST_PAGE_SIZE, and only to a larger power of two', async () => {
    const reported = async (value: string) => {
      const r = await runCli(['profile', '--json'], 60_000, { ...ENV, BONSAI_TEST_PAGE_SIZE: value });
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { page_size: number }).page_size;
    };
    const own = native.pageSize();
    expect(await reported(String(own * 4))).toBe(own * 4);
    for (const ignored of [String(own / 2), String(own * 3), '16k', String(2 ** 21)]) expect(await reported(ignored), ignored).toBe(own);
  });

  it.skipIf(!HAVE_FIXTURES)('gives the same logits with 16 KiB pages as with the machine’s own', async () => {
    // One layer of Bonsai-1.7B's shape: megabyte matrices, repacked at load, their file pages dropped.
    const bonsai = path.join(tmp, 'bonsai-1.7b-1layer.gguf');
    await synthesize(bonsai, { shape: '1.7b', layers: 1, vocabFrom: fixture('stories260K/stories260K.gguf'), seed: 3 });
    for (const [file, ids] of [
      [fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf'), '1,423,265,300,301,87,400,12,7'],
      [bonsai, '1,403,407,261,378,300,42'],
    ] as const) {
      const logits = async (name: string, env: NodeJS.ProcessEnv) => {
        const out = path.join(tmp, `${path.basename(file)}.${name}.f32`);
        const r = await runCli(['logits', '-m', file, '--ids', ids, '-o', out, '-t', '2'], 120_000, env);
        expect(r.code, r.stderr).toBe(0);
        return readFileSync(out);
      };
      const own = await logits('own', ENV);
      const sixteen = await logits('16k', PAGE_16K);
      expect(own.length, file).toBe(ids.split(',').length * 512 * 4);
      expect(sixteen.equals(own), file).toBe(true);
    }
  });
});
