// `bonsai bench`, like llama-bench: prompt processing (pp) and generation (tg) speed, load time and
// peak RSS, set against the machine's memory read bandwidth measured in the same run, and
// optionally against the peer (llama.cpp through node-llama-cpp) on the same file. Each engine
// runs in its own child process (bench-worker.ts) so that each one's peak RSS is its own.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readGguf, type GgufFileInfo } from '../gguf/reader.js';
import { bandwidthDrift, BANDWIDTH_BYTES, probeBandwidth, type Bandwidth } from './bandwidth.js';
import type { WorkerProgress, WorkerReply, WorkerResult, WorkerSpec } from './worker.js';

export interface BenchOptions {
  model: string;
  prompt: number;
  gen: number;
  threads: number[];
  /** tg with this many generations decoded together (default [1]). */
  parallel?: number[];
  /** tg after a context already holding this many tokens, as llama-bench's -d (default [0]). */
  depth?: number[];
  reps: number;
  kvType: 'f32' | 'f16';
  /** Default: room for the prompt and the generated tokens, as llama-bench. */
  contextSize?: number;
  /** Force a kernel path (default: the best this CPU has). */
  kernels?: string;
  vsPeer: boolean;
  /** Size of the bandwidth probe's buffer: far larger than any cache. */
  bandwidthBytes?: number;
  onProgress?: (message: string) => void;
}

export interface BenchRow {
  test: string;
  threads: number;
  /** tg: generations decoded together; tokensPerS is each one's, aggregateTokensPerS all of theirs. */
  parallel?: number;
  aggregateTokensPerS?: number;
  tokensPerS: number;
  sd: number;
  /** Weight bytes a token costs times tokens/s: what the run would stream if nothing were reused. */
  weightGBps: number;
  bwFraction: number;
  peerTokensPerS: number | null;
  peerSd: number | null;
  ratio: number | null;
}

export interface BenchReport {
  model: string;
  params: number;
  weightBytes: number;
  bytesPerToken: number;
  contextSize: number;
  kvType: string;
  /** Best read bandwidth per thread count, before and after bonsai's runs, and the best of them all: the roofline. */
  bandwidth: Bandwidth[];
  bandwidthAfter: Bandwidth[];
  bandwidthGbps: number;
  bonsai: WorkerResult;
  peer: WorkerResult | null;
  /** Why the peer did not run, when it was asked for. */
  peerUnavailable: string | null;
  rows: BenchRow[];
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const progress = o.onProgress ?? (() => {});
  const info = readGguf(o.model);
  const weights = weightStats(info);
  // As llama-bench: room for the prompt and the generated tokens, rounded up as llama.cpp rounds;
  // a prompt alone needs one position more than its tokens (the engine keeps room to answer).
  const depths = o.depth ?? [0];
  const needed = Math.max(o.prompt + 1, o.prompt + o.gen, ...(o.gen > 0 ? depths.map((d) => d + o.gen + 1) : []));
  const contextSize = o.contextSize ?? Math.ceil(needed / 256) * 256;
  if (needed > contextSize) throw new Error(`-p ${o.prompt}, -n ${o.gen} and --depth ${depths.join(',')} need a context of ${needed} tokens; -c is ${contextSize}`);

  progress('measuring memory read bandwidth');
  const threadCounts = [...new Set([1, ...o.threads])];
  const bandwidth = probeBandwidth(threadCounts, o.bandwidthBytes ?? BANDWIDTH_BYTES);

  const spec: WorkerSpec = {
    engine: 'bonsai',
    model: o.model,
    threads: o.threads,
    parallel: o.parallel ?? [1],
    depth: depths,
    prompt: o.prompt,
    gen: o.gen,
    reps: o.reps,
    contextSize,
    kvType: o.kvType,
    ...(o.kernels !== undefined ? { kernels: o.kernels } : {}),
    vocab: weights.vocab,
  };
  const bonsaiReply = await runWorker(spec, progress);
  if (!bonsaiReply.ok) throw new Error(bonsaiReply.error);
  progress('measuring memory read bandwidth again');
  const bandwidthAfter = probeBandwidth(threadCounts, o.bandwidthBytes ?? BANDWIDTH_BYTES);
  const bandwidthGbps = Math.max(...[...bandwidth, ...bandwidthAfter].map((b) => b.gbps));
  const drift = bandwidthDrift([...bandwidth, ...bandwidthAfter]);
  if (drift) progress(drift);
  let peer: WorkerResult | null = null;
  let peerUnavailable: string | null = null;
  if (o.vsPeer) {
    const reply = await runWorker({ ...spec, engine: 'peer' }, progress);
    if (reply.ok) peer = reply.result;
    else peerUnavailable = reply.error;
  }
  const rows = bonsaiReply.result.runs.map((run): BenchRow => {
    const { mean, sd } = meanSd(run.samples);
    const aggregate = run.aggregateSamples ? meanSd(run.aggregateSamples).mean : undefined;
    // a weight read serves every stream: what one token stream alone would have to read
    const weightGBps = ((aggregate ?? mean) * weights.bytesPerToken) / 1e9;
    const peerRun = peer?.runs.find((p) => p.test === run.test && p.threads === run.threads && p.parallel === run.parallel);
    const peerStats = peerRun ? meanSd(peerRun.samples) : null;
    return {
      test: run.test,
      threads: run.threads,
      ...(run.parallel !== undefined ? { parallel: run.parallel } : {}),
      ...(aggregate !== undefined ? { aggregateTokensPerS: aggregate } : {}),
      tokensPerS: mean,
      sd,
      weightGBps,
      bwFraction: weightGBps / bandwidthGbps,
      peerTokensPerS: peerStats?.mean ?? null,
      peerSd: peerStats?.sd ?? null,
      ratio: peerStats ? mean / peerStats.mean : null,
    };
  });
  return {
    model: o.model,
    params: weights.params,
    weightBytes: weights.bytes,
    bytesPerToken: weights.bytesPerToken,
    contextSize,
    kvType: o.kvType,
    bandwidth,
    bandwidthAfter,
    bandwidthGbps,
    bonsai: bonsaiReply.result,
    peer,
    peerUnavailable,
    rows,
  };
}

/**
 * Tensor bytes, and the bytes one generated token reads: every weight once, except the token
 * embedding, of which only one row is looked up.
 */
export function weightStats(info: GgufFileInfo): { params: number; bytes: number; bytesPerToken: number; vocab: number } {
  let params = 0;
  let bytes = 0;
  let perToken = 0;
  for (const t of info.tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    params += n;
    bytes += t.bytes;
    perToken += t.name === 'token_embd.weight' ? t.bytes / (t.dims[1] ?? 1) : t.bytes;
  }
  const tokens = info.metadata['tokenizer.ggml.tokens'];
  const embd = info.tensors.find((t) => t.name === 'token_embd.weight');
  const vocab = Array.isArray(tokens) ? tokens.length : (embd?.dims[1] ?? 1);
  return { params, bytes, bytesPerToken: perToken, vocab };
}

/** Mean and sample standard deviation (n - 1), as llama-bench reports them. */
export function meanSd(samples: number[]): { mean: number; sd: number } {
  const n = samples.length;
  if (n === 0) return { mean: 0, sd: 0 };
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, sd: Math.sqrt(variance) };
}

function runWorker(spec: WorkerSpec, progress: (message: string) => void): Promise<WorkerReply> {
  const worker = fileURLToPath(new URL('./worker.js', import.meta.url));
  return new Promise((resolve, reject) => {
    // stdout stays closed: nothing a worker or llama.cpp prints may mix into --json output.
    const child = fork(worker, [JSON.stringify(spec)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let reply: WorkerReply | undefined;
    progress(`loading ${spec.engine === 'peer' ? 'the peer (node-llama-cpp)' : 'bonsai'}`);
    child.on('message', (m: WorkerReply | WorkerProgress) => {
      if ('progress' in m) progress(m.progress);
      else reply = m;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (reply) resolve(reply);
      else reject(new Error(`the ${spec.engine} benchmark process ended without a result (${signal ?? `exit code ${code}`})`));
    });
  });
}

/** The --json document, keys exactly as issue #4 specifies them. */
export function benchJson(r: BenchReport): object {
  return {
    bandwidth_gbps: round(r.bandwidthGbps, 2),
    load_ms: round(r.bonsai.loadMs, 1),
    rss_mb: round(r.bonsai.rssMb, 1),
    peer_rss_mb: r.peer ? round(r.peer.rssMb, 1) : null,
    results: r.rows.map((row) => ({
      test: row.test,
      threads: row.threads,
      ...(row.parallel !== undefined ? { parallel: row.parallel, aggregate_tokens_per_s: round(row.aggregateTokensPerS!, 2) } : {}),
      tokens_per_s: round(row.tokensPerS, 2),
      sd: round(row.sd, 2),
      bw_fraction: round(row.bwFraction, 4),
      peer_tokens_per_s: row.peerTokensPerS === null ? null : round(row.peerTokensPerS, 2),
      ratio: row.ratio === null ? null : round(row.ratio, 3),
    })),
  };
}

/** A llama-bench-like markdown table with the bandwidth context above and memory below. */
export function formatBench(r: BenchReport): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  const bw = r.bandwidth
    .map((b) => {
      const after = r.bandwidthAfter.find((a) => a.threads === b.threads);
      return `${b.gbps.toFixed(1)}${after ? ` / ${after.gbps.toFixed(1)}` : ''} GB/s with ${b.threads} thread${b.threads > 1 ? 's' : ''}`;
    })
    .join(', ');
  const drift = bandwidthDrift([...r.bandwidth, ...r.bandwidthAfter]);
  const ceiling = (r.bandwidthGbps * 1e9) / r.bytesPerToken;
  const lines = [
    `model: ${r.model}`,
    `  ${count(r.params)} parameters, ${mib(r.weightBytes)} of weights, ${mib(r.bytesPerToken)} read per generated token`,
    `memory read bandwidth (before / after the runs): ${bw}; roofline ${r.bandwidthGbps.toFixed(1)} GB/s = ${ceiling.toFixed(1)} tokens/s for generation`,
    ...(drift ? [`warning: ${drift}`] : []),
    `kernels: ${r.bonsai.kernels}${r.peer ? `; peer: ${r.peer.kernels}` : ''}`,
    '',
  ];
  const together = r.rows.some((row) => (row.parallel ?? 1) > 1);
  const header = ['test', 'threads', 'bonsai t/s', 'weights GB/s', 'of roofline'];
  if (together) header.splice(2, 0, 'streams', 'all streams t/s');
  if (r.peer) header.push('peer t/s', 'ratio');
  const table = r.rows.map((row) => {
    const cells = [row.test, String(row.threads), pm(row.tokensPerS, row.sd), row.weightGBps.toFixed(2), `${(row.bwFraction * 100).toFixed(1)}%`];
    if (together) cells.splice(2, 0, row.parallel === undefined ? '-' : String(row.parallel), row.aggregateTokensPerS === undefined ? '-' : row.aggregateTokensPerS.toFixed(2));
    if (r.peer) cells.push(row.peerTokensPerS === null ? '-' : pm(row.peerTokensPerS, row.peerSd ?? 0), row.ratio === null ? '-' : `${row.ratio.toFixed(2)}x`);
    return cells;
  });
  lines.push(...markdownTable(header, table), '');
  const mem = (w: WorkerResult) => `load ${w.loadMs.toFixed(0)} ms, first token ${w.firstTokenMs.toFixed(0)} ms after start, peak RSS ${w.rssMb.toFixed(1)} MiB`;
  lines.push(`bonsai: ${mem(r.bonsai)} (context ${r.contextSize}, ${r.kvType} KV cache)`);
  if (r.peer) lines.push(`peer:   ${mem(r.peer)} (context ${r.contextSize}, f16 KV cache)`);
  if (r.peerUnavailable) lines.push(`peer unavailable: ${r.peerUnavailable}`);
  return `${lines.join('\n')}\n`;
}

/** 260 K, 1.72 B: a parameter count at the scale it has. */
function count(n: number): string {
  const [div, unit] = n >= 1e9 ? [1e9, 'B'] : n >= 1e6 ? [1e6, 'M'] : [1e3, 'K'];
  return `${(n / div).toFixed(n >= 1e9 ? 2 : 1)} ${unit}`;
}

function pm(mean: number, sd: number): string {
  return `${mean.toFixed(2)} ± ${sd.toFixed(2)}`;
}

function markdownTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < 2 ? `-${'-'.repeat(w)}-` : `-${'-'.repeat(w)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)];
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
