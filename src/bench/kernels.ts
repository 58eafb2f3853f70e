// `bonsai bench kernels`: the matrix kernels alone, on Bonsai's shapes, per path and thread count,
// against the memory read bandwidth measured in the same run. Decode (GEMV) streams every weight
// once per token, so its weight GB/s over the bandwidth is how close it runs to the roofline.
import { native, type KernelBenchResult } from '../native.js';
import { bandwidthDrift, BANDWIDTH_BYTES, bestBandwidth, probeBandwidth, type Bandwidth } from './bandwidth.js';

export interface KernelShape {
  rows: number;
  cols: number;
}

/** Bonsai's (Qwen3 1.7B) matrices: attention and output projections, FFN up/gate, FFN down, vocabulary. */
export const BONSAI_SHAPES: KernelShape[] = [
  { rows: 2048, cols: 2048 },
  { rows: 2048, cols: 6144 },
  { rows: 6144, cols: 2048 },
  { rows: 151936, cols: 2048 },
];

export interface KernelBenchOptions {
  paths?: string[];
  threads?: number[];
  shapes?: KernelShape[];
  /** Tokens per GEMM (prefill) product; 0 = no GEMM rows. */
  gemmBatch?: number;
  /** Measured time per row (each row also runs at least 3 products). */
  minMs?: number;
  /** Bytes for the bandwidth probe. */
  bandwidthBytes?: number;
  onProgress?: (message: string) => void;
}

/** One measurement, keys as `--json` prints them. */
export interface KernelBenchRow {
  type: 'q1_0';
  op: 'gemv' | 'gemm';
  rows: number;
  cols: number;
  batch: number;
  path: string;
  /** Whose kernels ran: the path, or e.g. "avx512 (avx2 kernels)" for a path without kernels of its own. */
  kernels: string;
  threads: number;
  /** Weight bytes x batch per second / 1e9: for a GEMM, how fast weights are applied, not read. */
  gbps: number;
  ns_per_block: number;
  /** gbps over the bandwidth with the same thread count (a GEMM reuses cached weights and may exceed 1). */
  bw_ratio: number;
}

export interface KernelBenchReport {
  bandwidth_gbps: Record<string, number>;
  /** bandwidthDrift of the run's probes (not in --json). */
  bandwidthDrift: string | null;
  results: KernelBenchRow[];
  /** Load-time repacking per path and shape (not in --json). */
  packing: { path: string; rows: number; cols: number; extraBytes: number; ms: number }[];
}

/** A GEMV rotates over copies of its matrix totalling 8x a large L3, as a model's layers would. */
const STREAM_BYTES = 256 * 2 ** 20;
const GEMM_BATCH = 512;
/** Above this many weights a GEMM of the full batch would take seconds: the vocabulary runs 64 tokens. */
const LARGE_WEIGHTS = 1e8;
const LARGE_GEMM_BATCH = 64;
/** The scalar reference is ~50x slower: a few tokens show its rate. */
const SCALAR_GEMM_BATCH = 8;

export function gemmBatch(path: string, shape: KernelShape, batch: number): number {
  if (path === 'scalar') return Math.min(batch, SCALAR_GEMM_BATCH);
  return shape.rows * shape.cols > LARGE_WEIGHTS ? Math.min(batch, LARGE_GEMM_BATCH) : batch;
}

/** "2048x6144,6144x2048" (rows x cols). */
export function parseShapes(value: string): KernelShape[] {
  return value.split(',').map((s) => {
    const m = /^\s*(\d+)x(\d+)\s*$/.exec(s);
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 128 || Number(m[2]) % 128 !== 0) {
      throw new Error(`shape '${s}' must be <rows>x<cols> with cols a multiple of 128, e.g. 2048x6144`);
    }
    return { rows: Number(m[1]), cols: Number(m[2]) };
  });
}

export function runKernelBench(o: KernelBenchOptions = {}): KernelBenchReport {
  const supported = native.kernelPaths().supported;
  const paths = o.paths ?? supported;
  for (const p of paths) {
    if (!supported.includes(p)) throw new Error(`kernel path '${p}' is not supported here (supported: ${supported.join(', ')})`);
  }
  const threads = o.threads ?? [1, 2];
  const shapes = o.shapes ?? BONSAI_SHAPES;
  const batch = o.gemmBatch ?? GEMM_BATCH;
  const progress = o.onProgress ?? (() => {});
  // Probed before the kernels and after each shape, best kept, like the kernels' own figures: a
  // busy machine only ever slows a pass down, and the probe needs a core as much as they do.
  const readings: Bandwidth[] = [];
  const probe = () =>
    readings.push(...probeBandwidth(threads, o.bandwidthBytes ?? BANDWIDTH_BYTES, (t) => progress(`memory read bandwidth, ${t} thread${t > 1 ? 's' : ''}`)));
  probe();
  const measured: { row: Omit<KernelBenchRow, 'bw_ratio'>; r: KernelBenchResult }[] = [];
  for (const shape of shapes) {
    for (const path of paths) {
      const ops: ['gemv' | 'gemm', number][] = [['gemv', 1]];
      if (batch > 1) ops.push(['gemm', gemmBatch(path, shape, batch)]);
      for (const [op, b] of ops) {
        for (const t of threads) {
          progress(`${op} ${shape.rows}x${shape.cols} batch ${b}, ${path}, ${t} thread${t > 1 ? 's' : ''}`);
          const r = native.kernelBench({
            type: 'q1_0', rows: shape.rows, cols: shape.cols, batch: b, path, threads: t,
            minMs: o.minMs ?? 300, streamBytes: STREAM_BYTES,
          });
          measured.push({
            row: { type: 'q1_0', op, rows: shape.rows, cols: shape.cols, batch: b, path, kernels: r.kernelsLabel, threads: t, gbps: r.gbps, ns_per_block: r.nsPerBlock },
            r,
          });
        }
      }
    }
    probe();
  }
  const packing = measured
    .filter(({ row, r }) => r.packedBytes > 0 && row.op === 'gemv' && row.threads === threads[0])
    .map(({ row, r }) => ({ path: row.path, rows: row.rows, cols: row.cols, extraBytes: r.packedBytes, ms: r.packMs }));
  const bandwidth_gbps = Object.fromEntries(bestBandwidth(readings).map((b) => [String(b.threads), b.gbps]));
  const drift = bandwidthDrift(readings);
  if (drift) progress(drift);
  const results = measured.map(({ row }) => ({ ...row, bw_ratio: row.gbps / bandwidth_gbps[String(row.threads)]! }));
  return { bandwidth_gbps, bandwidthDrift: drift, results, packing };
}

/** The `--json` document: exactly bandwidth_gbps and results. */
export function kernelBenchJson(r: KernelBenchReport): object {
  const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
  return {
    bandwidth_gbps: Object.fromEntries(Object.entries(r.bandwidth_gbps).map(([k, v]) => [k, round(v, 2)])),
    results: r.results.map((x) => ({ ...x, gbps: round(x.gbps, 3), ns_per_block: round(x.ns_per_block, 3), bw_ratio: round(x.bw_ratio, 3) })),
  };
}

export function formatKernelBench(r: KernelBenchReport): string {
  const bw = Object.entries(r.bandwidth_gbps).map(([t, g]) => `${g.toFixed(1)} GB/s with ${t} thread${t === '1' ? '' : 's'}`);
  const header = ['op', 'rows x cols', 'batch', 'path', 'threads', 'GB/s', 'ns/block', 'of bandwidth'];
  const rows = r.results.map((x) => [
    x.op, `${x.rows}x${x.cols}`, String(x.batch), x.kernels, String(x.threads), x.gbps.toFixed(2), x.ns_per_block.toFixed(3),
    `${(x.bw_ratio * 100).toFixed(1)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((c) => c[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const lines = [
    `memory read bandwidth: ${bw.join(', ')}`,
    ...(r.bandwidthDrift ? [`warning: ${r.bandwidthDrift}`] : []),
    'q1_0 weights; GB/s = weight bytes x batch per second (a GEMM applies cached weights to every token); ns per 128-weight block per token',
    '',
    line(header),
    `|${widths.map((w, i) => (i < 4 ? `-${'-'.repeat(w)}-` : `-${'-'.repeat(w)}:`)).join('|')}|`,
    ...rows.map(line),
  ];
  if (r.packing.length > 0) lines.push('', 'load-time repacking (one matrix):');
  for (const p of r.packing) {
    lines.push(`  ${p.path} ${p.rows}x${p.cols}: ${(p.extraBytes / 2 ** 20).toFixed(2)} MiB extra, ${p.ms.toFixed(1)} ms`);
  }
  return `${lines.join('\n')}\n`;
}
