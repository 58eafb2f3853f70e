// Daemons and MQTT clients for the daemon tests: an in-process daemon on a given broker with a
// quiet logger, the real engine on stories260K, and a client that records every reply by id.
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { IClientPublishOptions, MqttClient } from 'mqtt';
import { loadConfig, type DaemonConfig } from '../../src/daemon/config.js';
import { connectMqtt, type MqttConnectOptions, type MqttConnection } from '../../src/protocol/connect.js';
import { createLogger } from '../../src/daemon/logger.js';
import type { Reply } from '../../src/protocol/messages.js';
import { Controller } from '../../src/daemon/controller.js';
import type { DaemonEngine } from '../../src/daemon/pipeline.js';
import type { Model } from '../../src/engine/engine.js';
import { fixture, HAVE_FIXTURES } from './fixtures.js';

export const STORIES = fixture('stories260K/stories260K.gguf');

/** Each in-process daemon gets a cache file of its own here. */
const CACHE_DIR = mkdtempSync(path.join(tmpdir(), 'bonsai-test-daemons-'));

/** The real engine on the tiny stories model (a fresh Model each call: one generation per model). */
export async function loadStories(): Promise<Model> {
  const { Model } = await import('../../src/engine/engine.js');
  return Model.load(STORIES, { threads: 1 });
}

export { HAVE_FIXTURES };

export function testConfig(flags: Record<string, unknown> = {}): DaemonConfig {
  return loadConfig({
    flags: {
      'topics.node': `t-${randomUUID().slice(0, 8)}`,
      'log.level': process.env.BONSAI_TEST_LOG ?? 'silent',
      'health.intervalSec': 1,
      'mqtt.reconnectMinMs': 100,
      'mqtt.reconnectMaxMs': 1000,
      'cache.path': path.join(CACHE_DIR, `${randomUUID()}.db`),
      ...flags,
    },
  });
}

export async function startDaemon(brokerUrl: string, engine: DaemonEngine, config: DaemonConfig): Promise<Controller> {
  const controller = new Controller({
    config: { ...config, mqtt: { ...config.mqtt, url: brokerUrl } },
    logger: createLogger(config.log.level, config.topics.node),
    version: 'test',
    loadEngine: async () => engine,
  });
  await controller.start();
  return controller;
}

export interface Received {
  topic: string;
  reply: Reply;
  correlationData?: Buffer;
  at: number;
}

/** A client that keeps every message on the topics it watches and can wait for final replies. */
export class Observer {
  readonly messages: Received[] = [];
  readonly raw: { topic: string; payload: Buffer; retain: boolean }[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly connection: MqttConnection) {
    connection.client.on('message', (topic, payload, packet) => {
      this.raw.push({ topic, payload, retain: packet.retain });
      const reply = tryJson(payload);
      if (reply && typeof reply.id === 'string') this.messages.push({ topic, reply: reply as Reply, correlationData: packet.properties?.correlationData, at: performance.now() });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(url: string, options: Partial<MqttConnectOptions> = {}): Promise<Observer> {
    return new Observer(await connectMqtt({ url, clientId: `obs-${randomUUID().slice(0, 8)}`, timeoutMs: 10_000, reconnectMinMs: 100, reconnectMaxMs: 1000, ...options }));
  }

  get client(): MqttClient {
    return this.connection.client;
  }

  async watch(...topics: string[]): Promise<void> {
    await this.client.subscribeAsync(topics, { qos: 1 });
  }

  publish(topic: string, payload: string | Buffer, options: IClientPublishOptions = {}): Promise<unknown> {
    return this.client.publishAsync(topic, payload, { qos: 1, ...options });
  }

  repliesFor(id: string): Reply[] {
    return this.messages.filter((m) => m.reply.id === id).map((m) => m.reply);
  }

  finals(): Received[] {
    return this.messages.filter((m) => m.reply.type === 'done' || m.reply.type === 'error');
  }

  /** Waits until `done()` holds, re-checking on every message; fails after timeoutMs. */
  async until(done: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async finalFor(id: string, timeoutMs = 15_000): Promise<Reply> {
    await this.until(() => this.repliesFor(id).some(isFinal), timeoutMs, `the final reply for ${id}`);
    return this.repliesFor(id).find(isFinal)!;
  }

  close(): Promise<void> {
    return this.client.endAsync();
  }
}

export function isFinal(r: Reply): boolean {
  return r.type === 'done' || r.type === 'error';
}

function tryJson(payload: Buffer): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(payload.toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
