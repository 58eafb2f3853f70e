// The compiled addon (native/napi/) and the types of what it returns. Everything that
// touches the native engine goes through this module; nothing else loads the .node file.
import { createRequire } from 'node:module';
import path from 'node:path';
import { PACKAGE_ROOT, PREBUILD_DIR, chooseBinary } from './prebuilds.js';

/** A GGUF metadata value. Numeric arrays come as typed arrays (u64/i64 as BigInt64Array etc.). */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | string[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[];

export interface GgufTensorInfo {
  name: string;
  /** ggml type id and name (e.g. 41, "q1_0"). */
  type: number;
  typeName: string;
  /** dims[0] is the row length. */
  dims: number[];
  /** Offset relative to the data section, and size in bytes. */
  offset: number;
  bytes: number;
}

export interface GgufFileInfo {
  version: number;
  alignment: number;
  dataOffset: number;
  fileSize: number;
  /** Keys in file order; `metadataTypes` gives each key's GGUF value type name (e.g. "u32", "array<string>"). */
  metadata: Record<string, GgufValue>;
  metadataTypes: Record<string, string>;
  tensors: GgufTensorInfo[];
  /** Set when the file is a .bnz pack (then the rest describes the GGUF inside it). */
  pack?: { identity: number; chunks: number; bytes: number };
}

/** Bytes per stream kind of a pack (see native/pack/codec.h). */
export interface PackStreams {
  scales: number;
  signs: number;
  ternary: number;
  values: number;
  overhead: number;
}

export interface ModelHparams {
  arch: 'llama' | 'qwen3';
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  nCtxTrain: number;
  nRot: number;
  ropeNeox: boolean;
  qkNorm: boolean;
  tiedOutput: boolean;
  ropeBase: number;
  rmsEps: number;
}

export interface SamplingParams {
  /** <= 0: greedy. */
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  repeatLastN: number;
  seed: number;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerateStats {
  nPrompt: number;
  nPromptReused: number;
  nGenerated: number;
  /** Speculative decoding: draft tokens checked, and of those accepted. */
  nDrafted: number;
  nAccepted: number;
  promptMs: number;
  genMs: number;
  finish: FinishReason;
}

export interface NativeContext {
  readonly nCtx: number;
  readonly nPast: number;
  /** Evaluates tokens after the current ones; resolves to [n][vocab] logits if allLogits, else [vocab]. */
  eval(tokens: Int32Array, allLogits: boolean): Promise<Float32Array>;
  /**
   * Generates after `prompt` (reusing the KV of the longest common prefix with what the context
   * holds). onToken is called on the JS thread for every token as it is sampled. Runs on a worker
   * thread; one call at a time per context.
   */
  generate(
    prompt: Int32Array,
    /** draftMax > 0: speculative decoding by prompt lookup, at most that many draft tokens per step (below 256). */
    options: { maxTokens: number; stopIds: Int32Array; sampling: SamplingParams; draftMax?: number },
    onToken: (token: number) => void,
  ): Promise<GenerateStats>;
  /** Asks a running generate() to stop before its next token. */
  cancel(): void;
  truncate(nPast: number): void;
  setThreads(n: number): void;
  /**
   * At most n of the context's threads work from the next pass on (results do not depend on it).
   * Callable while eval() or generate() runs: a hot board sheds load between tokens.
   */
  limitThreads(n: number): void;
  /** While paused, a running generate() waits before its next token (cancel() still ends it). */
  pause(paused: boolean): void;
  tokens(): Int32Array;
  /**
   * Bytes of the KV block of `nTokens` positions (every layer's K and V rows, in this context's KV
   * type). Callable while a worker runs. RangeError outside [0, nCtx].
   */
  kvBytes(nTokens: number): number;
  /**
   * A copy of the KV block of positions [pos, pos + n): layer after layer, the layer's n key rows
   * then its n value rows, each row nHeadKv * headDim F32 or raw fp16 values in the host's byte
   * order. Importing it after the same tokens reproduces the logits of evaluating them bit for
   * bit, given the same model file, KV type and kernel path (the attention kernels of two paths
   * round differently). Synchronous. RangeError unless 0 <= pos and pos + n <= nPast; Error while
   * eval() or generate() runs.
   */
  kvExport(pos: number, n: number): Buffer;
  /**
   * Appends `tokens` at nPast as if they had been evaluated: their KV rows from `data` (a Buffer
   * or any Uint8Array, as kvExport made it) and their ids, so that generate() reuses them as a
   * prompt prefix. Synchronous. RangeError (context unchanged) on a token id outside the vocabulary,
   * overflow of nCtx, or data.byteLength !== kvBytes(tokens.length); Error while eval() or
   * generate() runs.
   */
  kvImport(tokens: Int32Array, data: Uint8Array): void;
  /**
   * Speculative decoding with a draft model: `drafter` (a context of a smaller model with the same
   * vocabulary, used by nothing else) proposes the drafts of generate() calls with draftMax > 0,
   * instead of prompt lookup; null detaches it. Error when the vocabularies differ. A drafter
   * cannot be closed while attached.
   */
  setDrafter(drafter: NativeContext | null): void;
  close(): void;
}

export interface NativeModel {
  readonly hparams: ModelHparams;
  /** The kernel path chosen for this model (e.g. "avx2", "dotprod", "scalar"). */
  readonly kernels: string;
  /** The path and whose kernels run its matrices: "avx2", or "avx512 (avx2 kernels)" for a path without kernels of its own. */
  readonly kernelsLabel: string;
  /**
   * How the load went: its time (ms), the runtime image's fate, and the weights locked in memory
   * when asked (see LoadInfo in engine.ts).
   */
  readonly load: { ms: number; image: 'off' | 'used' | 'written' | 'not-written'; imageNote: string; lockedBytes: number; lockError: string };
  /**
   * batchWith: a context of this model to decode together with (see ContextGroup in engine.ts):
   * generations and evals that run at the same time on contexts batched together share each
   * forward pass, on the group's threads (those of the first context), and each gets the results
   * it would get alone. threads is then ignored.
   */
  createContext(options: { nCtx: number; kvType: 'f32' | 'f16'; threads: number; batchWith?: NativeContext }): NativeContext;
  close(): void;
}

export type PackProgress = (done: number, total: number) => void;

export interface NativeAddon {
  /** Parses a GGUF file's header, metadata and tensor table (throws Error with a clear message). */
  ggufRead(file: string): GgufFileInfo;
  /** Packs a GGUF into a .bnz on `threads` threads; progress reports GGUF bytes done and total. */
  packWrite(gguf: string, out: string, level: number, threads: number, onProgress: PackProgress): Promise<{ decoded: PackStreams; coded: PackStreams }>;
  /** Checks every chunk of a pack; rejects naming the first damaged chunk and its tensor. */
  packVerify(pack: string, threads: number, onProgress: PackProgress): Promise<object>;
  /** Restores a pack's GGUF byte for byte. */
  packUnpack(pack: string, out: string, threads: number, onProgress: PackProgress): Promise<object>;
  /**
   * Maps and binds a model on a worker thread; with mlock, then locks its weights in memory (a
   * refusal is load.lockError, not a failed load).
   */
  loadModel(file: string, options: { kernels?: string; image?: string; imageKey?: string; mlock?: boolean }): Promise<NativeModel>;
  /**
   * Kernel paths this CPU supports, best last, the one that would be chosen now, and its label for
   * weights of `type` (default q1_0): whose kernels run them, e.g. "avx512 (avx2 kernels)".
   */
  kernelPaths(type?: string): { supported: string[]; selected: string; selectedLabel: string };
  /**
   * The page size the engine aligns its mappings and madvise ranges to: the kernel's (16384 on a
   * Raspberry Pi 5's kernel), or a larger BONSAI_TEST_PAGE_SIZE a test set.
   */
  pageSize(): number;
  /** Memory read bandwidth (1e9 bytes/s): `threads` threads sum `bytes` of memory, best and mean of `reps` passes. */
  memoryBandwidth(bytes: number, threads: number, reps: number): { bestGBps: number; meanGBps: number };
  /** Times bn_matmul on random weights (native/tools/kernel_bench.c); throws on an unknown type or path. */
  kernelBench(spec: KernelBenchSpec): KernelBenchResult;
  /**
   * Sends `state` ("KEY=value" lines, e.g. "READY=1\nSTATUS=online", 1 to 4096 bytes) to the
   * service manager at $NOTIFY_SOCKET (sd_notify; a path or an @abstract name). True when sent,
   * false when NOTIFY_SOCKET is unset or empty; throws an Error "cannot notify systemd at SOCKET:
   * reason" when it cannot be sent, and a TypeError for a state that is not a string or holds NUL.
   */
  notify(state: string): boolean;
  /** The CPUs this thread may run on, ascending (sched_getaffinity). */
  cpuAffinity(): number[];
  /**
   * Moves every thread of the process onto `cpus` (threads started later inherit it); returns how
   * many moved. Throws an Error saying why the kernel refused (EINVAL: none of them can take a
   * thread; EPERM: a seccomp filter, as the service unit's, forbids it).
   */
  setCpuAffinity(cpus: number[]): number;
  /** The distillation trainer (native/train/trainer.h); throws on a bad config or an unreadable teacher. */
  Trainer: new (config: TrainerConfig, teacherPath: string | null) => NativeTrainer;
}

export interface TrainerShape {
  vocab: number;
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The output matrix is token_embd. */
  tied: boolean;
  ropeBase: number;
  normEps: number;
}

export interface TrainerConfig {
  shape: TrainerShape;
  /** Positions per training sequence; a sequence holds seqLen + 1 token ids. */
  seqLen: number;
  /** Matrices are sign x per-128 scale in the forward pass (quantization-aware training). */
  quantize: boolean;
  threads: number;
  lr: number;
  lrMin: number;
  warmupSteps: number;
  totalSteps: number;
  beta1: number;
  beta2: number;
  adamEps: number;
  weightDecay: number;
  /** Global gradient-norm clip; 0 = none. */
  clip: number;
  klWeight: number;
  ceWeight: number;
  initStd: number;
  seed: number;
}

export interface TrainStepMetrics {
  loss: number;
  /** KL(teacher || student) per position. */
  kl: number;
  /** The student's NLL of the data per position. */
  nll: number;
  gradNorm: number;
  lr: number;
  /** Steps done, this one included. */
  step: number;
}

export interface TrainerState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  steps: number;
}

export interface NativeTrainer {
  /** One AdamW step on `batch` sequences of seqLen + 1 ids each; one job at a time. */
  step(tokens: Int32Array, batch: number): Promise<TrainStepMetrics>;
  /** Sum of NLL over positions 1..n-1 of one sequence (n <= seqLen + 1), by the student or the teacher. */
  score(tokens: Int32Array, teacher?: boolean): Promise<number>;
  /** Tensors in parameter-buffer order, GGUF-named; cols is the row length. */
  tensors(): { name: string; cols: number; rows: number; offset: number }[];
  getState(): TrainerState;
  setState(state: TrainerState): void;
  /** The weights as the forward pass uses them: sign x scale matrices when quantizing. */
  weights(): Float32Array;
  lrAt(step: number): number;
  close(): void;
}

export interface KernelBenchSpec {
  /** ggml type name, e.g. "q1_0". */
  type: string;
  rows: number;
  cols: number;
  /** Tokens per product: 1 = GEMV (decode), more = GEMM (prefill). */
  batch: number;
  /** Kernel path name, e.g. "avx2". */
  path: string;
  threads: number;
  /** Repeat until this much time has been measured. */
  minMs: number;
  /** GEMV: rotate over copies of the matrix totalling at least this many bytes (defeats the caches). */
  streamBytes: number;
}

export interface KernelBenchResult {
  /** The path and whose kernels ran, e.g. "avx512 (avx2 kernels)". */
  kernelsLabel: string;
  /** Fastest single product. */
  bestMs: number;
  /** Weight bytes x batch per best time, 1e9/s. */
  gbps: number;
  /** Best time per 128 weights per token. */
  nsPerBlock: number;
  /** Load-time repacking of one matrix for this path (0 and 0 bytes when it reads the file layout). */
  packMs: number;
  packedBytes: number;
  iterations: number;
}

/** The addon file loaded: this machine's build, or the package's prebuilt one (src/prebuilds.ts). */
export const addonPath = chooseBinary(
  'the bonsai-edge addon (bonsai.node)',
  [path.join(PACKAGE_ROOT, 'build', 'Release', 'bonsai.node'), path.join(PREBUILD_DIR, 'bonsai.node')],
  'npm rebuild bonsai-edge (needs cmake and a C/C++ compiler)',
);

export const native: NativeAddon = createRequire(import.meta.url)(addonPath) as NativeAddon;
