// What a daemon feature plugs into. The controller builds every extension when it starts, before
// it connects, and tells them each phase of the start and the stop (`phase`: a service manager
// hears of each). Once the model is loaded and the broker connected, it starts them in order
// before requests are taken (from then on the context's mqtt, pipeline and engine exist), tells
// them each time the daemon announces itself online (first start and every reconnect: retained
// messages may be gone after a broker restart), and stops them in reverse order after the queue
// has drained. Extensions follow requests through the pipeline's events (accepted, started, chunk,
// final, finished, failed, cancelled), may answer requests themselves (pipeline.intercept) and
// may add fields to the retained health message.
import type { Caches } from '../../cache/caches.js';
import type { RequestJournal } from '../../cache/journal.js';
import type { Topics } from '../../protocol/topics.js';
import type { DaemonConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { DaemonMqtt } from '../mqtt.js';
import type { DaemonEngine, RequestPipeline } from '../pipeline.js';

export interface ExtensionContext {
  readonly config: DaemonConfig;
  readonly topics: Topics;
  /** From start() on (reading them earlier throws). */
  readonly mqtt: DaemonMqtt;
  readonly pipeline: RequestPipeline;
  readonly engine: DaemonEngine;
  readonly logger: Logger;
  readonly version: string;
  /** When the daemon started (ms since epoch). */
  readonly startedAt: number;
  /** The cache file's prefix blocks and answers; undefined with cache.enabled off. */
  readonly caches: Caches | undefined;
  /** The request journal; undefined with the cache off. */
  readonly journal: RequestJournal | undefined;
  /** The health fields of every extension, for the extension that publishes them. */
  health(): Record<string, unknown>;
}

/**
 * The steps of the daemon's life, in order: `connecting` (to the broker), `loading` (the model),
 * `starting` (extensions, request topics), `online`, `stopping` (draining), `stopped`.
 */
export type Phase = 'connecting' | 'loading' | 'starting' | 'online' | 'stopping' | 'stopped';

export interface Extension {
  readonly name: string;
  /** Each phase as it begins, with a line saying what happens (e.g. the model's file). */
  phase?(phase: Phase, detail: string): void;
  /** Before the request topics are subscribed: register handlers, interceptors, event listeners. */
  start?(): Promise<void> | void;
  /** After `online` was published, at start and after every reconnect. */
  online?(): Promise<void> | void;
  /** Fields for the retained health message. */
  health?(): Record<string, unknown>;
  /** After the queue has drained, before `offline` is published. */
  stop?(): Promise<void> | void;
}

export type ExtensionFactory = (context: ExtensionContext) => Extension;
