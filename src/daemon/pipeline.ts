// The request pipeline: an MQTT payload in, replies out. A message from a request topic is parsed
// (request.ts), offered to the interceptors (extensions that can answer it without the engine, such
// as the replay of finished requests), queued (queue.ts) and run on the engine, its text streamed
// back (replies.ts). What happens is announced as typed events — accepted, started, chunk,
// finished, failed, cancelled — which logging, health and later features listen to; the pipeline
// itself keeps no counters and writes no logs.
import { EventEmitter } from 'node:events';
import type { GenerateOptions, GenerateRequest, GenerateResult, PreparedRequest } from '../engine/engine.js';
import { EngineError } from '../errors.js';
import type { ChunkType, DoneBody, DoneReply, ErrorCode, ErrorReply } from '../protocol/messages.js';
import type { Topics } from '../protocol/topics.js';
import type { DaemonConfig } from './config.js';
import type { DaemonMqtt, DaemonPacket } from './mqtt.js';
import { Scheduler, type AbortReason, type Job } from './queue.js';
import { ReplyStream, sendReply, type Publish } from './replies.js';
import { isRejection, modelCannotServe, parseRequest, renderForModel, type ReplyRoute, type Request, type TopicDefaults } from './request.js';

/** What the daemon needs from a model: src/engine/engine.ts's Model satisfies it. */
export interface DaemonEngine {
  readonly name: string;
  readonly contextSize: number;
  readonly chatTemplate: string | undefined;
  /** Generations it runs at once (decoded together); absent: one. */
  readonly parallel?: number;
  /** Renders and tokenizes; throws EngineError too_large when the prompt cannot fit the context. */
  prepare(request: GenerateRequest): PreparedRequest;
  generate(request: PreparedRequest, options: GenerateOptions): Promise<GenerateResult>;
}

export interface RequestJob extends Job {
  request: Request;
  replies: ReplyStream;
  /** The message it came in (with its journal row). */
  packet: DaemonPacket;
  /** Set before queueing: the prompt rendered, tokenized and known to fit. */
  prepared?: PreparedRequest;
}

const SHUTTING_DOWN = 'daemon is shutting down: try again later or on another node';

/** A request that ended with an error reply: rejected before queueing (no job), or after. */
export interface RequestFailure {
  route: ReplyRoute;
  code: ErrorCode;
  message: string;
  /** rejected: refused before queueing (a corrected retry with the same id is welcome). */
  stage: 'rejected' | 'queued' | 'running';
  packet: DaemonPacket;
  job?: RequestJob;
  /** The exception behind an `internal` error. */
  error?: unknown;
}

export interface PipelineEvents {
  accepted: [job: RequestJob];
  started: [job: RequestJob];
  chunk: [job: RequestJob, type: ChunkType, text: string];
  /** result: undefined when the answer was recalled (complete()), not generated. */
  finished: [job: RequestJob, reply: DoneReply, result: GenerateResult | undefined];
  failed: [failure: RequestFailure];
  /** The job's final reply (done or error) is about to be published. */
  final: [job: RequestJob, reply: DoneReply | ErrorReply];
  cancelled: [job: RequestJob, reason: AbortReason];
  /**
   * A message that is not a request to run (retained, empty, a duplicate id in flight) or a cancel
   * that found nothing; `packet` when it came on a request topic.
   */
  ignored: [what: string, id?: string, packet?: DaemonPacket];
}

/** Answers a request instead of the engine (the job's reply stream is theirs); true when it did. */
export type Interceptor = (job: RequestJob) => boolean;

interface Source {
  /** What to subscribe to (a `$share/...` filter for the fleet topic). */
  filter: string;
  /** The name messages arrive with; subscribed to alone when the broker refuses `filter`. */
  topic: string;
  defaults: TopicDefaults;
}

export class RequestPipeline extends EventEmitter<PipelineEvents> {
  private readonly scheduler: Scheduler<RequestJob>;
  private readonly sources: Source[] = [];
  private readonly interceptors: Interceptor[] = [];
  private subscribed: string[] = [];

  constructor(
    private readonly config: DaemonConfig,
    private readonly topics: Topics,
    private readonly mqtt: DaemonMqtt,
    private readonly engine: DaemonEngine,
  ) {
    super();
    this.scheduler = new Scheduler<RequestJob>({
      max: config.queue.maxWaiting,
      parallel: engine.parallel ?? 1,
      maxRunMs: config.limits.maxRunMs,
      run: (job, signal) => this.run(job, signal),
      dropped: (job, reason) => this.dropped(job, reason),
    });
    const shared = `$share/${config.topics.sharedGroup}/${topics.fleetRequest}`;
    this.addSource(topics.request, {});
    this.addSource(topics.fleetRequest, {}, this.useSharedSubscription() ? shared : topics.fleetRequest);
    for (const cancel of [topics.cancel, topics.fleetCancel]) mqtt.handle(cancel, (payload) => this.onCancel(payload));
  }

  get depth(): number {
    return this.scheduler.depth;
  }

  /** Generations running now. */
  get active(): number {
    return this.scheduler.active;
  }

  /** A topic whose messages are requests, with what the topic implies (reply topic, streaming). */
  addSource(topic: string, defaults: TopicDefaults, filter = topic): void {
    this.sources.push({ topic, filter, defaults });
    this.mqtt.handle(topic, (payload, packet) => this.submit(payload, packet, defaults));
  }

  intercept(interceptor: Interceptor): void {
    this.interceptors.push(interceptor);
  }

  /**
   * Subscribes to the request and cancel topics: from here on requests arrive. Returns the filters
   * the broker refused, and the shared subscriptions it refused that were replaced by the plain topic.
   */
  async open(): Promise<{ refused: string[]; unshared: string[] }> {
    const filters = this.sources.map((s) => s.filter);
    const refused = await this.mqtt.subscribe([...filters, this.topics.cancel, this.topics.fleetCancel]);
    const unshared = this.sources.filter((s) => s.filter !== s.topic && refused.includes(s.filter));
    // A refused shared subscription: take the topic alone rather than not at all.
    await this.mqtt.subscribe(unshared.map((s) => s.topic));
    this.subscribed = this.sources.map((s) => (unshared.includes(s) ? s.topic : s.filter));
    return { refused: refused.filter((f) => !unshared.some((s) => s.filter === f)), unshared: unshared.map((s) => s.filter) };
  }

  /** Unsubscribes from the request topics: no new requests arrive. */
  async close(): Promise<void> {
    await this.mqtt.unsubscribe(this.subscribed);
  }

  /**
   * Stops taking requests and answers the queued ones; the running one finishes, or is cancelled
   * at once (cancelRunning) or after graceMs. Resolves when nothing runs any more.
   */
  drain(cancelRunning: boolean, graceMs: number): Promise<void> {
    return this.scheduler.stop(cancelRunning, graceMs);
  }

  /** One request message; every outcome is a reply or an event, never an exception. */
  submit(payload: Buffer, packet: DaemonPacket, defaults: TopicDefaults): void {
    // A retained request would run again at every restart, and clearing it publishes an empty
    // payload: neither is a request someone is waiting for.
    if (packet.retain) return void this.emit('ignored', `retained request on ${packet.topic} ignored (clear it: publish an empty retained message there)`, undefined, packet);
    if (payload.length === 0) return void this.emit('ignored', `empty message on ${packet.topic} ignored`, undefined, packet);
    const props = packet.properties;
    const parsed = parseRequest(
      { payload, responseTopic: props?.responseTopic, correlationData: props?.correlationData },
      this.config,
      this.topics.response,
      defaults,
      packet.receivedAt,
    );
    if (isRejection(parsed)) return this.reject(packet, parsed.route, parsed.code, parsed.message);
    if (packet.recovered === 'interrupted' || (packet.recovered && parsed.deadline !== undefined && parsed.deadline <= Date.now())) {
      return this.reject(packet, parsed.route, 'interrupted', 'the daemon stopped (a crash or a power cut) before answering, and the request is too old to run now: send it again');
    }
    const unservable = modelCannotServe(parsed, this.engine);
    if (unservable) return this.reject(packet, parsed.route, 'bad_request', unservable);
    const replies = new ReplyStream(parsed.route, this.publish, {
      stream: parsed.stream,
      chunkIntervalMs: this.config.replies.chunkIntervalMs,
      chunkExpirySec: this.config.replies.chunkExpirySec,
      beforeFinal: (reply) => this.emit('final', job, reply),
    });
    const key = `${parsed.route.topic}\0${parsed.route.id}`;
    const job: RequestJob = { key, id: parsed.route.id, priority: parsed.priority, deadline: parsed.deadline, request: parsed, replies, packet };
    try {
      // Rendered and measured now, so a prompt that cannot fit is refused before `start`.
      job.prepared = this.engine.prepare(renderForModel(parsed, this.engine));
    } catch (err) {
      return this.reject(packet, parsed.route, errorCode(err), (err as Error).message);
    }
    if (this.interceptors.some((intercept) => intercept(job))) return;
    const outcome = this.scheduler.submit(job);
    if (outcome === 'queued') this.emit('accepted', job);
    else if (outcome === 'busy') this.reject(packet, parsed.route, 'busy', `queue is full (${this.config.queue.maxWaiting} waiting); try again later`);
    else if (outcome === 'stopped') this.reject(packet, parsed.route, 'busy', SHUTTING_DOWN);
    else this.emit('ignored', 'request id already queued or running', job.id, packet);
  }

  /** Answers a job with an answer recalled instead of generated (an interceptor's), as a run would. */
  complete(job: RequestJob, answer: Omit<DoneBody, 'timings' | 'usage'> & { completion_tokens: number }): void {
    const { replies, request } = job;
    replies.start({ node: this.config.topics.node, model: this.engine.name });
    this.emit('started', job);
    replies.text(answer.text);
    const { completion_tokens, ...body } = answer;
    const usage = { prompt_tokens: job.prepared?.promptIds.length ?? 0, completion_tokens };
    const timings = { queue_ms: Date.now() - request.receivedAt, ttft_ms: 0, tokens_per_s: 0, cached_tokens: usage.prompt_tokens, cached: true };
    this.emit('finished', job, replies.done({ ...body, usage, timings }), undefined);
  }

  private onCancel(payload: Buffer): void {
    const text = payload.toString('utf8').trim();
    let id: unknown = text;
    if (text.startsWith('{')) {
      try {
        id = (JSON.parse(text) as { id?: unknown }).id;
      } catch {
        id = undefined;
      }
    }
    if (typeof id !== 'string' || !id) return void this.emit('ignored', 'cancel without a usable id');
    if (this.scheduler.cancel(id) === 0) this.emit('ignored', 'cancel for no queued or running request', id);
  }

  private async run(job: RequestJob, signal: AbortSignal): Promise<void> {
    const { request, replies, prepared } = job;
    const startedAt = performance.now();
    const queueMs = Date.now() - request.receivedAt;
    let ttftMs: number | undefined;
    replies.start({ node: this.config.topics.node, model: this.engine.name });
    this.emit('started', job);
    const piece = (type: ChunkType) => (text: string) => {
      // The first token counts whether it starts the reasoning or the answer.
      ttftMs ??= performance.now() - startedAt;
      if (type === 'chunk') replies.text(text);
      else replies.thinking(text);
      this.emit('chunk', job, type, text);
    };
    signal.addEventListener(
      'abort',
      () => {
        // A deadline ends the generation too, but it is not a cancellation.
        if (signal.reason !== ('timeout' satisfies AbortReason)) this.emit('cancelled', job, signal.reason as AbortReason);
      },
      { once: true },
    );
    try {
      const result = await this.engine.generate(prepared!, { signal, onText: piece('chunk'), onThinking: piece('thinking') });
      // A deadline stops the generation like a cancel, but the sender asked for it: say so.
      const timedOut = result.finishReason === 'cancelled' && signal.reason === ('timeout' satisfies AbortReason);
      const timings = {
        queue_ms: queueMs,
        ttft_ms: round(ttftMs ?? performance.now() - startedAt),
        tokens_per_s: round(result.timings.genTokensPerS),
        cached_tokens: result.timings.cachedTokens,
        ...(result.timings.draftedTokens ? { drafted_tokens: result.timings.draftedTokens, accepted_tokens: result.timings.acceptedTokens } : {}),
      };
      const usage = { prompt_tokens: result.promptIds.length, completion_tokens: result.ids.length };
      const thinking = request.think ? { thinking: result.thinking ?? '' } : {};
      const finish_reason = timedOut ? 'timeout' : result.finishReason;
      const reply = replies.done({ text: result.text, ...thinking, finish_reason, seed: request.options.sampling.seed, usage, timings });
      this.emit('finished', job, reply, result);
    } catch (err) {
      this.fail(job, 'running', errorCode(err), (err as Error).message, err);
    }
  }

  private dropped(job: RequestJob, reason: AbortReason): void {
    if (reason === 'cancelled') this.emit('cancelled', job, reason);
    const answers = {
      timeout: ['timeout', 'deadline passed while queued'],
      cancelled: ['cancelled', 'cancelled while queued'],
      // Not run, so another node (or this one after its restart) can take it.
      shutdown: ['busy', SHUTTING_DOWN],
    } as const;
    const [code, message] = answers[reason];
    this.fail(job, 'queued', code, message);
  }

  private fail(job: RequestJob, stage: 'queued' | 'running', code: ErrorCode, message: string, error?: unknown): void {
    job.replies.error(code, message);
    this.emit('failed', { route: job.replies.route, code, message, stage, packet: job.packet, job, ...(error !== undefined ? { error } : {}) });
  }

  private reject(packet: DaemonPacket, route: ReplyRoute, code: ErrorCode, message: string): void {
    sendReply(this.publish, route, { id: route.id, type: 'error', code, message });
    this.emit('failed', { route, code, message, stage: 'rejected', packet });
  }

  /** `$share` needs broker support: MQTT 5 says so in CONNACK; on 3.1.1 only `always` assumes it. */
  private useSharedSubscription(): boolean {
    const mode = this.config.topics.shared;
    return mode === 'auto' ? this.mqtt.sharedSubscriptions : mode === 'always';
  }

  private readonly publish: Publish = (topic, payload, options) => this.mqtt.publish(topic, payload, { contentType: 'application/json', ...options });
}

function errorCode(err: unknown): ErrorCode {
  if (err instanceof EngineError) return err.code === 'busy' ? 'internal' : err.code;
  return 'internal';
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
