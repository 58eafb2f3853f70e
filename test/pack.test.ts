// .bnz packs (native/pack) and runtime images (native/model/image.c), against the oracles the
// fixtures give: every GGUF comes back byte for byte from its pack; a model run from its pack, or
// from a runtime image, gives the very logits (bit for bit) of the same model run from its GGUF,
// on every kernel path this CPU has; a damaged pack is refused naming its chunk and tensor; a
// damaged, stale or foreign image is never used.
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type LoadOptions } from '../src/engine/engine.js';
import { synthesize } from '../src/gguf/synth.js';
import { readGguf } from '../src/gguf/reader.js';
import { native } from '../src/native.js';
import { packModel, unpackModel, verifyPack } from '../src/pack/pack.js';
import { runCli } from './helpers/cli.js';
import { FIXTURES, HAVE_FIXTURES, REPO_ROOT, fixture } from './helpers/fixtures.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every GGUF of the fixtures (models and vocabulary-only files) and the bundled model. */
function ggufFiles(): string[] {
  const found: string[] = [path.join(REPO_ROOT, 'models', 'tinystories-xs-q1_0.gguf')];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.gguf')) found.push(p);
    }
  };
  if (HAVE_FIXTURES) walk(FIXTURES);
  return found;
}

const SYNTHETIC = path.join(dir, 'synthetic-1.7b-2layers.gguf');
beforeAll(() => synthesize(SYNTHETIC, { shape: '1.7b', layers: 2, seed: 5 }), 120_000);

describe('bonsai pack / unpack', () => {
  it('restores every GGUF byte for byte, at every level', async () => {
    const files = [...ggufFiles(), SYNTHETIC];
    expect(files.length).toBeGreaterThan(HAVE_FIXTURES ? 15 : 1);
    for (const file of files) {
      for (const level of [0, 1, 2, 3]) {
        if (level !== 2 && statSync(file).size > 4e6) continue; // the large ones at the default level only
        const bnz = path.join(dir, `${path.basename(file)}.${level}.bnz`);
        const back = path.join(dir, `${path.basename(file)}.${level}.gguf`);
        await packModel(file, bnz, level);
        await verifyPack(bnz);
        await unpackModel(bnz, back);
        expect(readFileSync(back).equals(readFileSync(file)), `${file} at level ${level}`).toBe(true);
        if (level === 0) expect(statSync(bnz).size).toBeGreaterThanOrEqual(statSync(file).size); // stored
        rmSync(back);
      }
    }
  }, 300_000);

  it('makes 1-bit and ternary models smaller, and random signs stay stored (incompressible by construction)', async () => {
    const out = path.join(dir, 'synthetic.bnz');
    const r = await packModel(SYNTHETIC, out);
    expect(r.decoded.signs).toBeGreaterThan(0);
    expect(r.coded.signs).toBe(r.decoded.signs); // random signs: coding cannot win
    expect(r.coded.scales).toBeLessThan(r.decoded.scales); // fp16 scales of similar magnitude do compress
    expect(statSync(out).size).toBeLessThan(statSync(SYNTHETIC).size);
    expect(readGguf(out).pack).toMatchObject({ bytes: statSync(out).size });
  });

  it.skipIf(!HAVE_FIXTURES)('the CLI packs with a default name, verifies and unpacks', async () => {
    const src = path.join(dir, 'cli-model.gguf');
    writeFileSync(src, readFileSync(fixture('qwen3-tiny/models/tiny-qwen3-tq2_0.gguf')));
    const packed = await runCli(['pack', src, '--json']);
    expect(packed.code, packed.stderr).toBe(0);
    const summary = JSON.parse(packed.stdout) as { out: string; packedBytes: number; bytes: number; decoded: { ternary: number }; coded: { ternary: number } };
    expect(summary.out).toBe(path.join(dir, 'cli-model.bnz'));
    expect(summary.coded.ternary).toBeLessThan(summary.decoded.ternary / 2); // 2-bit fields of three symbols
    expect((await runCli(['pack', '--verify', summary.out])).stdout).toBe(`${summary.out}: every chunk is intact\n`);
    const back = path.join(dir, 'cli-back.gguf');
    expect((await runCli(['unpack', summary.out, '-o', back])).code).toBe(0);
    expect(readFileSync(back).equals(readFileSync(src))).toBe(true);
    const inspect = await runCli(['inspect', summary.out]);
    expect(inspect.stdout).toContain('blk.0.ffn_up.weight');
    expect(inspect.stdout).toContain(`packed: ${summary.packedBytes} bytes (${((100 * summary.packedBytes) / summary.bytes).toFixed(1)}%) in `);
  });
});

describe('a damaged pack', () => {
  let bnz: string;
  let table: { chunks: number };
  beforeAll(async () => {
    bnz = path.join(dir, 'damaged-source.bnz');
    await packModel(SYNTHETIC, bnz);
    table = readGguf(bnz).pack!;
  });

  /** A copy of the pack with one byte flipped at `at` (negative: from the end). */
  function flipped(at: number): string {
    const bytes = readFileSync(bnz);
    const i = at < 0 ? bytes.length + at : at;
    bytes[i]! ^= 0x40;
    const out = path.join(dir, `flipped-${at}.bnz`);
    writeFileSync(out, bytes);
    return out;
  }

  it('fails --verify naming the chunk and its tensor, and the engine refuses it the same way', async () => {
    const bad = flipped(-1000); // inside the last tensor's last chunk
    const last = table.chunks - 1;
    await expect(verifyPack(bad)).rejects.toThrow(new RegExp(`chunk ${last} of ${table.chunks} \\(tensor '[^']+', GGUF bytes \\d+\\.\\.\\d+\\) is damaged: its CRC-32 does not match`));
    const cli = await runCli(['pack', '--verify', bad]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(new RegExp(`^bonsai: .*chunk ${last} of ${table.chunks} \\(tensor '`));
    await expect(Model.load(bad)).rejects.toThrow(/tensor '[^']+', GGUF bytes \d+\.\.\d+\) is damaged/);
  });

  it('refuses a damaged header, head or chunk table, and a truncated pack, before decoding anything', async () => {
    await expect(Model.load(flipped(20))).rejects.toThrow(/pack header is damaged/);
    await expect(Model.load(flipped(100))).rejects.toThrow(/GGUF header inside the pack is damaged/);
    const truncated = path.join(dir, 'truncated.bnz');
    writeFileSync(truncated, readFileSync(bnz).subarray(0, 5000));
    await expect(Model.load(truncated)).rejects.toThrow(/truncated|damaged/);
    expect(() => readGguf(truncated)).toThrow(/truncated|damaged/);
  });
});

/** Logits of a few tokens (the last position's) of a model loaded with `options`. */
async function logitsOf(file: string, options: LoadOptions = {}): Promise<{ logits: Float32Array; model: Model }> {
  const model = await Model.load(file, { threads: 2, contextSize: 64, ...options });
  const logits = await model.logits([1, 300, 301, 302, 303, 304]);
  model.close();
  return { logits, model };
}

function identical(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('running a pack', () => {
  const models = (): string[] => [
    SYNTHETIC,
    path.join(REPO_ROOT, 'models', 'tinystories-xs-q1_0.gguf'),
    ...(HAVE_FIXTURES ? ['q1_0', 'tq1_0', 'tq2_0', 'q8_0', 'f32'].map((t) => fixture(`qwen3-tiny/models/tiny-qwen3-${t}.gguf`)).concat(fixture('stories260K/stories260K.gguf')) : []),
  ];

  it('gives the logits of its GGUF bit for bit, on every kernel path of this CPU', async () => {
    const paths = native.kernelPaths().supported;
    expect(paths).toContain('scalar');
    for (const gguf of models()) {
      const bnz = path.join(dir, `${path.basename(gguf)}.run.bnz`);
      await packModel(gguf, bnz);
      for (const kernels of paths) {
        const want = (await logitsOf(gguf, { kernels })).logits;
        const got = (await logitsOf(bnz, { kernels })).logits;
        expect(identical(got, want), `${path.basename(gguf)} on ${kernels}`).toBe(true);
      }
    }
  }, 300_000);

  it('runs from a runtime image once built: the same logits, nothing decoded; a damaged, stale or foreign image is rebuilt', async () => {
    const bnz = path.join(dir, 'image-source.bnz');
    await packModel(SYNTHETIC, bnz);
    const want = (await logitsOf(SYNTHETIC)).logits;
    const image = { path: path.join(dir, 'model.img'), key: 'pack-a' };
    const first = await logitsOf(bnz, { image });
    expect(first.model.loadInfo).toMatchObject({ image: 'written', imageNote: 'absent' });
    const second = await logitsOf(bnz, { image });
    expect(second.model.loadInfo.image).toBe('used');
    expect(identical(first.logits, want) && identical(second.logits, want)).toBe(true);

    // one flipped byte in the repacked matrices: that part's CRC fails, the image is rebuilt
    const bytes = readFileSync(image.path);
    bytes[bytes.length - 5000]! ^= 1;
    writeFileSync(image.path, bytes);
    const damaged = await logitsOf(bnz, { image });
    expect(damaged.model.loadInfo.image).toBe('written');
    expect(damaged.model.loadInfo.imageNote).toMatch(/^part \d+ of \d+ is damaged/);
    expect(identical(damaged.logits, want)).toBe(true);

    // another key (the pack changed), another kernel path: not used
    expect((await logitsOf(bnz, { image: { ...image, key: 'pack-b' } })).model.loadInfo.imageNote).toMatch(/made for another/);
    const scalar = await logitsOf(bnz, { image: { ...image, key: 'pack-b' }, kernels: 'scalar' });
    expect(scalar.model.loadInfo.imageNote).toMatch(/another size|made for another/);
    expect(identical(scalar.logits, (await logitsOf(SYNTHETIC, { kernels: 'scalar' })).logits)).toBe(true);

    // a GGUF runs from an image of its own too
    const ggufImage = { path: path.join(dir, 'gguf.img'), key: 'gguf' };
    await logitsOf(SYNTHETIC, { image: ggufImage });
    const fromImage = await logitsOf(SYNTHETIC, { image: ggufImage });
    expect(fromImage.model.loadInfo.image).toBe('used');
    expect(identical(fromImage.logits, want)).toBe(true);
  }, 120_000);

  it('runs with no image when the image cannot be written, and says why', async () => {
    const image = { path: path.join(dir, 'no-such-dir', 'model.img'), key: 'k' };
    const r = await logitsOf(SYNTHETIC, { image });
    expect(r.model.loadInfo.image).toBe('not-written');
    expect(r.model.loadInfo.imageNote).toMatch(/No such file or directory/);
    expect(identical(r.logits, (await logitsOf(SYNTHETIC)).logits)).toBe(true);
  });
});

describe.skipIf(!HAVE_FIXTURES)('the caches and runtime images', () => {
  it('bonsai run builds the image on the first start and maps it on the next, with the same text as the GGUF', async () => {
    const gguf = fixture('qwen3-tiny/models/tiny-qwen3-q1_0.gguf');
    const bnz = path.join(dir, 'cached.bnz');
    await packModel(gguf, bnz);
    const cache = path.join(dir, 'cache', 'cache.db');
    const run = (model: string) => runCli(['run', '-m', model, '--cache', cache, '-p', 'hello', '-n', '12', '--temp', '0']);
    const want = await runCli(['run', '-m', gguf, '--no-cache', '-p', 'hello', '-n', '12', '--temp', '0']);
    expect(want.code, want.stderr).toBe(0);
    for (let i = 0; i < 2; i++) {
      const r = await run(bnz);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(want.stdout);
    }
    const json = await runCli(['run', '-m', bnz, '--cache', cache, '-p', 'hello', '-n', '12', '--temp', '0', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ runtime_image: 'used', text: want.stdout.slice(0, -1) });
    const off = await runCli(['run', '-m', bnz, '--no-cache', '-p', 'hello', '-n', '12', '--temp', '0', '--json']);
    expect(JSON.parse(off.stdout)).toMatchObject({ runtime_image: 'off' });
    const images = readdirSync(path.join(dir, 'cache', 'images'));
    expect(images).toHaveLength(1);
    const stats = JSON.parse((await runCli(['cache', 'stats', '--cache', cache, '--json'])).stdout) as { images: number; image_bytes: number };
    expect(stats.images).toBe(1);
    expect(stats.image_bytes).toBe(statSync(path.join(dir, 'cache', 'images', images[0]!)).size);
    expect((await runCli(['cache', 'clear', '--cache', cache])).code).toBe(0);
    expect(readdirSync(path.join(dir, 'cache', 'images'))).toHaveLength(0);
  });
});
