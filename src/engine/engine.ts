// The engine as the rest of the program sees it: a loaded model with its tokenizer, its contexts
// (KV caches: one per generation that may run at once, decoded together) and the
// generation/scoring calls. Inference runs on native worker threads; this module only prepares
// token ids, streams text back and hands each call a free context.
import { native, type FinishReason as NativeFinish, type GgufFileInfo, type ModelHparams, type NativeContext, type NativeModel, type SamplingParams } from '../native.js';
import { readGguf } from '../gguf/reader.js';
import { createTokenizer, type Tokenizer } from './tokenizer/index.js';
import { EngineError } from '../errors.js';
import { CHATML_TEMPLATE } from '../gguf/chat-template.js';
import { ChatTemplate, opensThinking, ThinkSplitter, type ChatMessage } from './chat.js';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { blockHashes, chainRoot, DEFAULT_BLOCK_TOKENS, type PrefixSettings, type PrefixStore } from './prefix.js';
import { SAMPLING_DEFAULTS } from './sampling.js';

export type { SamplingParams } from '../native.js';

/** Why a generation ended: an end token or stop string, max_tokens, a full context, or a cancel. */
export type FinishReason = 'stop' | 'length' | 'context' | 'cancelled';

export interface LoadOptions {
  threads?: number;
  /** Context size in tokens (default: min(training context, 4096)). */
  contextSize?: number;
  kvType?: 'f32' | 'f16';
  /** Force a kernel path (scalar, avx2, ...); default: the best this CPU supports. */
  kernels?: string;
  /**
   * Generations that may run at once (default 1), each with its own KV cache of contextSize
   * tokens. Those running together are decoded together: every forward pass serves all of them,
   * so each weight read from memory serves several tokens.
   */
  parallel?: number;
  /**
   * A smaller model with the same vocabulary that drafts for speculative decoding (requests with
   * `draft`), instead of prompt lookup: e.g. the bundled model for the stories260K teacher, or a
   * small Bonsai for a larger one. Loaded with one thread per generation.
   */
  draftModel?: string;
  /**
   * A runtime image (native/model/image.h) to run the weights from: mapped in place when it
   * matches `key` and this kernel path, else built by this load.
   */
  image?: { path: string; key: string };
  /**
   * Lock the weights in memory once loaded, so that memory pressure never pages them out (a token
   * would then wait for the disk). A refusal (RLIMIT_MEMLOCK, no memory) is loadInfo.lockError;
   * the model runs all the same.
   */
  mlock?: boolean;
}

/** How the weights were made ready: the load's time, what became of the runtime image, and whether they are locked in memory. */
export interface LoadInfo {
  ms: number;
  image: 'off' | 'used' | 'written' | 'not-written';
  /** Why an image there was not used, or could not be written ('' when none). */
  imageNote: string;
  /** Bytes of weights locked in memory (0 unless asked with mlock, or refused). */
  lockedBytes: number;
  /** Why mlock was refused ('' when it was not asked for or succeeded). */
  lockError: string;
}

export type { ChatMessage } from './chat.js';

export interface GenerateRequest {
  /** Plain completion of this text (BOS added per the model's tokenizer). */
  prompt?: string;
  /** Chat messages, rendered with the model's chat template (ChatML if it has none). */
  messages?: ChatMessage[];
  /**
   * Chat only: let a model with a thinking switch (Qwen3) reason first. The reasoning comes back
   * in `thinking` and onThinking, never in `text`. Default false: no reasoning reaches the user.
   */
  enableThinking?: boolean;
  /** Token ids to continue from, used as is (no BOS added). */
  promptIds?: number[];
  maxTokens: number;
  sampling?: Partial<SamplingParams>;
  /** Generation ends when the text contains one of these; the stop string is not returned. */
  stop?: string[];
  /** Keep generating past end-of-generation tokens (benchmarks, like llama.cpp's --ignore-eos). */
  ignoreEog?: boolean;
  /**
   * Speculative decoding by prompt lookup (0 or absent: off): up to this many tokens that followed
   * an earlier occurrence of the text's last few tokens are checked in one batch with the next
   * one. The output is unchanged (for a sampling seed too); it pays where the
   * answer repeats the prompt (extraction, summaries, code edits). Below 256.
   */
  draft?: number;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  /** Called with each new piece of text as soon as it is complete UTF-8. */
  onText?: (text: string) => void;
  /** Chat with enableThinking: called with each new piece of the model's reasoning. */
  onThinking?: (text: string) => void;
}

export interface GenerateResult {
  text: string;
  /** The reasoning, when the request enabled thinking. */
  thinking?: string;
  finishReason: FinishReason;
  promptIds: number[];
  ids: number[];
  timings: {
    /** Prompt tokens not evaluated: their KV came from the context or the prefix cache. */
    cachedTokens: number;
    promptMs: number;
    promptTokensPerS: number;
    genMs: number;
    genTokensPerS: number;
    /** Speculative decoding: draft tokens checked, and of those accepted. */
    draftedTokens: number;
    acceptedTokens: number;
  };
}

/** A context and whether a call holds it. */
interface Slot {
  readonly context: NativeContext;
  busy: boolean;
  /** Its draft model's context, when there is a draft model. */
  readonly drafter?: NativeContext;
}

export class Model {
  private prefix: { store: PrefixStore; blockTokens: number; root: string } | undefined;
  private chat: ChatTemplate | undefined;
  private eog: number[] | undefined;

  private constructor(
    readonly file: string,
    readonly info: GgufFileInfo,
    readonly tokenizer: Tokenizer,
    private readonly nativeModel: NativeModel,
    private readonly slots: Slot[],
    private readonly draftModel: NativeModel | undefined,
    readonly loadMs: number,
    readonly kvType: 'f32' | 'f16',
    private contextThreads: number,
  ) {}

  /** The threads the context was made (or last set) with. */
  get threads(): number {
    return this.contextThreads;
  }

  static async load(file: string, options: LoadOptions = {}): Promise<Model> {
    const started = performance.now();
    // The native load (mapping, repacking) runs on a worker thread while this one reads the
    // metadata and builds the tokenizer: start-up takes the longer of the two, not their sum.
    const loading = native.loadModel(file, {
      kernels: options.kernels ?? '',
      ...(options.image ? { image: options.image.path, imageKey: options.image.key } : {}),
      ...(options.mlock ? { mlock: true } : {}),
    });
    let info: GgufFileInfo;
    let tokenizer: Tokenizer;
    try {
      info = readGguf(file);
      tokenizer = createTokenizer(info.metadata);
    } catch (err) {
      // Report this error (it names the metadata problem), not the native one, and free the model.
      await loading.then((m) => m.close(), () => undefined);
      throw err;
    }
    const nativeModel = await loading;
    const trained = nativeModel.hparams.nCtxTrain || Infinity;
    const threads = options.threads ?? defaultThreads();
    const parallel = options.parallel ?? 1;
    const contexts: NativeContext[] = [];
    const drafters: NativeContext[] = [];
    let draftModel: NativeModel | undefined;
    try {
      if (!Number.isInteger(parallel) || parallel < 1) throw new EngineError('bad_request', `parallel must be a whole number of at least 1, got ${parallel}`);
      if (options.contextSize !== undefined && options.contextSize > trained) {
        // Positions past the training context give garbage (no RoPE scaling here): say so, never shrink silently.
        throw new EngineError('bad_request', `context size ${options.contextSize} is larger than this model was trained for (${trained} tokens): use at most ${trained}`);
      }
      const shape = { nCtx: options.contextSize ?? Math.min(trained, 4096), kvType: options.kvType ?? 'f32', threads } as const;
      for (let i = 0; i < parallel; i++) contexts.push(nativeModel.createContext(i ? { ...shape, batchWith: contexts[0] } : shape));
      if (options.draftModel !== undefined) {
        draftModel = await native.loadModel(options.draftModel, { kernels: options.kernels ?? '' });
        const draftContext = Math.min(draftModel.hparams.nCtxTrain || shape.nCtx, shape.nCtx);
        for (const context of contexts) {
          drafters.push(draftModel.createContext({ nCtx: draftContext, kvType: shape.kvType, threads: 1 }));
          try {
            context.setDrafter(drafters[drafters.length - 1]!);
          } catch (err) {
            throw new EngineError('bad_request', `draft model ${options.draftModel}: ${(err as Error).message.replace(/^setDrafter\(context\): /, '')}`);
          }
        }
      }
    } catch (err) {
      for (const context of contexts) context.close();
      for (const drafter of drafters) drafter.close();
      draftModel?.close();
      nativeModel.close();
      throw err;
    }
    const slots = contexts.map((context, i) => ({ context, busy: false, ...(drafters[i] ? { drafter: drafters[i] } : {}) }));
    return new Model(file, info, tokenizer, nativeModel, slots, draftModel, performance.now() - started, options.kvType ?? 'f32', threads);
  }

  get hparams(): ModelHparams {
    return this.nativeModel.hparams;
  }
  get loadInfo(): LoadInfo {
    return this.nativeModel.load;
  }
  get kernels(): string {
    return this.nativeModel.kernels;
  }
  /** The path and whose kernels run its matrices, e.g. "avx512 (avx2 kernels)". */
  get kernelsLabel(): string {
    return this.nativeModel.kernelsLabel;
  }
  get contextSize(): number {
    return this.slots[0]!.context.nCtx;
  }
  /** Generations that may run at once. */
  get parallel(): number {
    return this.slots.length;
  }
  get name(): string {
    return modelName(this.file, this.info.metadata);
  }
  get chatTemplate(): string | undefined {
    const t = this.info.metadata['tokenizer.chat_template'];
    return typeof t === 'string' ? t : undefined;
  }

  /**
   * From now on, prompts reuse the KV rows of blocks stored in `settings.store` and store the
   * blocks they compute, so a prompt sharing a prefix with an earlier one (also in an earlier
   * process, with a persistent store) skips that prefix's prefill.
   */
  usePrefixCache(settings: PrefixSettings): void {
    const blockTokens = settings.blockTokens ?? DEFAULT_BLOCK_TOKENS;
    this.prefix = { store: settings.store, blockTokens, root: chainRoot(settings.modelIdentity, this.kvType, this.kernels, blockTokens) };
  }

  /** The contexts share one pool of threads: set it while none of them runs a call. */
  setThreads(n: number): void {
    if (this.slots.some((s) => s.busy)) throw new EngineError('busy', 'threads can be changed only while nothing runs on this model');
    this.slots[0]!.context.setThreads(n);
    this.contextThreads = n;
  }

  /**
   * Thermal control, also while a generation runs: at most n of the model's threads work from
   * the next pass on (the output does not depend on it); limitThreads(model.threads) lifts it.
   */
  limitThreads(n: number): void {
    this.slots[0]!.context.limitThreads(Math.min(n, this.threads)); // the pool all contexts share
  }

  /** Thermal control: while paused, running generations wait before their next token. */
  pause(paused: boolean): void {
    for (const { context } of this.slots) context.pause(paused);
  }

  /** The token ids of a request without chat messages: its ids as given, or its prompt text. */
  private plainPromptIds(request: GenerateRequest): number[] {
    if (request.promptIds) return request.promptIds;
    const ids = this.tokenizer.encode(request.prompt ?? '', { addSpecial: true });
    if (ids.length === 0) {
      if (this.tokenizer.bos === undefined) throw new EngineError('bad_request', 'empty prompt and the model has no BOS token');
      ids.push(this.tokenizer.bos);
    }
    return ids;
  }

  /**
   * A chat rendered with the model's template, ending with the opening of the assistant's turn,
   * and its ids (special tokens in the rendered text are parsed; BOS is added unless the
   * template wrote it).
   */
  chatPrompt(messages: ChatMessage[], enableThinking = false): { text: string; ids: number[] } {
    const tk = this.tokenizer;
    const bosText = tk.bos === undefined ? undefined : tk.tokenText(tk.bos);
    try {
      this.chat ??= new ChatTemplate(this.chatTemplate ?? CHATML_TEMPLATE, {
        bosToken: bosText,
        eosToken: tk.eos === undefined ? undefined : tk.tokenText(tk.eos),
      });
    } catch (e) {
      throw new EngineError('model_error', `the model's chat template does not parse: ${(e as Error).message}`);
    }
    let text: string;
    try {
      text = this.chat.render(messages, { enableThinking });
    } catch (e) {
      throw new EngineError('bad_request', `chat template: ${(e as Error).message}`);
    }
    const templateAddedBos = bosText !== undefined && text.startsWith(bosText);
    return { text, ids: tk.encode(text, { addSpecial: !templateAddedBos, parseSpecial: true }) };
  }

  /**
   * Renders and tokenizes a request and checks that it fits the context, without running it: a
   * caller that announces a generation (the daemon's `start`) first learns whether it can run.
   */
  prepare(request: GenerateRequest): PreparedRequest {
    const chat = request.messages ? this.chatPrompt(request.messages, request.enableThinking) : undefined;
    const promptIds = chat ? chat.ids : this.plainPromptIds(request);
    if (promptIds.length >= this.contextSize) {
      throw new EngineError('too_large', `prompt has ${promptIds.length} tokens, context holds ${this.contextSize}`);
    }
    return new PreparedRequest(request, promptIds, chat?.text);
  }

  async generate(input: GenerateRequest | PreparedRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    const { request, promptIds, chatText } = input instanceof PreparedRequest ? input : this.prepare(input);
    return this.exclusive(promptIds, async (context) => {
      // Text generated right after BOS starts the text: SentencePiece drops its leading space there.
      const startOfText = promptIds.length === 1 && promptIds[0] === this.tokenizer.bos;
      const decoder = this.tokenizer.createStreamDecoder({ startOfText });
      const stop = new StopMatcher(request.stop ?? []);
      // Chat replies may open with reasoning: it goes to onThinking if asked for, else nowhere.
      const splitter = chatText !== undefined ? new ThinkSplitter(opensThinking(chatText)) : undefined;
      let thinking = '';
      const answerOf = (piece: string, end = false): string => {
        if (!splitter) return piece;
        const parts = end ? splitter.flush(piece) : splitter.push(piece);
        if (parts.thinking && request.enableThinking) {
          thinking += parts.thinking;
          options.onThinking?.(parts.thinking);
        }
        return parts.answer;
      };
      const ids: number[] = [];
      const onAbort = () => context.cancel();
      options.signal?.addEventListener('abort', onAbort);
      let stoppedByString = false;
      try {
        if (options.signal?.aborted) context.cancel();
        this.restorePrefix(context, promptIds);
        const stats = await context.generate(
          Int32Array.from(promptIds),
          {
            maxTokens: request.maxTokens,
            stopIds: Int32Array.from(request.ignoreEog ? [] : this.eogIds()),
            sampling: { ...SAMPLING_DEFAULTS, ...request.sampling },
            draftMax: request.draft ?? 0,
          },
          (token) => {
            if (stoppedByString) return;
            ids.push(token);
            if (this.tokenizer.isEog(token)) return;
            const emitted = stop.push(answerOf(decoder.push(token)));
            if (emitted) options.onText?.(emitted);
            if (stop.matched) {
              stoppedByString = true;
              context.cancel();
            }
          },
        );
        if (!stoppedByString) {
          const rest = stop.finish(answerOf(decoder.flush(), true));
          if (rest) options.onText?.(rest);
        }
        this.savePrefix(context, promptIds);
        return {
          text: stop.text,
          ...(request.enableThinking && chatText !== undefined ? { thinking } : {}),
          finishReason: stoppedByString ? 'stop' : finishReason(stats.finish, ids.length, request.maxTokens),
          promptIds,
          ids,
          timings: {
            cachedTokens: stats.nPromptReused,
            promptMs: stats.promptMs,
            promptTokensPerS: rate(stats.nPrompt - stats.nPromptReused, stats.promptMs),
            genMs: stats.genMs,
            genTokensPerS: rate(stats.nGenerated, stats.genMs),
            draftedTokens: stats.nDrafted,
            acceptedTokens: stats.nAccepted,
          },
        };
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
      }
    });
  }

  /** Teacher-forced logits for every position: [ids.length][vocab]. Starts a fresh sequence. */
  async logits(ids: number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new EngineError('bad_request', 'no token ids given');
    if (ids.length > this.contextSize) {
      throw new EngineError('too_large', `${ids.length} ids, context holds ${this.contextSize}`);
    }
    return this.exclusive(ids, async (context) => {
      context.truncate(0);
      return context.eval(Int32Array.from(ids), true);
    });
  }

  /**
   * Teacher-forced negative log-likelihoods: element t is -log p(ids[t+1] | ids[0..t]), from a
   * fresh sequence, in double precision. Evaluates in chunks so the logits held at once stay small
   * even for a 150k-token vocabulary.
   */
  async nll(ids: number[], chunk = 64): Promise<number[]> {
    if (ids.length > this.contextSize) {
      throw new EngineError('too_large', `${ids.length} tokens, context holds ${this.contextSize}`);
    }
    return this.exclusive(ids, async (context) => {
      context.truncate(0);
      const vocab = this.hparams.nVocab;
      const out: number[] = [];
      for (let start = 0; start < ids.length - 1; start += chunk) {
        const end = Math.min(start + chunk, ids.length - 1);
        const logits = await context.eval(Int32Array.from(ids.slice(start, end)), true);
        for (let t = start; t < end; t++) {
          out.push(negLogSoftmax(logits.subarray((t - start) * vocab, (t - start + 1) * vocab), ids[t + 1]!));
        }
      }
      return out;
    });
  }

  close(): void {
    for (const { context } of this.slots) context.close(); // first: a drafter closes only once detached
    for (const { drafter } of this.slots) drafter?.close();
    this.draftModel?.close();
    this.nativeModel.close();
  }

  /**
   * Puts the stored blocks of the prompt's prefix into the context beyond what it already holds
   * (the native generation reuses whatever prefix the context shares with the prompt). The last
   * prompt token is always evaluated: its logits start the generation.
   */
  private restorePrefix(context: NativeContext, promptIds: number[]): void {
    if (!this.prefix) return;
    const { store, blockTokens, root } = this.prefix;
    const usable = Math.floor((promptIds.length - 1) / blockTokens);
    const held = Math.floor(commonPrefix(context.tokens(), promptIds) / blockTokens);
    if (held >= usable) return;
    const hashes = blockHashes(root, promptIds, blockTokens, usable);
    const found: Uint8Array[] = [];
    for (let b = held; b < usable; b++) {
      const rows = store.get(hashes[b]!);
      if (!rows) break;
      found.push(rows);
    }
    if (found.length === 0) return;
    context.truncate(held * blockTokens);
    found.forEach((rows, i) => {
      const start = (held + i) * blockTokens;
      context.kvImport(Int32Array.from(promptIds.slice(start, start + blockTokens)), rows);
    });
  }

  /** Stores the prompt's full blocks that the store does not have yet. */
  private savePrefix(context: NativeContext, promptIds: number[]): void {
    if (!this.prefix) return;
    const { store, blockTokens, root } = this.prefix;
    const blocks = Math.floor(Math.min(promptIds.length, context.nPast) / blockTokens);
    blockHashes(root, promptIds, blockTokens, blocks).forEach((hash, b) => {
      if (!store.has(hash)) store.put(hash, context.kvExport(b * blockTokens, blockTokens));
    });
  }

  /** Every end-of-generation token (Qwen3: <|im_end|> and <|endoftext|>), found once. */
  private eogIds(): number[] {
    if (!this.eog) {
      this.eog = [];
      for (let id = 0; id < this.tokenizer.vocabSize; id++) if (this.tokenizer.isEog(id)) this.eog.push(id);
    }
    return this.eog;
  }

  /**
   * Runs work on a free context: of those, the one holding the longest prefix of ids (its KV rows
   * are reused). EngineError 'busy' when every context is taken.
   */
  private async exclusive<T>(ids: number[], work: (context: NativeContext) => Promise<T>): Promise<T> {
    let best: Slot | undefined;
    let bestShared = -1;
    for (const slot of this.slots) {
      if (slot.busy) continue;
      const shared = commonPrefix(slot.context.tokens(), ids);
      if (shared > bestShared) [best, bestShared] = [slot, shared];
    }
    if (!best) {
      throw new EngineError('busy', this.slots.length === 1 ? 'another generation is running on this model' : `all ${this.slots.length} generations this model runs at once are taken`);
    }
    const slot = best;
    slot.busy = true;
    try {
      return await work(slot.context);
    } finally {
      slot.busy = false;
    }
  }
}

function commonPrefix(a: Int32Array, b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** -log softmax(row)[target], accumulated in double precision. */
function negLogSoftmax(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return Math.log(sum) + max - row[target]!;
}

/**
 * The native loop ends with "length" at max_tokens and when the context is full; short of
 * max_tokens, it was the context.
 */
function finishReason(native: NativeFinish, generated: number, maxTokens: number): FinishReason {
  return native === 'length' && generated < maxTokens ? 'context' : native;
}

/** general.name, else the file name: the one name a model goes by in replies, status and logs. */
export function modelName(file: string, metadata: Record<string, unknown>): string {
  const n = metadata['general.name'];
  return typeof n === 'string' && n ? n : path.basename(file);
}

/** The name a model file's engine will go by, read from its metadata alone; the file name when unreadable. */
export function readModelName(file: string): string {
  try {
    return modelName(file, readGguf(file).metadata);
  } catch {
    return path.basename(file);
  }
}

/** A request rendered, tokenized and checked against the context (Model.prepare). */
export class PreparedRequest {
  constructor(
    readonly request: GenerateRequest,
    readonly promptIds: number[],
    /** The rendered chat, for requests with messages. */
    readonly chatText: string | undefined,
  ) {}
}

function rate(tokens: number, ms: number): number {
  return ms > 0 ? (tokens * 1000) / ms : 0;
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** Holds back text that could be the start of a stop string, and cuts at the first full match. */
class StopMatcher {
  text = '';
  matched = false;
  private pending = '';

  constructor(private readonly stops: string[]) {}

  /** Adds text; returns what can be emitted now. */
  push(piece: string): string {
    if (this.matched || !piece) return '';
    this.pending += piece;
    for (const s of this.stops) {
      const at = s ? this.pending.indexOf(s) : -1;
      if (at >= 0) {
        this.matched = true;
        return this.emit(this.pending.slice(0, at));
      }
    }
    const keep = this.longestStopPrefixSuffix();
    return this.emit(this.pending.slice(0, this.pending.length - keep), keep);
  }

  finish(piece: string): string {
    const out = this.push(piece);
    if (this.matched) return out;
    return out + this.emit(this.pending);
  }

  private emit(out: string, keep = 0): string {
    this.pending = keep ? this.pending.slice(this.pending.length - keep) : '';
    this.text += out;
    return out;
  }

  private longestStopPrefixSuffix(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.pending.length); k > best; k--) {
        if (this.pending.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
