// The replies of one request, in order on one topic: start, chunk..., then done or error.
// A fast model produces a piece of text per token; publishing each would flood the broker and
// the clients, so text is coalesced into at most one chunk per interval. A request with thinking
// on also gets "thinking" chunks (its reasoning), never mixed into one message with the answer:
// where the reasoning gives way to the answer, what is pending goes out at once.
import type { ChunkType, DoneBody, DoneReply, ErrorCode, ErrorReply, Reply } from '../protocol/messages.js';
import type { ReplyRoute } from './request.js';

export interface PublishOptions {
  /** MQTT 5 message expiry (chunks only: a stale chunk is useless). */
  expirySec?: number;
  correlationData?: Buffer;
}

/**
 * Sends one reply message; must keep the order of calls (MQTT.js does per topic and QoS). Resolves
 * when the broker has it (false when publishing failed), and never rejects.
 */
export type Publish = (topic: string, payload: string, options: PublishOptions) => Promise<boolean>;

export class ReplyStream {
  private pending = '';
  private pendingType: ChunkType = 'chunk';
  private readonly seq: Record<ChunkType, number> = { chunk: 0, thinking: 0 };
  private lastChunkAt = -Infinity;
  private timer?: NodeJS.Timeout;
  private finished = false;
  /** Once the final reply is out: resolves when the broker has it (false: publishing failed). */
  finalSent: Promise<boolean> | undefined;

  constructor(
    readonly route: ReplyRoute,
    private readonly publish: Publish,
    private readonly options: {
      stream: boolean;
      chunkIntervalMs: number;
      chunkExpirySec: number;
      /** Called with the final reply just before it is published (the journal stores it first). */
      beforeFinal?: (reply: DoneReply | ErrorReply) => void;
    },
  ) {}

  start(extra: Record<string, unknown> = {}): void {
    if (this.options.stream) this.send({ ...extra, id: this.route.id, type: 'start' });
  }

  /** A piece of the answer. */
  text(piece: string): void {
    this.append('chunk', piece);
  }

  /** A piece of the reasoning. */
  thinking(piece: string): void {
    this.append('thinking', piece);
  }

  private append(type: ChunkType, piece: string): void {
    if (!this.options.stream || this.finished || !piece) return;
    // A chunk holds one kind of text: what is pending of the other kind goes out first, in order.
    if (type !== this.pendingType) {
      this.flush();
      this.pendingType = type;
    }
    this.pending += piece;
    const wait = this.lastChunkAt + this.options.chunkIntervalMs - performance.now();
    if (wait <= 0) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), wait);
  }

  /** Sends the final reply (once); returns it so it can be replayed to a repeated request. */
  done(body: DoneBody): DoneReply {
    this.flush();
    return this.finish({ id: this.route.id, type: 'done', ...body });
  }

  error(code: ErrorCode, message: string): ErrorReply {
    this.flush();
    return this.finish({ id: this.route.id, type: 'error', code, message });
  }

  /** Sends a final reply made earlier for the same id (a replay), once. */
  replay(reply: DoneReply | ErrorReply): void {
    this.finish(reply);
  }

  private finish<R extends DoneReply | ErrorReply>(reply: R): R {
    if (!this.finished) {
      this.options.beforeFinal?.(reply);
      this.send(reply);
    }
    this.finished = true;
    return reply;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending || this.finished) return;
    const text = this.pending;
    this.pending = '';
    this.lastChunkAt = performance.now();
    const type = this.pendingType;
    this.send({ id: this.route.id, type, seq: this.seq[type]++, text }, this.options.chunkExpirySec);
  }

  private send(reply: Reply, expirySec?: number): void {
    const sent = sendReply(this.publish, this.route, reply, expirySec);
    if (reply.type === 'done' || reply.type === 'error') this.finalSent = sent;
  }
}

export function sendReply(publish: Publish, route: ReplyRoute, reply: Reply, expirySec?: number): Promise<boolean> {
  const options: PublishOptions = {};
  if (expirySec !== undefined) options.expirySec = expirySec;
  if (route.correlationData) options.correlationData = route.correlationData;
  return publish(route.topic, JSON.stringify(reply), options);
}
