// bonsai bench: its statistics, the weight traffic it attributes to a token, the exact --json
// document, and a run against the peer. Functional only: no assertion on speed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bandwidthDrift, bestBandwidth } from '../src/bench/bandwidth.js';
import { benchJson, formatBench, meanSd, weightStats, type BenchReport } from '../src/bench/bench.js';
import { readGguf } from '../src/gguf/reader.js';
import { native } from '../src/native.js';
import { synthesize } from '../src/gguf/synth.js';
import { runCli } from './helpers/cli.js';
import { peerModuleUrl } from '../src/bench/peer.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-bench-'));
const MODEL = path.join(tmp, 'tiny-1layer.gguf');
beforeAll(() => synthesize(MODEL, { shape: 'tiny', layers: 1, seed: 11 }));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const JSON_KEYS = ['bandwidth_gbps', 'load_ms', 'rss_mb', 'peer_rss_mb', 'results'];
const RESULT_KEYS = ['test', 'threads', 'tokens_per_s', 'sd', 'bw_fraction', 'peer_tokens_per_s', 'ratio'];
const TG_KEYS = ['test', 'threads', 'parallel', 'aggregate_tokens_per_s', 'tokens_per_s', 'sd', 'bw_fraction', 'peer_tokens_per_s', 'ratio'];


describe('bench figures', () => {
  it('mean and sample standard deviation as llama-bench reports them', () => {
    expect(meanSd([2, 4, 4, 4, 5, 5, 7, 9])).toEqual({ mean: 5, sd: Math.sqrt(32 / 7) });
    expect(meanSd([3])).toEqual({ mean: 3, sd: 0 });
  });

  it('a generated token reads every weight once but only one row of the token embedding', () => {
    const info = readGguf(MODEL);
    const s = weightStats(info);
    const embd = info.tensors.find((t) => t.name === 'token_embd.weight')!;
    expect(s.bytes).toBe(info.tensors.reduce((a, t) => a + t.bytes, 0));
    expect(s.bytesPerToken).toBe(s.bytes - embd.bytes + embd.bytes / embd.dims[1]!);
    expect(s.vocab).toBe(151936);
  });

  it('the memory bandwidth probe measures something and refuses nonsense', () => {
    const r = native.memoryBandwidth(32 * 2 ** 20, 2, 2);
    expect(r.bestGBps).toBeGreaterThan(0);
    expect(r.bestGBps).toBeGreaterThanOrEqual(r.meanGBps);
    expect(() => native.memoryBandwidth(1024, 0, 1)).toThrow(/threads must be/);
  });

  it('the --json document has exactly the keys of issue #4, the table has a row per result', () => {
    const worker = { loadMs: 12.34, firstTokenMs: 20, rssMb: 100.06, kernels: 'avx2', runs: [] };
    const report: BenchReport = {
      model: 'm.gguf',
      params: 2e9,
      weightBytes: 2 ** 28,
      bytesPerToken: 2 ** 27,
      contextSize: 768,
      kvType: 'f16',
      bandwidth: [{ threads: 1, gbps: 30 }],
      bandwidthAfter: [{ threads: 1, gbps: 29 }],
      bandwidthGbps: 30,
      bonsai: worker,
      peer: { ...worker, rssMb: 300, kernels: 'llama.cpp (prebuilt)' },
      peerUnavailable: null,
      rows: [{ test: 'tg128', threads: 1, tokensPerS: 100, sd: 1, weightGBps: 13.4, bwFraction: 0.4473, peerTokensPerS: 50, peerSd: 2, ratio: 2 }],
    };
    const json = benchJson(report) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(JSON_KEYS);
    expect(json).toMatchObject({ bandwidth_gbps: 30, load_ms: 12.3, rss_mb: 100.1, peer_rss_mb: 300 });
    expect(json.results).toEqual([{ test: 'tg128', threads: 1, tokens_per_s: 100, sd: 1, bw_fraction: 0.4473, peer_tokens_per_s: 50, ratio: 2 }]);
    const text = formatBench(report);
    expect(text).toMatch(/\| tg128 \| 1 +\| +100\.00 ± 1\.00 \| +13\.40 \| +44\.7% \| +50\.00 ± 2\.00 \| +2\.00x \|/);
    expect(text).toContain('peak RSS 300.0 MiB');
    expect(text).toContain('memory read bandwidth (before / after the runs): 30.0 / 29.0 GB/s with 1 thread; roofline 30.0 GB/s');
    expect(text).not.toContain('warning');
    expect(formatBench({ ...report, bandwidthAfter: [{ threads: 1, gbps: 40 }] })).toContain(
      '\nwarning: the memory read bandwidth moved during the run (30.0-40.0 GB/s with 1 thread)',
    );
  });

  it('bandwidth readings that spread by more than 15% for a thread count are called out, and the best is kept', () => {
    const before = [{ threads: 1, gbps: 30 }, { threads: 2, gbps: 33 }];
    expect(bandwidthDrift([...before, { threads: 1, gbps: 34.4 }, { threads: 2, gbps: 28.8 }])).toBeNull();
    const jumped = [...before, { threads: 1, gbps: 30 }, { threads: 2, gbps: 56.5 }];
    expect(bandwidthDrift(jumped)).toBe(
      'the memory read bandwidth moved during the run (33.0-56.5 GB/s with 2 threads): the figures are set against the best reading, and their ratios to it are unreliable on a machine this busy',
    );
    expect(bestBandwidth(jumped)).toEqual([{ threads: 1, gbps: 30 }, { threads: 2, gbps: 56.5 }]);
    // a fall counts as much as a rise, and the spread of several readings from the lowest to the highest
    expect(bandwidthDrift([...before, { threads: 1, gbps: 25 }, { threads: 1, gbps: 27 }])).toMatch(/\(25\.0-30\.0 GB\/s with 1 thread\)/);
  });
});

describe('bonsai bench (command line)', () => {
  it('measures pp and tg for each thread count and prints the JSON document', async () => {
    const r = await runCli(['bench', '-m', MODEL, '-p', '16', '-n', '4', '-t', '1,2', '-r', '2', '--json'], 120_000);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as { results: Record<string, unknown>[] } & Record<string, unknown>;
    expect(Object.keys(json)).toEqual(JSON_KEYS);
    expect(json.peer_rss_mb).toBeNull();
    expect(json.results.map((x) => [x.test, x.threads])).toEqual([
      ['pp16', 1],
      ['tg4', 1],
      ['pp16', 2],
      ['tg4', 2],
    ]);
    for (const x of json.results) {
      expect(Object.keys(x)).toEqual(String(x.test).startsWith('tg') ? TG_KEYS : RESULT_KEYS);
      expect(x.tokens_per_s).toBeGreaterThan(0);
      expect(x.ratio).toBeNull();
    }
  });

  it('--parallel: tg with generations decoded together, per stream and for all streams', async () => {
    const r = await runCli(['bench', '-m', MODEL, '-p', '0', '-n', '16', '-t', '2', '-r', '2', '--parallel', '1,3', '--json'], 120_000);
    expect(r.code).toBe(0);
    const results = (JSON.parse(r.stdout) as { results: Record<string, number | string>[] }).results;
    expect(results.map((x) => [x.test, x.parallel])).toEqual([
      ['tg16', 1],
      ['tg16', 3],
    ]);
    const [alone, together] = results as Record<string, number>[];
    expect(alone!.aggregate_tokens_per_s).toBe(alone!.tokens_per_s);
    // three streams that overlap: all of them make close to three times what each one makes
    expect(together!.aggregate_tokens_per_s).toBeGreaterThan(2 * together!.tokens_per_s);
    expect(together!.aggregate_tokens_per_s).toBeLessThanOrEqual(3 * together!.tokens_per_s * 1.0001);
    const table = await runCli(['bench', '-m', MODEL, '-p', '0', '-n', '4', '-t', '1', '-r', '1', '--parallel', '2']);
    expect(table.stdout).toMatch(/\| test +\| threads +\| streams \| all streams t\/s \|/);
    expect(table.stdout).toMatch(/\| tg4 +\| 1 +\| +2 \| +[\d.]+ \|/);
    const bad = await runCli(['bench', '-m', MODEL, '--parallel', '0']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/parallel must be comma-separated integers from 1 to 16/);
  });

  it.skipIf(!peerModuleUrl())('--vs-peer runs node-llama-cpp on the same file and gives the ratio', async () => {
    const r = await runCli(['bench', '-m', MODEL, '-p', '16', '-n', '4', '-t', '1', '-r', '1', '--vs-peer'], 180_000);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\| tg4 +\| 1 +\|.*\| +[\d.]+ ± [\d.]+ \| +[\d.]+x \|/);
    expect(r.stdout).toMatch(/peer: +load \d+ ms, first token \d+ ms after start, peak RSS [\d.]+ MiB/);
  });

  it('--depth: tg after a filled context, named as llama-bench names it, with a context that holds it', async () => {
    const r = await runCli(['bench', '-m', MODEL, '-p', '0', '-n', '4', '-d', '0,300', '-t', '1', '-r', '1', '--json'], 120_000);
    expect(r.code).toBe(0);
    const results = (JSON.parse(r.stdout) as { results: Record<string, unknown>[] }).results;
    expect(results.map((x) => x.test)).toEqual(['tg4', 'tg4 @ d300']);
    for (const x of results) expect(x.tokens_per_s).toBeGreaterThan(0);
    const small = await runCli(['bench', '-m', MODEL, '-p', '0', '-n', '4', '-d', '300', '-c', '256']);
    expect(small.code).not.toBe(0);
    expect(small.stderr).toMatch(/-p 0, -n 4 and --depth 300 need a context of 305 tokens; -c is 256/);
    const bad = await runCli(['bench', '-m', MODEL, '-d', '12,x']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/depth must be comma-separated integers from 0 to 65536/);
  });

  it('a prompt-only run fits its default context even at a multiple of 256 tokens, and -c too small is refused', async () => {
    // the engine keeps one position free to answer in: -p 256 -n 0 needs a context of 257
    const r = await runCli(['bench', '-m', MODEL, '-p', '256', '-n', '0', '-t', '1', '-r', '1', '--json'], 120_000);
    expect(r.stderr).not.toMatch(/context holds/);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { results: Record<string, unknown>[] }).results.map((x) => x.test)).toEqual(['pp256']);
    const small = await runCli(['bench', '-m', MODEL, '-p', '256', '-n', '0', '-c', '256']);
    expect(small.code).not.toBe(0);
    expect(small.stderr).toMatch(/-p 256, -n 0 and --depth 0 need a context of 257 tokens; -c is 256/);
  });

  it('refuses a run with nothing to measure', async () => {
    const r = await runCli(['bench', '-m', MODEL, '-p', '0', '-n', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/nothing to measure/);
  });
});
