// One side of `bonsai bench`, run in its own process so each engine's peak RSS is its own: this
// engine or the peer (node-llama-cpp). Takes a WorkerSpec as JSON in argv[2], sends one
// WorkerReply over IPC, and exits.
import { Model } from '../engine/engine.js';
import { peerModuleUrl } from './peer.js';

export interface WorkerSpec {
  engine: 'bonsai' | 'peer';
  model: string;
  threads: number[];
  /** tg with this many generations decoded together (bonsai; the peer runs 1). */
  parallel: number[];
  /** tg after a context already holding this many tokens (0: a one-token prompt). */
  depth: number[];
  /** Prompt tokens for the pp test and generated tokens for tg (0 skips the test). */
  prompt: number;
  gen: number;
  reps: number;
  contextSize: number;
  kvType: 'f32' | 'f16';
  /** Forced kernel path (bonsai only). */
  kernels?: string;
  /** Vocabulary size: random prompt ids are drawn below it. */
  vocab: number;
}

export interface WorkerRun {
  test: string;
  threads: number;
  /** tokens/s of each repetition (after one warm-up run that is not counted); tg: per stream. */
  samples: number[];
  /** tg: the generations decoded together, and each repetition's tokens/s of all of them. */
  parallel?: number;
  aggregateSamples?: number[];
}

export interface WorkerResult {
  loadMs: number;
  /** Load, then one token from a one-token prompt: what a user waits for at start-up. */
  firstTokenMs: number;
  rssMb: number;
  kernels: string;
  runs: WorkerRun[];
}

export type WorkerReply = { ok: true; result: WorkerResult } | { ok: false; error: string };
/** Sent before each test, so a long run shows where it is. */
export interface WorkerProgress {
  progress: string;
}

/** The operations a benchmark needs, implemented by each engine. */
interface Engine {
  kernels: string;
  setThreads(n: number): Promise<void>;
  /** Evaluates a fresh sequence of these ids; returns milliseconds. */
  prompt(ids: number[]): Promise<number>;
  /** Generates n tokens after a fresh sequence of these ids (untimed); returns milliseconds for the n. */
  generate(prefix: number[], n: number): Promise<number>;
  /** Most generations it decodes together. */
  parallel: number;
  /**
   * Generates n tokens after each of several fresh sequences, all at once; returns each one's
   * milliseconds for its n, and the milliseconds from the first start to the last end.
   */
  generateTogether(prefixes: number[][], n: number): Promise<{ each: number[]; wallMs: number }>;
  close(): Promise<void>;
}

/** Opens an engine on the model; loadMs times the model load alone, not library start-up. */
type Opener = (spec: WorkerSpec) => Promise<{ engine: Engine; loadMs: number }>;

async function measure(spec: WorkerSpec, open: Opener): Promise<WorkerResult> {
  const { engine, loadMs } = await open(spec);
  const ids = new TokenSource(spec.vocab);
  const t0 = performance.now();
  await engine.setThreads(spec.threads[0]!);
  await engine.generate(ids.sequence(1), 1);
  const firstTokenMs = loadMs + performance.now() - t0;
  const runs: WorkerRun[] = [];
  for (const threads of spec.threads) {
    await engine.setThreads(threads);
    const progress = (test: string) => process.send?.({ progress: `${spec.engine}: ${test} with ${threads} thread(s)` } satisfies WorkerProgress);
    if (spec.prompt > 0) {
      progress(`pp${spec.prompt}`);
      runs.push({ test: `pp${spec.prompt}`, threads, samples: await repeat(spec.reps, () => engine.prompt(ids.sequence(spec.prompt)), spec.prompt) });
    }
    for (const parallel of spec.gen > 0 ? spec.parallel.filter((p) => p <= engine.parallel) : []) {
      for (const depth of spec.depth) {
        // llama-bench's name for a test at a depth
        const test = `tg${spec.gen}${depth > 0 ? ` @ d${depth}` : ''}`;
        progress(`${test}${parallel > 1 ? ` x${parallel}` : ''}`);
        const run = { test, threads, parallel };
        const prefixes = () => ids.sequences(parallel, depth + 1);
        if (parallel === 1) runs.push({ ...run, ...perStreamAndAll(await repeat(spec.reps, () => engine.generate(prefixes()[0]!, spec.gen), spec.gen), 1) });
        else runs.push({ ...run, ...(await repeatTogether(spec.reps, () => engine.generateTogether(prefixes(), spec.gen), spec.gen)) });
      }
    }
  }
  await engine.close();
  return { loadMs, firstTokenMs, rssMb: process.resourceUsage().maxRSS / 1024, kernels: engine.kernels, runs };
}

/** One warm-up run, then `reps` timed ones, as tokens/s. */
async function repeat(reps: number, run: () => Promise<number>, tokens: number): Promise<number[]> {
  await run();
  const out: number[] = [];
  for (let r = 0; r < reps; r++) out.push((tokens * 1000) / (await run()));
  return out;
}

/** Samples of one stream alone: all streams' rate is its own. */
function perStreamAndAll(samples: number[], streams: number): { samples: number[]; aggregateSamples: number[] } {
  return { samples, aggregateSamples: samples.map((s) => s * streams) };
}

/** `repeat` for generations decoded together: each stream's mean tokens/s, and all streams' tokens over the wall time. */
async function repeatTogether(reps: number, run: () => Promise<{ each: number[]; wallMs: number }>, tokens: number): Promise<{ samples: number[]; aggregateSamples: number[] }> {
  await run();
  const samples: number[] = [];
  const aggregateSamples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const { each, wallMs } = await run();
    samples.push(each.reduce((sum, ms) => sum + (tokens * 1000) / ms, 0) / each.length);
    aggregateSamples.push((each.length * tokens * 1000) / wallMs);
  }
  return { samples, aggregateSamples };
}

/** Random token ids, as llama-bench uses; an LCG is plenty for that. */
class TokenSource {
  private state = 0x2545f491;
  private lastFirst = -1;
  constructor(private readonly vocab: number) {}

  /** n ids whose first differs from the previous sequence's: no engine can reuse a cached prefix. */
  sequence(n: number): number[] {
    const ids = Array.from({ length: n }, () => this.random());
    while (ids[0] === this.lastFirst) ids[0] = this.random();
    this.lastFirst = ids[0]!;
    return ids;
  }

  /** count fresh sequences of n ids, each starting differently from the one before. */
  sequences(count: number, n: number): number[][] {
    return Array.from({ length: count }, () => this.sequence(n));
  }

  private random(): number {
    this.state = (Math.imul(this.state, 1103515245) + 12345) >>> 0;
    return (this.state >>> 8) % this.vocab;
  }
}

async function openBonsai(spec: WorkerSpec): Promise<{ engine: Engine; loadMs: number }> {
  const model = await Model.load(spec.model, {
    threads: spec.threads[0]!,
    parallel: Math.max(...spec.parallel),
    contextSize: spec.contextSize,
    kvType: spec.kvType,
    ...(spec.kernels !== undefined ? { kernels: spec.kernels } : {}),
  });
  const greedy = { temperature: 0 };
  const engine: Engine = {
    kernels: model.kernelsLabel,
    setThreads: async (n) => model.setThreads(n),
    prompt: async (ids) => (await model.generate({ promptIds: ids, maxTokens: 0, sampling: greedy })).timings.promptMs,
    // n + 1 samples make n evaluations: the last sampled token is never evaluated.
    generate: async (prefix, n) => (await model.generate({ promptIds: prefix, maxTokens: n + 1, ignoreEog: true, sampling: greedy })).timings.genMs,
    parallel: model.parallel,
    async generateTogether(prefixes, n) {
      const t0 = performance.now();
      const results = await Promise.all(prefixes.map((prefix) => model.generate({ promptIds: prefix, maxTokens: n + 1, ignoreEog: true, sampling: greedy })));
      return { each: results.map((r) => r.timings.genMs), wallMs: performance.now() - t0 };
    },
    close: async () => model.close(),
  };
  return { engine, loadMs: model.loadMs };
}

/** The slice of node-llama-cpp's API used here (it is an optional dependency: no compile-time types). */
interface PeerSequence {
  clearHistory(): Promise<void>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number }): AsyncGenerator<number, void, void>;
}
interface PeerContext {
  getSequence(): PeerSequence;
  dispose(): Promise<void>;
}
interface PeerModel {
  createContext(o: { contextSize: number; threads: number; batchSize: number }): Promise<PeerContext>;
  dispose(): Promise<void>;
}
interface PeerModule {
  getLlama(o: Record<string, unknown>): Promise<{ loadModel(o: { modelPath: string; gpuLayers: number }): Promise<PeerModel>; buildType: string }>;
}

async function openPeer(spec: WorkerSpec): Promise<{ engine: Engine; loadMs: number }> {
  const url = peerModuleUrl();
  if (!url) throw new Error('node-llama-cpp is not installed: run scripts/install-peer.sh');
  const peer = (await import(url)) as PeerModule;
  // Prebuilt CPU binary only: never download or compile llama.cpp; maxThreads 0 makes `threads` exact.
  const llama = await peer.getLlama({ gpu: false, build: 'never', maxThreads: 0, logLevel: 'error', progressLogs: false });
  const started = performance.now();
  const model = await llama.loadModel({ modelPath: spec.model, gpuLayers: 0 });
  const loadMs = performance.now() - started;
  let context: PeerContext | undefined;
  let sequence: PeerSequence | undefined;
  const engine: Engine = {
    kernels: `llama.cpp (${llama.buildType})`,
    parallel: 1,
    generateTogether: () => Promise.reject(new Error('the peer runs one generation at a time here')),
    async setThreads(n) {
      await context?.dispose();
      const longest = Math.max(spec.prompt, ...spec.depth);
      context = await model.createContext({ contextSize: spec.contextSize, threads: n, batchSize: Math.max(1, Math.min(longest, 512)) });
      sequence = context.getSequence();
    },
    async prompt(ids) {
      await sequence!.clearHistory();
      const t0 = performance.now();
      await sequence!.evaluateWithoutGeneratingNewTokens(ids);
      return performance.now() - t0;
    },
    async generate(prefix, n) {
      await sequence!.clearHistory();
      if (prefix.length > 1) await sequence!.evaluateWithoutGeneratingNewTokens(prefix.slice(0, -1));
      const tokens = sequence!.evaluate(prefix.slice(-1), { temperature: 0 });
      await tokens.next(); // evaluates the prefix's last token and samples the first token
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await tokens.next();
      const ms = performance.now() - t0;
      await tokens.return();
      return ms;
    },
    async close() {
      await context?.dispose();
      await model.dispose();
    },
  };
  return { engine, loadMs };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as WorkerSpec;
  let reply: WorkerReply;
  try {
    reply = { ok: true, result: await measure(spec, spec.engine === 'bonsai' ? openBonsai : openPeer) };
  } catch (e) {
    reply = { ok: false, error: (e as Error).message };
  }
  process.send!(reply, () => process.exit(0));
}

if (process.send) await main();
