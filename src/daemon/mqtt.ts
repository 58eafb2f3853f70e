// The daemon's broker connection: connecting (MQTT 5, falling back to 3.1.1, reconnecting with
// backoff: protocol/connect.ts), the intake of messages (each request recorded in the journal
// before the broker is acknowledged, and held until the daemon is ready for it), subscriptions with
// the topic that delivers to each handler, and publishing with the QoS and MQTT 5 properties of
// the config. Everything else in the daemon talks to the broker through this class.
import { EventEmitter } from 'node:events';
import type { IClientPublishOptions, IPublishPacket } from 'mqtt';
import { closeClient, connectMqtt, type MqttConnectOptions, type MqttConnection } from '../protocol/connect.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './logger.js';


/** A message as the daemon keeps it: with its row in the request journal, when it was journaled. */
export interface DaemonPacket extends IPublishPacket {
  journalRow?: number;
  /** When it arrived (ms since epoch); earlier than now for a request recovered from the journal. */
  receivedAt?: number;
  /** A request an earlier run left unanswered: run it again, or answer `interrupted`. */
  recovered?: 'rerun' | 'interrupted';
}

export type MessageHandler = (payload: Buffer, packet: DaemonPacket) => void;

export interface IntakeOptions {
  /** Writes a request message to the journal before it is acknowledged; returns its row. */
  record?: (packet: DaemonPacket) => number | undefined;
  /** Test hook: wait this long after a message arrives, before it is recorded and acknowledged. */
  pauseBeforeAckMs?: number;
  /** Keep the broker session (and the requests queued for this node) while down, this long. */
  sessionExpirySec?: number;
}

export interface PublishProperties {
  retain?: boolean;
  /** Defaults to mqtt.qos. */
  qos?: 0 | 1 | 2;
  /** MQTT 5 only (dropped on 3.1.1): echoed to the requester. */
  correlationData?: Buffer;
  /** MQTT 5 only: the broker drops the message after this long. */
  expirySec?: number;
  /** MQTT 5 only: content type (replies say application/json). */
  contentType?: string;
}

export interface RetainedMessage {
  topic: string;
  payload: string;
}

interface MqttEvents {
  /** Connected again after the connection was lost (not the first connect). */
  reconnect: [];
}

export class DaemonMqtt extends EventEmitter<MqttEvents> {
  /** Topic name a message arrives with -> its handler. */
  private readonly handlers = new Map<string, MessageHandler>();
  private connection!: MqttConnection;
  /** Messages that arrived before open(): already journaled and acknowledged, handled at open. */
  private held: DaemonPacket[] | undefined = [];

  private constructor(
    private readonly qos: 0 | 1 | 2,
    private readonly log: Logger,
    private readonly intake: IntakeOptions,
  ) {
    super();
  }

  private attach(connection: MqttConnection): void {
    this.connection = connection;
    const client = connection.client;
    client.on('offline', () => this.log.warn('broker connection lost; reconnecting'));
    client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    client.on('connect', () => this.emit('reconnect'));
  }

  /**
   * Connects with the config's settings and a last will; resolves at the first CONNACK. Messages
   * are taken from then on (a persistent session delivers what was queued at once): each is
   * recorded (intake.record) before it is acknowledged, and held until open(). Each failed attempt
   * is logged and told to `retrying` (the service manager's status says it).
   */
  static async connect(
    config: DaemonConfig,
    url: string,
    will: RetainedMessage,
    log: Logger,
    intake: IntakeOptions = {},
    retrying?: (attempt: number, error: string, nextInMs: number) => void,
  ): Promise<DaemonMqtt> {
    const mqtt = new DaemonMqtt(config.mqtt.qos, log, intake);
    mqtt.attach(
      await connectMqtt({
        ...connectOptionsFrom(config, url),
        will: { topic: will.topic, payload: will.payload, qos: 1, retain: true },
        onRetry: (error, attempt, nextInMs) => {
          log.warn({ state: 'connecting', url: redactUrl(url), attempt, retry_in_ms: nextInMs, err: error }, 'cannot reach the broker; retrying');
          retrying?.(attempt, error, nextInMs);
        },
        beforeAck: (packet) => mqtt.receive(packet),
        ...(intake.sessionExpirySec !== undefined ? { sessionExpirySec: intake.sessionExpirySec } : {}),
      }),
    );
    return mqtt;
  }

  /** From now on messages go to their handlers, the held ones first. */
  open(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const packet of held) this.dispatch(packet);
  }

  /** Hands a message to its handler as if it had just arrived (a request recovered from the journal). */
  deliver(packet: DaemonPacket): void {
    this.dispatch(packet);
  }

  get protocolVersion(): 4 | 5 {
    return this.connection.protocolVersion;
  }

  get protocolName(): string {
    return this.protocolVersion === 5 ? 'mqtt5' : 'mqtt3.1.1';
  }

  /** Whether the broker said in its CONNACK that it takes `$share/...` subscriptions (MQTT 5 only). */
  get sharedSubscriptions(): boolean {
    return this.protocolVersion === 5 && this.connection.connack.properties?.sharedSubscriptionAvailable !== false;
  }

  /** Routes messages that arrive on `topic` (the name they are delivered with) to `handler`. */
  handle(topic: string, handler: MessageHandler): void {
    this.handlers.set(topic, handler);
  }

  /** Subscribes at the config's QoS; returns the filters the broker refused. */
  async subscribe(filters: string[]): Promise<string[]> {
    if (filters.length === 0) return [];
    const granted = await this.connection.client.subscribeAsync(filters, { qos: this.qos });
    return granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
  }

  async unsubscribe(filters: string[]): Promise<void> {
    if (filters.length) await this.connection.client.unsubscribeAsync(filters);
  }

  /**
   * Publishes without making the caller wait; resolves (never rejects) once the broker has the
   * message at its QoS: true, or false when publishing failed (logged).
   */
  publish(topic: string, payload: string, properties: PublishProperties = {}): Promise<boolean> {
    return new Promise((resolve) => {
      this.connection.client.publish(topic, payload, this.options(properties), (err) => {
        if (err) this.log.warn({ err: err.message, topic }, 'publish failed');
        resolve(!err);
      });
    });
  }

  async publishAsync(topic: string, payload: string, properties: PublishProperties = {}): Promise<void> {
    await this.connection.client.publishAsync(topic, payload, this.options(properties));
  }

  async publishRetained(messages: RetainedMessage[]): Promise<void> {
    await Promise.all(messages.map((m) => this.publishAsync(m.topic, m.payload, { qos: 1, retain: true })));
  }

  /** Disconnects cleanly (the will is not sent), or drops the socket when that takes too long. */
  end(timeoutMs: number): Promise<void> {
    return closeClient(this.connection.client, timeoutMs);
  }

  private options(p: PublishProperties): IClientPublishOptions {
    const opts: IClientPublishOptions = { qos: p.qos ?? this.qos, retain: p.retain ?? false };
    if (this.protocolVersion === 5) {
      const properties: NonNullable<IClientPublishOptions['properties']> = {};
      if (p.contentType) properties.contentType = p.contentType;
      if (p.correlationData) properties.correlationData = p.correlationData;
      if (p.expirySec !== undefined) properties.messageExpiryInterval = p.expirySec;
      if (Object.keys(properties).length) opts.properties = properties;
    }
    return opts;
  }

  private async receive(packet: DaemonPacket): Promise<void> {
    if (this.intake.pauseBeforeAckMs) await new Promise((r) => setTimeout(r, this.intake.pauseBeforeAckMs));
    packet.receivedAt = Date.now();
    const row = this.intake.record?.(packet);
    if (row !== undefined) packet.journalRow = row;
    if (this.held) this.held.push(packet);
    else this.dispatch(packet);
  }

  private dispatch(packet: DaemonPacket): void {
    const handler = this.handlers.get(packet.topic);
    if (!handler) return;
    try {
      handler(toBuffer(packet.payload), packet);
    } catch (err) {
      // A payload must never take the daemon down; this is the last line of defence.
      this.log.error({ err, topic: packet.topic }, 'unexpected error handling a message');
    }
  }
}

/** The connection settings of a config: the daemon's, or a helper's with its client id suffixed. */
export function connectOptionsFrom(config: DaemonConfig, url: string, clientIdSuffix = ''): MqttConnectOptions {
  const { mqtt, topics } = config;
  const options: MqttConnectOptions = {
    url,
    clientId: (mqtt.clientId ?? `bonsai-${topics.node}`) + clientIdSuffix,
    rejectUnauthorized: mqtt.rejectUnauthorized,
    protocol: mqtt.protocol,
    keepaliveSec: mqtt.keepaliveSec,
    reconnectMinMs: mqtt.reconnectMinMs,
    reconnectMaxMs: mqtt.reconnectMaxMs,
  };
  for (const key of ['username', 'password', 'ca', 'cert', 'key'] as const) {
    if (mqtt[key] !== undefined) options[key] = mqtt[key];
  }
  return options;
}

/** A broker URL fit for a log line or a status: without its password. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

export function toBuffer(payload: Buffer | string): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
