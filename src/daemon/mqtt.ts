// The daemon's broker connection: connecting (MQTT 5, falling back to 3.1.1, reconnecting with
// backoff: protocol/connect.ts), subscriptions with the topic that delivers to each handler, and
// publishing with the QoS and MQTT 5 properties of the config. Everything else in the daemon talks
// to the broker through this class.
import { EventEmitter } from 'node:events';
import type { IClientPublishOptions, IPublishPacket } from 'mqtt';
import { closeClient, connectMqtt, type MqttConnectOptions, type MqttConnection } from '../protocol/connect.js';
import type { DaemonConfig } from './config.js';
import type { Logger } from './logger.js';

export type MessageHandler = (payload: Buffer, packet: IPublishPacket) => void;

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

  private constructor(
    private readonly connection: MqttConnection,
    private readonly qos: 0 | 1 | 2,
    private readonly log: Logger,
  ) {
    super();
    const client = connection.client;
    client.on('message', (topic, payload, packet) => this.dispatch(topic, payload, packet));
    client.on('offline', () => this.log.warn('broker connection lost; reconnecting'));
    client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    client.on('connect', () => this.emit('reconnect'));
  }

  /** Connects with the config's settings and a last will; resolves at the first CONNACK. */
  static async connect(config: DaemonConfig, url: string, will: RetainedMessage, log: Logger): Promise<DaemonMqtt> {
    const connection = await connectMqtt({
      ...connectOptionsFrom(config, url),
      will: { topic: will.topic, payload: will.payload, qos: 1, retain: true },
      onRetry: (error, attempt, nextInMs) => log.warn({ state: 'connecting', url, attempt, retry_in_ms: nextInMs, err: error }, 'cannot reach the broker; retrying'),
    });
    return new DaemonMqtt(connection, config.mqtt.qos, log);
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

  /** Publishes without waiting; a failure is logged (a reply must never throw into the engine's callbacks). */
  publish(topic: string, payload: string, properties: PublishProperties = {}): void {
    this.connection.client.publish(topic, payload, this.options(properties), (err) => {
      if (err) this.log.warn({ err: err.message, topic }, 'publish failed');
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

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const handler = this.handlers.get(topic);
    if (!handler) return;
    try {
      handler(payload, packet);
    } catch (err) {
      // A payload must never take the daemon down; this is the last line of defence.
      this.log.error({ err, topic }, 'unexpected error handling a message');
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

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
