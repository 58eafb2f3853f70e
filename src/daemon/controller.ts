// The daemon's lifecycle, in one place and in order. Start: the cache file and the request journal,
// the embedded broker (when no broker is configured), the broker connection with its last will
// (every request message journaled before it is acknowledged), `loading`, the model, the request
// pipeline and the extensions (the journal's recovery among them), the request topics, `online`.
// Stop (SIGTERM/SIGINT): the queue drained, no new requests, the extensions stopped in reverse,
// `offline`, disconnect, the embedded broker, the caches and the model closed. `bonsai serve` only
// parses its flags and calls run().
import { startEmbeddedBroker, type EmbeddedBroker } from './broker.js';
import { DEFAULT_PARALLEL, type DaemonConfig } from './config.js';
import type { Extension, ExtensionContext, ExtensionFactory, Phase } from './extensions/extension.js';
import { healthExtension } from './extensions/health.js';
import { homeAssistantExtension } from './extensions/homeassistant.js';
import { cacheExtension } from './extensions/cache.js';
import { journalExtension } from './extensions/journal.js';
import { requestLogExtension } from './extensions/request-log.js';
import { thermalExtension } from './extensions/thermal.js';
import { systemdExtension } from './extensions/systemd.js';
import { createLogger, type Logger } from './logger.js';
import { DaemonMqtt, redactUrl, toBuffer, withTimeout, type IntakeOptions } from './mqtt.js';
import { RequestPipeline, type DaemonEngine } from './pipeline.js';
import { Caches } from '../cache/caches.js';
import { CacheDatabase } from '../cache/database.js';
import { RequestJournal } from '../cache/journal.js';
import type { Model } from '../engine/engine.js';
import { topicsFor, type Topics } from '../protocol/topics.js';
import { packageVersion } from '../version.js';

export interface ControllerOptions {
  config: DaemonConfig;
  /** Default: JSON lines on stdout at log.level. */
  logger?: Logger;
  /** Default: the package version. */
  version?: string;
  /**
   * Loads the model once the `loading` status is out. Default: the engine on model.path, closed
   * by the controller at stop; an engine given here stays its caller's.
   */
  loadEngine?: () => Promise<DaemonEngine>;
  /** Default: the built-in extensions the config enables (builtinExtensions). */
  extensions?: ExtensionFactory[];
  /** What reading the config changed (renamed keys), logged once the logger exists. */
  warnings?: string[];
}

type State = 'loading' | 'online' | 'offline';

/** How long one publish or disconnect may hold up a shutdown when the broker is gone. */
const SHUTDOWN_IO_MS = 3000;

/** In start order; stopped in reverse. */
export function builtinExtensions(config: DaemonConfig): ExtensionFactory[] {
  return [systemdExtension, requestLogExtension, journalExtension, cacheExtension, thermalExtension, healthExtension, ...(config.homeassistant.discovery ? [homeAssistantExtension] : [])];
}

export class Controller {
  readonly topics: Topics;
  readonly log: Logger;
  private readonly config: DaemonConfig;
  private readonly version: string;
  private readonly startedAt = Date.now();
  private broker?: EmbeddedBroker;
  private mqtt?: DaemonMqtt;
  private engine?: DaemonEngine;
  /** The model's name in every status message, the last will included (so known before connecting). */
  private modelName?: string;
  private state: State = 'loading';
  private closeEngine?: () => void;
  private journalDb?: CacheDatabase;
  private pipeline?: RequestPipeline;
  private caches?: Caches;
  private journal?: RequestJournal;
  private extensions: Extension[] = [];
  private stopping?: Promise<void>;

  constructor(private readonly options: ControllerOptions) {
    this.config = options.config;
    this.log = options.logger ?? createLogger(this.config.log.level, this.config.topics.node);
    this.version = options.version ?? packageVersion();
    this.topics = topicsFor(this.config.topics.base, this.config.topics.node);
  }

  /** mqtt5 or mqtt3.1.1, once connected. */
  get protocolName(): string | undefined {
    return this.mqtt?.protocolName;
  }

  /** Starts the daemon and, until SIGTERM or SIGINT, serves; returns the process exit code. */
  static async run(options: ControllerOptions): Promise<number> {
    const controller = new Controller(options);
    const signalled = new Promise<string>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    // A signal while starting (a broker out of reach, a long load): nothing was taken, nothing to drain.
    const early = signalled.then((signal) => ({ signal }));
    const started = await Promise.race([controller.start().then(() => undefined), early]);
    if (started) {
      controller.log.info(started, 'signal received while starting: exiting');
      controller.log.flush();
      return 0;
    }
    controller.log.info({ signal: await signalled }, 'signal received');
    await controller.stop();
    controller.log.flush();
    return 0;
  }

  /** Up to `online`; on failure everything started so far is closed again and the error thrown. */
  async start(): Promise<void> {
    for (const warning of this.options.warnings ?? []) this.log.warn(warning);
    try {
      this.openCaches();
      const context = this.extensionContext();
      this.extensions = (this.options.extensions ?? builtinExtensions(this.config)).map((create) => create(context));
      const url = await this.brokerUrl();
      this.modelName = await this.nameBeforeLoad();
      const connecting = `connecting to ${redactUrl(url)}`;
      this.phase('connecting', connecting);
      const will = { topic: this.topics.status, payload: JSON.stringify(this.statusBody('offline')) };
      // Each failed attempt in the status too: `systemctl status` and `bonsai doctor` show it while no health message can.
      const retrying = (attempt: number, error: string, nextInMs: number) =>
        this.phase('connecting', `${connecting} (attempt ${attempt} failed: ${error}; next in ${Math.max(1, Math.round(nextInMs / 1000))} s)`);
      this.mqtt = await DaemonMqtt.connect(this.config, url, will, this.log, this.intake(), retrying);
      await this.publishStatus('loading');
      this.phase('loading', `loading ${this.config.model.path}`);
      const engine = await this.loadEngine();
      if (isModel(engine)) await this.caches?.attach(engine);
      this.pipeline = new RequestPipeline(this.config, this.topics, this.mqtt, engine);
      this.phase('starting', 'starting');
      for (const extension of this.extensions) await extension.start?.();
      const pipeline = this.pipeline;
      this.mqtt.open();
      await this.takeRequests(pipeline);
      await this.watchOwnStatus(this.mqtt);
      await this.announce();
      this.mqtt.on('reconnect', () => this.onReconnect());
      this.log.info({ model: engine.name, protocol: this.mqtt.protocolName, parallel: engine.parallel ?? 1, queue: this.config.queue.maxWaiting }, 'online');
      this.phase('online', `online: ${engine.name}, ${this.mqtt.protocolName}`);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * Stops taking requests, lets the running one finish (or cancels it, per shutdown.mode), answers
   * every queued one, then publishes `offline` and closes everything. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const pipeline = this.pipeline;
    if (!pipeline) return this.close();
    this.log.info({ mode: this.config.shutdown.mode }, 'stopping');
    this.phase('stopping', 'stopping: answering what is queued');
    // Still subscribed while draining: what arrives now is answered `busy`, never met with silence.
    await pipeline.drain(this.config.shutdown.mode === 'cancel', this.config.shutdown.graceMs);
    // Unsubscribed from its own status too, or `offline` would come back to be acknowledged after the disconnect.
    await withTimeout(Promise.all([pipeline.close(), this.mqtt?.unsubscribe([this.topics.status])]), SHUTDOWN_IO_MS).catch(() => undefined);
    for (const extension of [...this.extensions].reverse()) {
      await Promise.resolve(extension.stop?.()).catch((err: Error) => this.log.warn({ err: err.message, extension: extension.name }, 'extension failed to stop'));
    }
    await withTimeout(this.publishStatus('offline'), SHUTDOWN_IO_MS).catch(() => undefined);
    const summary = this.healthFields();
    await this.close();
    this.phase('stopped', 'stopped');
    this.log.info(summary, 'offline');
  }

  /** Disconnects, closes the embedded broker, the caches and the model (whichever were started). */
  private async close(): Promise<void> {
    await this.mqtt?.end(SHUTDOWN_IO_MS);
    // An open embedded broker would keep the process alive after an error is reported.
    await this.broker?.close();
    this.caches?.close();
    this.journalDb?.close();
    this.closeEngine?.();
  }

  /**
   * The cache file, twice: the caches' connection, and the journal's with synchronous=FULL (a
   * request acknowledged to the broker must survive a power cut). Neither can stop the daemon.
   */
  private openCaches(): void {
    const { cache } = this.config;
    if (!cache.enabled) return;
    const log = { warn: (fields: Record<string, unknown>, message: string) => this.log.warn(fields, message) };
    this.caches = new Caches(cache, log);
    this.journalDb = new CacheDatabase(this.caches.db!.file, { synchronous: 'FULL', log });
    this.journal = new RequestJournal(this.journalDb, `${this.config.topics.base}/${this.config.topics.node}`);
  }

  /** Request messages go to the journal before the broker is told they arrived. */
  private intake(): IntakeOptions {
    const journal = this.journal;
    if (!journal) return {};
    const requestTopics = new Set([this.topics.request, this.topics.fleetRequest, ...(this.config.homeassistant.discovery ? [this.topics.haPrompt] : [])]);
    const pause = Number(process.env.BONSAI_TEST_PAUSE_BEFORE_ACK_MS ?? 0);
    return {
      record: (packet) => (requestTopics.has(packet.topic) ? journal.record(packet.topic, toBuffer(packet.payload), packet.properties ?? {}, packet.receivedAt ?? Date.now()) : undefined),
      sessionExpirySec: this.config.journal.sessionExpirySec,
      ...(pause > 0 ? { pauseBeforeAckMs: pause } : {}),
    };
  }

  private async brokerUrl(): Promise<string> {
    if (this.config.mqtt.url) return this.config.mqtt.url;
    this.broker = await startEmbeddedBroker(this.config.embedded);
    this.log.info({ url: this.broker.url }, 'embedded broker listening');
    return this.broker.url;
  }

  private async loadEngine(): Promise<DaemonEngine> {
    try {
      this.engine = await (this.options.loadEngine ?? (() => this.loadModel()))();
      this.modelName = this.engine.name;
      return this.engine;
    } catch (err) {
      this.log.error({ err }, 'model failed to load');
      await this.publishStatus('offline', { error: (err as Error).message });
      throw err;
    }
  }

  /** general.name of the configured model file (the name its engine will report); unknown for an injected engine. */
  private async nameBeforeLoad(): Promise<string | undefined> {
    const path = this.config.model.path;
    if (this.options.loadEngine) return undefined;
    const { readModelName } = await import('../engine/engine.js');
    return readModelName(path);
  }

  private async loadModel(): Promise<DaemonEngine> {
    const { path, threads, contextSize, kvType, kernels, draftModel, cpus, mlock } = this.config.model;
    const parallel = this.config.queue.parallel ?? DEFAULT_PARALLEL;
    // Imported here so that the rest of the daemon loads where the native addon is not built.
    const { Model } = await import('../engine/engine.js');
    if (cpus !== undefined) {
      const { placeOnCpus } = await import('./board.js');
      const placement = placeOnCpus(cpus);
      this.log[placement.level](placement.fields, placement.message);
    }
    const image = await this.caches?.imageFor(path, kernels);
    const model = await Model.load(path, { threads, contextSize, kvType, kernels, parallel, mlock, ...(draftModel ? { draftModel } : {}), ...(image ? { image } : {}) });
    this.caches?.noteImage(image, model.loadInfo);
    const { lockedBytes, lockError } = model.loadInfo;
    if (lockError) this.log.warn({ err: lockError }, 'model.mlock: the weights are not locked in memory (LimitMEMLOCK= in the unit, or ulimit -l); running without');
    this.log.info(
      {
        load_ms: Math.round(model.loadInfo.ms),
        runtime_image: model.loadInfo.image,
        ...(model.loadInfo.imageNote ? { image_note: model.loadInfo.imageNote } : {}),
        ...(lockedBytes ? { locked_mb: Math.round((lockedBytes / 2 ** 20) * 10) / 10 } : {}),
      },
      'weights ready',
    );
    this.closeEngine = () => model.close();
    return model;
  }

  /** The extensions' view of the daemon; what exists only once it is loaded throws before then. */
  private extensionContext(): ExtensionContext {
    const ready = <T>(value: T | undefined, what: string): T => {
      if (value === undefined) throw new Error(`an extension used ${what} before start()`);
      return value;
    };
    const controller = this;
    return {
      config: this.config,
      topics: this.topics,
      get mqtt() {
        return ready(controller.mqtt, 'mqtt');
      },
      get pipeline() {
        return ready(controller.pipeline, 'the pipeline');
      },
      get engine() {
        return ready(controller.engine, 'the engine');
      },
      logger: this.log,
      version: this.version,
      startedAt: this.startedAt,
      caches: this.caches,
      journal: this.journal,
      health: () => this.healthFields(),
    };
  }

  private phase(phase: Phase, detail: string): void {
    for (const extension of this.extensions) {
      try {
        extension.phase?.(phase, detail);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, extension: extension.name, phase }, 'extension failed at a phase');
      }
    }
  }

  private healthFields(): Record<string, unknown> {
    return Object.assign({}, ...this.extensions.map((e) => e.health?.() ?? {}));
  }

  private async takeRequests(pipeline: RequestPipeline): Promise<void> {
    const { refused, unshared } = await pipeline.open();
    if (unshared.length) this.log.warn({ topics: unshared }, 'shared subscription refused; subscribing to the fleet topic directly');
    if (refused.length) this.log.error({ topics: refused }, 'broker refused subscriptions (check the ACL)');
  }

  /**
   * A broker that restarts may publish this daemon's last will after the daemon has reconnected
   * (the old session ends when the new one takes over), overwriting `online` with `offline`. The
   * daemon watches its own status topic and puts the truth back.
   */
  private async watchOwnStatus(mqtt: DaemonMqtt): Promise<void> {
    mqtt.handle(this.topics.status, (payload) => {
      // Only `offline` is the will: a retained `loading` of this very start may still arrive.
      if (this.stopping || this.state !== 'online' || parseState(payload) !== 'offline') return;
      this.log.warn('status overwritten (the broker published the last will of an earlier connection): publishing online again');
      this.publishStatus('online').catch((err: Error) => this.log.warn({ err: err.message }, 'status publish failed'));
    });
    await mqtt.subscribe([this.topics.status]);
  }

  /** Status, then each extension's retained messages: after a broker restart they may be gone. */
  private async announce(): Promise<void> {
    await this.publishStatus('online');
    for (const extension of this.extensions) await extension.online?.();
  }

  private onReconnect(): void {
    if (this.stopping) return;
    this.log.info('reconnected to the broker');
    this.announce().catch((err: Error) => this.log.warn({ err: err.message }, 'announce after reconnect failed'));
  }

  private statusBody(state: State): Record<string, unknown> {
    return {
      state,
      node: this.config.topics.node,
      ...(this.modelName !== undefined ? { model: this.modelName } : {}),
      version: this.version,
      ...(state === 'online'
        ? { protocol: this.mqtt?.protocolName, context_size: this.engine?.contextSize, since: new Date(this.startedAt).toISOString() }
        : {}),
    };
  }

  private async publishStatus(state: State, extra: Record<string, unknown> = {}): Promise<void> {
    this.state = state;
    await this.mqtt?.publishAsync(this.topics.status, JSON.stringify({ ...this.statusBody(state), ...extra }), { qos: 1, retain: true });
  }
}

function parseState(payload: Buffer): unknown {
  try {
    return (JSON.parse(payload.toString('utf8')) as { state?: unknown }).state;
  } catch {
    return undefined;
  }
}

/** An engine that can take the prefix cache (the real Model; stand-ins in tests need not). */
function isModel(engine: DaemonEngine): engine is Model {
  return typeof (engine as Partial<Model>).usePrefixCache === 'function';
}
