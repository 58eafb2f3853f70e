// bonsai bench kernels: the report's rows and keys, the exact --json document, the CLI, and its
// errors. Functional only: no assertion on speed (the machine may be busy).
import { describe, expect, it } from 'vitest';
import { gemmBatch, kernelBenchJson, parseShapes, runKernelBench } from '../src/bench/kernels.js';
import { native } from '../src/native.js';
import { runCli } from './helpers/cli.js';

const RESULT_KEYS = ['type', 'op', 'rows', 'cols', 'batch', 'path', 'kernels', 'threads', 'gbps', 'ns_per_block', 'bw_ratio'];
const SMALL = { shapes: [{ rows: 40, cols: 256 }], gemmBatch: 5, minMs: 2, bandwidthBytes: 16 << 20 };

describe('bench kernels', () => {
  it('measures every path, op and thread count against the bandwidth of the same thread count', () => {
    const paths = native.kernelPaths().supported;
    const r = runKernelBench({ ...SMALL, paths, threads: [1, 2] });
    expect(Object.keys(r.bandwidth_gbps)).toEqual(['1', '2']);
    expect(r.results).toHaveLength(paths.length * 2 * 2);
    for (const row of r.results) {
      expect(Object.keys(row)).toEqual(RESULT_KEYS);
      expect(row).toMatchObject({ type: 'q1_0', rows: 40, cols: 256 });
      expect(row.batch).toBe(row.op === 'gemv' ? 1 : gemmBatch(row.path, { rows: 40, cols: 256 }, 5));
      expect(row.gbps).toBeGreaterThan(0);
      expect(row.ns_per_block).toBeGreaterThan(0);
      // GB/s and ns per block are two views of the same time
      expect(row.gbps * row.ns_per_block).toBeCloseTo((18 * 1e9) / 1e9, 6);
      expect(row.bw_ratio).toBeCloseTo(row.gbps / r.bandwidth_gbps[String(row.threads)]!, 9);
    }
  });

  it('--json prints exactly bandwidth_gbps and results', async () => {
    const res = await runCli(['bench', 'kernels', '--json', '--shapes', '40x256', '--threads', '1', '--batch', '3', '--min-ms', '2', '--paths', 'scalar'], 120_000);
    expect(res.code).toBe(0);
    const doc = JSON.parse(res.stdout) as { bandwidth_gbps: Record<string, number>; results: Record<string, unknown>[] };
    expect(Object.keys(doc)).toEqual(['bandwidth_gbps', 'results']);
    expect(Object.keys(doc.bandwidth_gbps)).toEqual(['1']);
    expect(doc.results.map((x) => [x.op, x.batch, x.path, x.kernels, x.threads])).toEqual([['gemv', 1, 'scalar', 'scalar', 1], ['gemm', 3, 'scalar', 'scalar', 1]]);
    expect(Object.keys(doc.results[0]!)).toEqual(RESULT_KEYS);
    expect(Object.keys(kernelBenchJson(runKernelBench({ ...SMALL, paths: ['scalar'], threads: [1] })))).toEqual(['bandwidth_gbps', 'results']);
  }, 150_000);

  it('the table names the bandwidth and every row', async () => {
    const res = await runCli(['bench', 'kernels', '--shapes', '40x256', '--threads', '1', '--batch', '0', '--min-ms', '2'], 120_000);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/memory read bandwidth: [\d.]+ GB\/s with 1 thread/);
    expect(res.stdout).toMatch(/\| gemv \| 40x256 +\| 1 +\| scalar/);
    expect(res.stdout).not.toMatch(/gemm/);
  }, 150_000);

  it('labels each path with the kernels that actually ran: its own, or those of the path it extends', () => {
    // The parent chains of bn_isa_parent: a path without Q1_0 kernels of its own runs an ancestor's.
    const ancestors: Record<string, string[]> = { scalar: [], neon: ['scalar'], dotprod: ['neon', 'scalar'], i8mm: ['dotprod', 'neon', 'scalar'], avx2: ['scalar'], avx512: ['avx2', 'scalar'], avx512vbmi: ['avx512', 'avx2', 'scalar'] };
    const paths = native.kernelPaths().supported;
    const rows = runKernelBench({ ...SMALL, paths, threads: [1], gemmBatch: 0 }).results;
    for (const row of rows) {
      const borrowed = /^(\w+) \((\w+) kernels\)$/.exec(row.kernels);
      if (borrowed) {
        expect(borrowed[1]).toBe(row.path);
        expect(ancestors[row.path]).toContain(borrowed[2]);
      } else {
        expect(row.kernels).toBe(row.path);
      }
    }
    // Q1_0 has kernels of its own on avx2 and neon; TQ1_0 has none on avx2 (the scalar ones run).
    if (paths.includes('avx2')) expect(rows.find((r) => r.path === 'avx2')!.kernels).toBe('avx2');
    if (paths.includes('neon')) expect(rows.find((r) => r.path === 'neon')!.kernels).toBe('neon');
    if (paths.includes('avx2')) expect(native.kernelBench({ type: 'tq1_0', rows: 8, cols: 256, batch: 1, path: 'avx2', threads: 1, minMs: 1, streamBytes: 0 }).kernelsLabel).toBe('avx2 (scalar kernels)');
    expect(native.kernelPaths('q1_0').selectedLabel).toMatch(new RegExp(`^${native.kernelPaths().selected}( \\(\\w+ kernels\\))?$`));
  });

  it('rejects unknown paths and malformed shapes', async () => {
    expect(() => runKernelBench({ ...SMALL, paths: ['sse9'] })).toThrow(/not supported/);
    expect(() => parseShapes('2048x100')).toThrow(/multiple of 128/);
    expect(parseShapes('2048x6144, 6144x2048')).toEqual([{ rows: 2048, cols: 6144 }, { rows: 6144, cols: 2048 }]);
    const res = await runCli(['bench', 'kernels', '--paths', 'sse9']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/sse9/);
  });

  it('bench still requires a model outside the kernels subcommand', async () => {
    const res = await runCli(['bench']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/--model/);
  });
});
