// Connecting to a broker the way both the daemon and `bonsai ask` need it: MQTT 5 first, 3.1.1 when
// the broker refuses 5 (aedes, old brokers), TLS from PEM files, and reconnects with exponential
// backoff and jitter so that a fleet of boards does not hammer a broker that just restarted.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';

export interface MqttConnectOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  protocol?: 'auto' | '5' | '3.1.1';
  keepaliveSec?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  will?: { topic: string; payload: string; qos: 0 | 1 | 2; retain: boolean };
  /** Give up on the first connection after this long (default: keep trying). */
  timeoutMs?: number;
  /** Each failed attempt of the first connection, with the wait before the next one. */
  onRetry?: (error: string, attempt: number, nextInMs: number) => void;
  /**
   * Keep the session (subscriptions, unacknowledged and queued QoS 1/2 messages) while
   * disconnected, for this long (MQTT 5; 3.1.1 brokers keep it until the client returns).
   */
  sessionExpirySec?: number;
  /**
   * Called for every incoming message before the broker is told it arrived (PUBACK), from the
   * first CONNACK on: the acknowledgement waits for the returned promise.
   */
  beforeAck?: (packet: IPublishPacket) => Promise<void> | void;
}

export interface MqttConnection {
  client: MqttClient;
  protocolVersion: 4 | 5;
  connack: IConnackPacket;
}

export class ConnectError extends Error {
  override name = 'ConnectError';
}

// CONNACK codes meaning "not this protocol version": 3.1.1 return code 1, MQTT 5 reason 0x84.
const PROTOCOL_REFUSED = new Set([1, 0x84]);

export async function connectMqtt(options: MqttConnectOptions): Promise<MqttConnection> {
  const tls = readTls(options);
  const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
  if (options.protocol !== '3.1.1') {
    const first = await attempt(options, tls, 5, deadline);
    if ('connection' in first) return first.connection;
    if (options.protocol === '5') throw new ConnectError(`broker ${options.url} refused MQTT 5: ${first.refused}`);
  }
  const second = await attempt(options, tls, 4, deadline);
  if ('connection' in second) return second.connection;
  throw new ConnectError(`broker ${options.url} refused MQTT 3.1.1: ${second.refused}`);
}

function readTls(options: MqttConnectOptions): Partial<IClientOptions> {
  const read = (file: string | undefined, what: string) => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConnectError(`cannot read TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const tls: Partial<IClientOptions> = { rejectUnauthorized: options.rejectUnauthorized ?? true };
  const ca = read(options.ca, 'CA');
  const cert = read(options.cert, 'certificate');
  const key = read(options.key, 'key');
  if (ca) tls.ca = ca;
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  return tls;
}

type Attempt = { connection: MqttConnection } | { refused: string };

/**
 * One client with one protocol version, resolved at its first CONNACK. Transport errors before it
 * (broker not up yet) are retried with backoff until the deadline; a refusal for the protocol
 * version ends the attempt so the caller can fall back; any other refusal (bad credentials) fails.
 */
function attempt(options: MqttConnectOptions, tls: Partial<IClientOptions>, version: 4 | 5, deadline: number): Promise<Attempt> {
  const min = options.reconnectMinMs ?? 500;
  const client = mqtt.connect(options.url, {
    ...tls,
    clientId: options.clientId,
    protocolVersion: version,
    keepalive: options.keepaliveSec ?? 30,
    reconnectPeriod: min,
    connectTimeout: 10_000,
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(options.will ? { will: options.will } : {}),
    ...(options.sessionExpirySec !== undefined ? persistentSession(version, options.sessionExpirySec) : {}),
  });
  const beforeAck = options.beforeAck;
  if (beforeAck) {
    // MQTT.js acknowledges a message once handleMessage calls back (and handles one at a time).
    client.handleMessage = (packet, callback) => {
      Promise.resolve()
        .then(() => beforeAck(packet))
        .then(() => callback(), (err: Error) => callback(err));
    };
  }
  applyBackoff(client, min, options.reconnectMaxMs ?? 30_000);
  disableNagle(client);
  // Later errors (a dropped connection) are followed by reconnects; without a listener the
  // EventEmitter would throw them.
  client.on('error', () => undefined);
  return new Promise<Attempt>((resolve, reject) => {
    const timer = Number.isFinite(deadline) ? setTimeout(() => fail(new ConnectError(`cannot connect to ${options.url}: timed out`)), Math.max(0, deadline - Date.now())) : undefined;
    let lastError = '';
    let attempts = 0;
    const settle = () => {
      clearTimeout(timer);
      client.removeListener('connect', onConnect);
      client.removeListener('error', onError);
      client.removeListener('close', onClose);
    };
    const fail = (err: Error) => {
      settle();
      client.end(true);
      reject(lastError && err.message.endsWith('timed out') ? new ConnectError(`${err.message} (${lastError})`) : err);
    };
    const onConnect = (connack: IConnackPacket) => {
      settle();
      resolve({ connection: { client, protocolVersion: version, connack } });
    };
    const onError = (err: Error & { code?: string | number }) => {
      lastError = err.message;
      if (typeof err.code !== 'number') return; // transport error: the client retries by itself
      if (PROTOCOL_REFUSED.has(err.code)) {
        settle();
        client.end(true);
        resolve({ refused: err.message });
      } else {
        fail(new ConnectError(`broker ${options.url} refused the connection: ${err.message}`));
      }
    };
    // After the backoff listener has set the next delay (it runs first, see applyBackoff).
    const onClose = () => options.onRetry?.(lastError || 'connection closed', ++attempts, client.options.reconnectPeriod ?? min);
    client.on('connect', onConnect);
    client.on('error', onError);
    client.on('close', onClose);
  });
}

/** Disconnects cleanly, or drops the socket when the broker does not answer within timeoutMs (it may be gone). */
export async function closeClient(client: MqttClient, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gone = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const ended = await Promise.race([client.endAsync().then(() => 'ended' as const), gone]).finally(() => clearTimeout(timer));
  if (ended === 'timeout') client.end(true);
}

function persistentSession(version: 4 | 5, expirySec: number): Partial<IClientOptions> {
  return version === 5 ? { clean: false, properties: { sessionExpiryInterval: expirySec } } : { clean: false };
}

/**
 * Replies are small messages written back to back; with Nagle's algorithm each can wait for the
 * peer's delayed ACK (~40 ms on Linux). MQTT.js makes a new socket per connection, so set it on each.
 */
function disableNagle(client: MqttClient): void {
  client.on('connect', () => (client.stream as Partial<Socket>).setNoDelay?.(true));
}

/**
 * MQTT.js retries at a fixed period. It reads options.reconnectPeriod each time a connection closes,
 * so a listener that runs before its own (prepended) sets the next delay: doubling from min to max,
 * with ±20% jitter, back to min after a successful connect.
 */
function applyBackoff(client: MqttClient, min: number, max: number): void {
  let delay = min;
  client.prependListener('close', () => {
    client.options.reconnectPeriod = Math.round(delay * (0.8 + Math.random() * 0.4));
    delay = Math.min(max, delay * 2);
  });
  client.on('connect', () => {
    delay = min;
  });
}
