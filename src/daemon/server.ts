// The daemon: one MQTT connection, one resident model, requests in and replies out. The engine is
// injected (anything with Model's generate()), so the scheduling and protocol logic can be tested
// with a stand-in while the acceptance tests run the real engine.
import type { IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt';
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../engine.js';
import { EngineError } from '../errors.js';
import type { DaemonConfig } from './config.js';
import { connectMqtt, connectOptionsFrom, type MqttConnection } from './connect.js';
import { discoveryMessages, type RetainedMessage } from './discovery.js';
import { collectHealth, cpuTemperature, type HealthCounters } from './health.js';
import type { Logger } from './logger.js';
import { Scheduler, type AbortReason, type Job } from './queue.js';
import { ReplyStream, sendReply, type Publish, type Reply } from './replies.js';
import { isRejection, modelCannotServe, parseRequest, renderForModel, type ErrorCode, type Request, type ReplyRoute, type TopicDefaults } from './request.js';
import { topicsFor, type Topics } from './topics.js';

/** What the daemon needs from a model: src/engine.ts's Model satisfies it. */
export interface DaemonEngine {
  readonly name: string;
  readonly contextSize: number;
  readonly chatTemplate: string | undefined;
  generate(request: GenerateRequest, options: GenerateOptions): Promise<GenerateResult>;
}

export interface DaemonOptions {
  config: DaemonConfig;
  /** Broker to connect to (the configured one, or the embedded broker's URL). */
  brokerUrl: string;
  /** Loads the model; called after the `loading` status is out. */
  loadEngine: () => Promise<DaemonEngine>;
  logger: Logger;
  version: string;
}

interface RequestJob extends Job {
  request: Request;
  replies: ReplyStream;
}

type State = 'loading' | 'online' | 'offline';

/** Final replies kept so a repeated request id is answered again instead of being run twice. */
const REPLAY_ENTRIES = 512;
const SHUTDOWN_IO_MS = 3000;

export class Daemon {
  readonly topics: Topics;
  private readonly config: DaemonConfig;
  private readonly log: Logger;
  private engine?: DaemonEngine;
  private connection!: MqttConnection;
  private readonly scheduler: Scheduler<RequestJob>;
  private readonly finals = new Map<string, Reply>();
  private readonly counters: HealthCounters = { served: 0, failed: 0, lastTokensPerS: null };
  private readonly startedAt = Date.now();
  private healthTimer?: NodeJS.Timeout;
  private requestTopics: string[] = [];
  private stopping?: Promise<void>;

  private constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.log = options.logger;
    this.topics = topicsFor(this.config.topics.base, this.config.topics.node);
    this.scheduler = new Scheduler<RequestJob>({
      max: this.config.queue.max,
      maxRunMs: this.config.limits.maxRunMs,
      run: (job, signal) => this.run(job, signal),
      dropped: (job, reason) => this.dropped(job, reason),
    });
  }

  /** Connects, announces `loading`, loads the model, subscribes, announces `online`. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const daemon = new Daemon(options);
    await daemon.connect();
    try {
      daemon.engine = await options.loadEngine();
    } catch (err) {
      daemon.log.error({ err }, 'model failed to load');
      await daemon.publishStatus('offline', { error: (err as Error).message });
      await daemon.connection.client.endAsync();
      throw err;
    }
    await daemon.subscribe();
    await daemon.announce();
    daemon.connection.client.on('connect', () => daemon.onReconnect());
    daemon.log.info({ model: daemon.engine.name, protocol: daemon.protocolName, queue: daemon.config.queue.max }, 'online');
    return daemon;
  }

  get protocolName(): string {
    return this.connection.protocolVersion === 5 ? 'mqtt5' : 'mqtt3.1.1';
  }

  /**
   * Stops taking requests, lets the running one finish (or cancels it, per shutdown.mode), answers
   * every queued one, then publishes `offline` and disconnects. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.log.info({ mode: this.config.shutdown.mode }, 'stopping');
    clearInterval(this.healthTimer);
    const client = this.connection.client;
    await withTimeout(client.unsubscribeAsync(this.requestTopics), SHUTDOWN_IO_MS).catch(() => undefined);
    await this.scheduler.stop(this.config.shutdown.mode === 'cancel', this.config.shutdown.graceMs);
    await withTimeout(this.publishStatus('offline'), SHUTDOWN_IO_MS).catch(() => undefined);
    await withTimeout(client.endAsync(), SHUTDOWN_IO_MS).catch(() => client.end(true));
    this.log.info({ served: this.counters.served, failed: this.counters.failed }, 'offline');
  }

  private async connect(): Promise<void> {
    this.connection = await connectMqtt({
      ...connectOptionsFrom(this.config, this.options.brokerUrl),
      will: { topic: this.topics.status, payload: JSON.stringify(this.statusBody('offline')), qos: 1, retain: true },
    });
    const client = this.connection.client;
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('offline', () => this.log.warn('broker connection lost; reconnecting'));
    client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    await this.publishStatus('loading');
  }

  private async subscribe(): Promise<void> {
    const { topics, homeassistant } = this.config;
    const t = this.topics;
    const fleet = this.useSharedSubscription() ? `$share/${topics.sharedGroup}/${t.fleetRequest}` : t.fleetRequest;
    this.requestTopics = [t.request, fleet, ...(homeassistant.discovery ? [t.haPrompt] : [])];
    const other = [t.cancel, t.fleetCancel, ...(homeassistant.discovery ? [`${homeassistant.prefix}/status`] : [])];
    const granted = await this.connection.client.subscribeAsync([...this.requestTopics, ...other], { qos: this.config.mqtt.qos });
    const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
    if (refused.includes(fleet) && fleet !== t.fleetRequest) {
      // The broker turned the shared subscription down: take the fleet topic alone rather than not at all.
      this.log.warn({ topic: fleet }, 'shared subscription refused; subscribing to the fleet topic directly');
      this.requestTopics = this.requestTopics.map((topic) => (topic === fleet ? t.fleetRequest : topic));
      await this.connection.client.subscribeAsync(t.fleetRequest, { qos: this.config.mqtt.qos });
    } else if (refused.length) {
      this.log.error({ topics: refused }, 'broker refused subscriptions (check the ACL)');
    }
  }

  /** `$share` needs broker support: MQTT 5 says so in CONNACK; on 3.1.1 only `always` assumes it. */
  private useSharedSubscription(): boolean {
    const mode = this.config.topics.shared;
    if (mode !== 'auto') return mode === 'always';
    return this.connection.protocolVersion === 5 && this.connection.connack.properties?.sharedSubscriptionAvailable !== false;
  }

  private onReconnect(): void {
    if (this.stopping) return;
    this.log.info('reconnected to the broker');
    this.announce().catch((err: Error) => this.log.warn({ err: err.message }, 'announce after reconnect failed'));
  }

  /** Status, discovery and health again: after a broker restart its retained messages may be gone. */
  private async announce(): Promise<void> {
    await this.publishStatus('online');
    await this.publishDiscovery();
    this.publishHealth();
    clearInterval(this.healthTimer);
    this.healthTimer = setInterval(() => this.publishHealth(), this.config.health.intervalSec * 1000);
    this.healthTimer.unref();
  }

  private statusBody(state: State): Record<string, unknown> {
    return {
      state,
      node: this.config.topics.node,
      model: this.engine?.name ?? (this.config.model.path ?? '').split('/').pop(),
      version: this.options.version,
      ...(state === 'online' ? { protocol: this.protocolName, context_size: this.engine?.contextSize, since: new Date(this.startedAt).toISOString() } : {}),
    };
  }

  private async publishStatus(state: State, extra: Record<string, unknown> = {}): Promise<void> {
    await this.connection.client.publishAsync(this.topics.status, JSON.stringify({ ...this.statusBody(state), ...extra }), { qos: 1, retain: true });
  }

  private async publishDiscovery(): Promise<void> {
    const ha = this.config.homeassistant;
    if (!ha.discovery) return;
    const messages = discoveryMessages({
      prefix: ha.prefix,
      node: this.config.topics.node,
      topics: this.topics,
      model: this.engine?.name ?? 'unknown',
      version: this.options.version,
      hasTemperature: cpuTemperature() !== undefined,
    });
    await publishRetained(this.connection.client, messages);
  }

  private publishHealth(): void {
    const health = collectHealth(this.startedAt, this.counters, { depth: this.scheduler.depth, busy: this.scheduler.busy });
    this.connection.client.publish(this.topics.health, JSON.stringify(health), { qos: 0, retain: true });
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    try {
      const t = this.topics;
      if (topic === t.request || topic === t.fleetRequest) this.onRequest(payload, packet, {});
      else if (topic === t.haPrompt) this.onRequest(payload, packet, { replyTopic: t.haAnswer, stream: false });
      else if (topic === t.cancel || topic === t.fleetCancel) this.onCancel(payload);
      else if (topic === `${this.config.homeassistant.prefix}/status` && payload.toString() === 'online') {
        this.publishDiscovery().catch((err: Error) => this.log.warn({ err: err.message }, 'discovery publish failed'));
      }
    } catch (err) {
      // A payload must never take the daemon down; this is the last line of defence.
      this.log.error({ err, topic }, 'unexpected error handling a message');
    }
  }

  private onRequest(payload: Buffer, packet: IPublishPacket, defaults: TopicDefaults): void {
    const props = packet.properties;
    const parsed = parseRequest(
      { payload, responseTopic: props?.responseTopic, correlationData: props?.correlationData },
      this.config,
      this.topics.response,
      defaults,
    );
    if (isRejection(parsed)) return this.reject(parsed.route, parsed.code, parsed.message);
    const unservable = modelCannotServe(parsed, this.engine!);
    if (unservable) return this.reject(parsed.route, 'bad_request', unservable);
    const key = `${parsed.route.topic}\0${parsed.route.id}`;
    const earlier = this.finals.get(key);
    if (earlier) {
      this.log.info({ id: parsed.route.id }, 'repeated request id: replaying its final reply');
      return sendReply(this.publish, parsed.route, earlier);
    }
    const replies = new ReplyStream(parsed.route, this.publish, {
      stream: parsed.stream,
      chunkIntervalMs: this.config.replies.chunkIntervalMs,
      chunkExpirySec: this.config.replies.chunkExpirySec,
    });
    const job: RequestJob = { key, id: parsed.route.id, priority: parsed.priority, deadline: parsed.deadline, request: parsed, replies };
    const outcome = this.scheduler.submit(job);
    if (outcome === 'busy') this.reject(parsed.route, 'busy', `queue is full (${this.config.queue.max} waiting); try again later`);
    else if (outcome === 'stopped') this.reject(parsed.route, 'busy', 'daemon is shutting down');
    else if (outcome === 'duplicate') this.log.warn({ id: job.id }, 'request id already queued or running: ignored');
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
    if (typeof id !== 'string' || !id) return void this.log.warn('cancel without a usable id ignored');
    const found = this.scheduler.cancel(id);
    this.log.info({ id, found }, 'cancel');
  }

  private async run(job: RequestJob, signal: AbortSignal): Promise<void> {
    const engine = this.engine!;
    const { request, replies } = job;
    const startedAt = performance.now();
    const queueMs = Date.now() - request.receivedAt;
    let ttftMs: number | undefined;
    replies.start({ node: this.config.topics.node, model: engine.name });
    try {
      // The first token counts whether it starts the reasoning or the answer.
      const firstToken = () => (ttftMs ??= performance.now() - startedAt);
      const result = await engine.generate(renderForModel(request, engine), {
        signal,
        onText: (text) => {
          firstToken();
          replies.text(text);
        },
        onThinking: (text) => {
          firstToken();
          replies.thinking(text);
        },
      });
      if (result.finishReason === 'cancelled' && signal.reason === ('timeout' satisfies AbortReason)) {
        return this.fail(job, 'timeout', `deadline reached after ${result.ids.length} tokens`);
      }
      const timings = { queue_ms: queueMs, ttft_ms: round(ttftMs ?? performance.now() - startedAt), tokens_per_s: round(result.timings.genTokensPerS) };
      const usage = { prompt_tokens: result.promptIds.length, completion_tokens: result.ids.length };
      const thinking = request.think ? { thinking: result.thinking ?? '' } : {};
      this.finish(job, replies.done({ text: result.text, ...thinking, finish_reason: result.finishReason, usage, timings }));
      this.counters.served++;
      this.counters.lastTokensPerS = result.timings.genTokensPerS;
      this.log.info({ id: job.id, topic: job.replies.route.topic, finish_reason: result.finishReason, ...usage, ...timings, gen_ms: round(result.timings.genMs) }, 'request done');
    } catch (err) {
      const code = errorCode(err);
      if (code === 'internal') this.log.error({ err, id: job.id }, 'generation failed');
      this.fail(job, code, (err as Error).message);
    }
  }

  private dropped(job: RequestJob, reason: AbortReason): void {
    const message = { timeout: 'deadline passed while queued', cancelled: 'cancelled while queued', shutdown: 'daemon is shutting down' }[reason];
    this.fail(job, reason === 'timeout' ? 'timeout' : 'cancelled', message);
  }

  private fail(job: RequestJob, code: ErrorCode, message: string): void {
    this.counters.failed++;
    this.finish(job, job.replies.error(code, message));
    this.log.info({ id: job.id, topic: job.replies.route.topic, code, message }, 'request failed');
  }

  private finish(job: RequestJob, reply: Reply): void {
    this.finals.delete(job.key);
    this.finals.set(job.key, reply);
    if (this.finals.size > REPLAY_ENTRIES) this.finals.delete(this.finals.keys().next().value!);
  }

  /** Rejected before queueing (nothing ran), so a corrected retry with the same id is welcome. */
  private reject(route: ReplyRoute, code: ErrorCode, message: string): void {
    this.counters.failed++;
    sendReply(this.publish, route, { id: route.id, type: 'error', code, message });
    this.log.info({ id: route.id, topic: route.topic, code, message }, 'request rejected');
  }

  private readonly publish: Publish = (topic, payload, options) => {
    const opts: IClientPublishOptions = { qos: this.config.mqtt.qos };
    if (this.connection.protocolVersion === 5) {
      opts.properties = { contentType: 'application/json' };
      if (options.correlationData) opts.properties.correlationData = options.correlationData;
      if (options.expirySec !== undefined) opts.properties.messageExpiryInterval = options.expirySec;
    }
    this.connection.client.publish(topic, payload, opts, (err) => {
      if (err) this.log.warn({ err: err.message, topic }, 'reply publish failed');
    });
  };
}

function errorCode(err: unknown): ErrorCode {
  if (err instanceof EngineError) return err.code === 'busy' ? 'internal' : err.code;
  return 'internal';
}

export async function publishRetained(client: MqttClient, messages: RetainedMessage[]): Promise<void> {
  await Promise.all(messages.map((m) => client.publishAsync(m.topic, m.payload, { qos: 1, retain: true })));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
