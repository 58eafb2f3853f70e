// Acceptance tests of the daemon against a real mosquitto (started here on free 127.0.0.1 ports)
// with the real engine on stories260K: MQTT 5 and 3.1.1, password file + ACL, TLS, the fleet's
// shared subscription, fuzzing, flooding, cancellation and a broker restart mid-stream; and the
// thinking switch on a synthetic Qwen3-shaped model whose replies are reasoning when it is on.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller } from '../src/daemon/controller.js';
import { createLogger } from '../src/daemon/logger.js';
import { Model } from '../src/engine/engine.js';
import type { DaemonEngine } from '../src/daemon/pipeline.js';
import type { Reply } from '../src/protocol/messages.js';
import { HAVE_FIXTURES, isFinal, loadStories, Observer, startDaemon, STORIES, testConfig } from './helpers/daemon.js';
import { HAVE_MOSQUITTO, startMosquitto, type Mosquitto } from './helpers/mosquitto.js';
import { mountTmpfs } from './helpers/mounts.js';
import { seeded } from './helpers/random.js';
import { synthesizeThinkingModel } from './helpers/thinking-model.js';

const RUN = HAVE_MOSQUITTO && HAVE_FIXTURES;
if (!RUN) console.warn('daemon MQTT tests skipped: they need mosquitto and the stories260K fixture');

/** Everything started by a test, stopped in afterAll whatever happened. */
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function broker(options: Parameters<typeof startMosquitto>[0] = {}): Promise<Mosquitto> {
  const b = await startMosquitto(options);
  cleanups.push(() => b.stop());
  return b;
}

async function engine(): Promise<Model> {
  const model = await loadStories();
  cleanups.push(async () => model.close());
  return model;
}

async function daemon(url: string, flags: Record<string, unknown> = {}, eng?: DaemonEngine): Promise<Controller> {
  const d = await startDaemon(url, eng ?? (await engine()), testConfig(flags));
  cleanups.push(() => d.stop());
  return d;
}

async function observer(url: string, options: Parameters<typeof Observer.connect>[1] = {}): Promise<Observer> {
  const o = await Observer.connect(url, options);
  cleanups.push(() => o.close());
  return o;
}

const textOf = (replies: Reply[], type: 'chunk' | 'thinking' = 'chunk') => replies.flatMap((r) => (r.type === type ? [r.text] : [])).join('');

describe.skipIf(!RUN)('daemon on mosquitto', () => {
  let plain: Mosquitto;
  let reference: Model;
  beforeAll(async () => {
    plain = await broker();
    reference = await engine();
  });

  it('MQTT 5: streams start/chunk/done with the correct text, echoes correlation data, expires chunks', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never' });
    expect(d.protocolName).toBe('mqtt5');
    const o = await observer(plain.url);
    await o.watch('v5/replies', d.topics.status, d.topics.health);
    const correlation = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f]);
    await o.publish(d.topics.request, JSON.stringify({ prompt: 'Once upon a time', max_tokens: 40, temperature: 0 }), {
      properties: { responseTopic: 'v5/replies', correlationData: correlation },
    });
    const id = correlation.toString('hex');
    const done = await o.finalFor(id);
    const expected = await reference.generate({ prompt: 'Once upon a time', maxTokens: 40, sampling: { temperature: 0 } }, {});
    expect(done).toMatchObject({ type: 'done', text: expected.text, finish_reason: expected.finishReason, usage: { completion_tokens: expected.ids.length } });
    const mine = o.messages.filter((m) => m.reply.id === id);
    expect(mine.map((m) => m.reply.type)).toEqual(['start', ...mine.slice(1, -1).map(() => 'chunk'), 'done']);
    expect(textOf(mine.map((m) => m.reply))).toBe(expected.text);
    for (const m of mine) expect(m.correlationData).toEqual(correlation);
    const status = o.raw.find((m) => m.topic === d.topics.status);
    expect(JSON.parse(status!.payload.toString())).toMatchObject({ state: 'online', protocol: 'mqtt5', model: reference.name });
    await o.until(() => o.raw.some((m) => m.topic === d.topics.health), 3000, 'health');
    const health = JSON.parse(o.raw.find((m) => m.topic === d.topics.health)!.payload.toString());
    expect(health).toMatchObject({ queue_depth: 0, running: 0 });
    expect(health.rss_bytes).toBeGreaterThan(0);
  });

  it('chunks carry a message expiry when the broker forwards MQTT 5 properties', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'replies.chunkIntervalMs': 0, 'replies.chunkExpirySec': 120 });
    const o = await observer(plain.url);
    const expiries: (number | undefined)[] = [];
    o.client.on('message', (_t, payload, packet) => {
      if (JSON.parse(payload.toString()).type === 'chunk') expiries.push(packet.properties?.messageExpiryInterval);
    });
    await o.watch('exp/r');
    await o.publish(d.topics.request, JSON.stringify({ id: 'e1', prompt: 'Once', max_tokens: 10, temperature: 0, reply_to: 'exp/r' }));
    await o.finalFor('e1');
    expect(expiries.length).toBeGreaterThan(0);
    for (const e of expiries) expect(e).toBeGreaterThan(0), expect(e).toBeLessThanOrEqual(120);
  });

  it('runs requests together (queue.parallel): each starts before the others end, each answer as when alone', async () => {
    const model = await Model.load(STORIES, { threads: 2, parallel: 3 });
    cleanups.push(async () => model.close());
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'replies.chunkIntervalMs': 0 }, model);
    const o = await observer(plain.url);
    await o.watch('par/#');
    const prompts = ['Once upon a time', 'Lily went', 'The dog was'];
    await Promise.all(prompts.map((prompt, i) => o.publish(d.topics.request, JSON.stringify({ id: `par${i}`, prompt, max_tokens: 60, temperature: 0, reply_to: `par/${i}` }))));
    const finals = await Promise.all(prompts.map((_, i) => o.finalFor(`par${i}`)));
    for (const [i, prompt] of prompts.entries()) {
      const alone = await reference.generate({ prompt, maxTokens: 60, sampling: { temperature: 0 } });
      expect(finals[i]).toMatchObject({ type: 'done' });
      expect(textOf(o.repliesFor(`par${i}`))).toBe(alone.text);
    }
    const arrival = (id: string, type: string) => o.messages.find((m) => m.reply.id === id && m.reply.type === type)!.at;
    const lastStart = Math.max(...prompts.map((_, i) => arrival(`par${i}`, 'start')));
    const firstDone = Math.min(...prompts.map((_, i) => arrival(`par${i}`, 'done')));
    expect(lastStart).toBeLessThan(firstDone);
  });

  it('MQTT 3.1.1: plain text prompts get a generated id on the default topic; JSON ids and reply_to work', async () => {
    const d = await daemon(plain.url, { 'mqtt.protocol': '3.1.1', 'topics.shared': 'never' });
    expect(d.protocolName).toBe('mqtt3.1.1');
    const o = await observer(plain.url, { protocol: '3.1.1' });
    await o.watch(d.topics.response('+'), 'mine/#');
    await o.publish(d.topics.request, 'Once upon a time');
    await o.until(() => o.finals().length === 1, 15_000, 'the plain-text answer');
    const [first] = o.finals();
    expect(first!.reply.type).toBe('done');
    expect(first!.topic).toBe(d.topics.response(first!.reply.id));
    await o.publish(d.topics.request, JSON.stringify({ id: 'j1', prompt: 'Lily', max_tokens: 8, reply_to: 'mine/j1', stream: false }));
    expect(await o.finalFor('j1')).toMatchObject({ type: 'done', usage: { completion_tokens: expect.any(Number) } });
    expect(o.repliesFor('j1').map((r) => r.type)).toEqual(['done']);
    expect(o.messages.find((m) => m.reply.id === 'j1')!.topic).toBe('mine/j1');
  });

  it('answers a repeated id with the earlier final reply instead of running it again', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never' });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    const body = JSON.stringify({ id: 'twice', prompt: 'Tom', max_tokens: 12 });
    await o.publish(d.topics.request, body);
    const first = await o.finalFor('twice');
    await o.publish(d.topics.request, body);
    await o.until(() => o.repliesFor('twice').filter(isFinal).length === 2, 5000, 'the replayed reply');
    const replies = o.repliesFor('twice');
    expect(replies.filter((r) => r.type === 'start')).toHaveLength(1);
    expect(replies.filter(isFinal)).toEqual([first, first]);
  });

  it('password file + ACL: the authorised client is answered, a client without rights gets nothing', async () => {
    const users = { bonsai: 'daemon-pw', alice: 'alice-pw', mallory: 'mallory-pw' };
    const acl = [
      'user bonsai',
      'topic readwrite bonsai/#',
      'topic readwrite homeassistant/#',
      'user alice',
      'topic write bonsai/+/request',
      'topic read bonsai/+/response/#',
      'user mallory',
      'topic read elsewhere/#',
      '',
    ].join('\n');
    const b = await broker({ users, acl });
    const d = await daemon(b.url, { 'mqtt.username': 'bonsai', 'mqtt.password': 'daemon-pw' });
    const alice = await observer(b.url, { username: 'alice', password: 'alice-pw' });
    const mallory = await observer(b.url, { username: 'mallory', password: 'mallory-pw' });
    await alice.watch(d.topics.response('+'));
    await mallory.watch('bonsai/#');
    // MQTT 5 tells the publisher its message was refused; the daemon never sees it.
    await expect(mallory.publish(d.topics.request, JSON.stringify({ id: 'm1', prompt: 'Once', max_tokens: 5 }))).rejects.toThrow(/not authorized/i);
    await alice.publish(d.topics.request, JSON.stringify({ id: 'a1', prompt: 'Once', max_tokens: 5 }));
    expect(await alice.finalFor('a1')).toMatchObject({ type: 'done' });
    await new Promise((r) => setTimeout(r, 500));
    expect(mallory.raw).toEqual([]);
    expect(alice.repliesFor('m1')).toEqual([]);
    await expect(Observer.connect(b.url, { username: 'alice', password: 'wrong' })).rejects.toThrow(/refused/i);
  });

  it('TLS with a CA made by the test; a client that does not trust the CA cannot connect', async () => {
    const b = await broker({ tls: true });
    const d = await daemon(b.url, { 'mqtt.ca': b.caFile });
    const o = await observer(b.url, { ca: b.caFile });
    await o.watch(d.topics.response('+'));
    await o.publish(d.topics.request, JSON.stringify({ id: 't1', prompt: 'Once', max_tokens: 5 }));
    expect(await o.finalFor('t1')).toMatchObject({ type: 'done' });
    await expect(Observer.connect(b.url, { timeoutMs: 1500 })).rejects.toThrow(/certificate/i);
  });

  it('fleet: 3 daemons share the fleet topic; 30 requests are each answered exactly once, by all of them', async () => {
    const b = await broker();
    const daemons = await Promise.all([0, 1, 2].map(() => daemon(b.url, { 'queue.maxWaiting': 30 })));
    const o = await observer(b.url);
    await o.watch('fleet/replies/#');
    const ids = Array.from({ length: 30 }, (_, i) => `f${i}`);
    for (const id of ids) await o.publish('bonsai/request', JSON.stringify({ id, prompt: 'Once upon a time', max_tokens: 16, reply_to: `fleet/replies/${id}` }));
    await o.until(() => o.finals().length >= 30, 30_000, '30 answers');
    await new Promise((r) => setTimeout(r, 300)); // room for any duplicate to show up
    const answeredBy = new Map<string, number>();
    for (const id of ids) {
      const replies = o.repliesFor(id);
      expect(replies.filter((r) => r.type === 'start'), id).toHaveLength(1);
      expect(replies.filter(isFinal).map((r) => r.type), id).toEqual(['done']);
      const node = String(replies.find((r) => r.type === 'start')?.['node']);
      answeredBy.set(node, (answeredBy.get(node) ?? 0) + 1);
    }
    expect([...answeredBy.keys()].sort()).toEqual(daemons.map((d) => d.topics.status.split('/')[1]).sort());
  });

  it('fuzz: 1,000 random payloads each get an error reply or a correct answer; the daemon stays up, RSS bounded', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'queue.maxWaiting': 1000, 'limits.maxTokens': 8 });
    const o = await observer(plain.url);
    await o.watch('fuzz/r');
    const rssBefore = process.memoryUsage.rss();
    const random = seeded(12345);
    const kinds: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const { kind, payload } = fuzzPayload(i, random);
      kinds.push(kind);
      o.client.publish(d.topics.request, payload, { qos: 1, properties: { responseTopic: 'fuzz/r', correlationData: Buffer.from(`c${i}`) } });
    }
    const key = (m: { correlationData?: Buffer }) => m.correlationData?.toString() ?? '';
    await o.until(() => new Set(o.finals().map(key)).size >= 1000, 90_000, '1,000 final replies');
    await new Promise((r) => setTimeout(r, 200));
    const finals = o.finals();
    expect(finals).toHaveLength(1000);
    const byIndex = new Map(finals.map((f) => [Number(key(f).slice(1)), f.reply]));
    for (let i = 0; i < 1000; i++) {
      const reply = byIndex.get(i)!;
      expect(reply, `payload ${i} (${kinds[i]})`).toBeDefined();
      if (kinds[i] === 'valid') expect(reply, `payload ${i}`).toMatchObject({ type: 'done', text: expect.any(String) });
      else if (reply.type === 'error') expect(['bad_request', 'too_large']).toContain(reply.code);
      else expect(reply.type, `payload ${i} (${kinds[i]})`).toBe('done');
    }
    expect(finals.some((f) => f.reply.type === 'error' && f.reply.code === 'too_large' && /tokens, context holds/.test(f.reply.message))).toBe(true);
    expect(process.memoryUsage.rss() - rssBefore).toBeLessThan(300 * 2 ** 20);
    await o.watch(d.topics.response('+'));
    await o.publish(d.topics.request, JSON.stringify({ id: 'after-fuzz', prompt: 'Once', max_tokens: 4 }));
    expect(await o.finalFor('after-fuzz')).toMatchObject({ type: 'done' });
  }, 120_000);

  it('flood: beyond the queue the excess get busy at once, the rest are answered, none is lost', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'queue.maxWaiting': 3 });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    const sentAt = performance.now();
    const ids = Array.from({ length: 25 }, (_, i) => `fl${i}`);
    await Promise.all(ids.map((id) => o.publish(d.topics.request, JSON.stringify({ id, prompt: 'Once upon a time', max_tokens: 200, temperature: 1, seed: 1 }))));
    await o.until(() => o.finals().length >= 25, 30_000, '25 final replies');
    const finals = ids.map((id) => o.messages.find((m) => m.reply.id === id && isFinal(m.reply))!);
    const busy = finals.filter((f) => f.reply.type === 'error' && f.reply.code === 'busy');
    const done = finals.filter((f) => f.reply.type === 'done');
    expect(busy.length + done.length).toBe(25);
    expect(done.length).toBeGreaterThanOrEqual(4);
    expect(busy.length).toBeGreaterThan(0);
    for (const b of busy) expect(b.at - sentAt).toBeLessThan(1000);
  });

  it('cancels a queued request (error cancelled) and a running one (done, finish_reason cancelled)', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never' });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    const long = { prompt: 'Once upon a time', max_tokens: 2000, temperature: 1, seed: 7 };
    await o.publish(d.topics.request, JSON.stringify({ id: 'run', ...long }));
    await o.publish(d.topics.request, JSON.stringify({ id: 'wait', ...long }));
    await o.until(() => o.repliesFor('run').length > 0, 10_000, 'the first request to start');
    await o.publish(d.topics.cancel, JSON.stringify({ id: 'wait' }));
    await o.publish(d.topics.cancel, 'run');
    expect(await o.finalFor('wait')).toMatchObject({ type: 'error', code: 'cancelled' });
    expect(o.repliesFor('wait').map((r) => r.type)).toEqual(['error']);
    const run = await o.finalFor('run');
    expect(run).toMatchObject({ type: 'done', finish_reason: 'cancelled' });
    expect((run as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeLessThan(2000);
  });

  it('broker restart mid-stream: the daemon reconnects and the client still gets the final reply', async () => {
    const b = await broker();
    const d = await daemon(b.url, { 'topics.shared': 'never' });
    const o = await observer(b.url);
    const { ask } = await import('../src/client/ask.js');
    const replies: Reply[] = [];
    let restarted: Promise<void> | undefined;
    const final = await ask(o.connection, {
      base: 'bonsai',
      node: d.topics.status.split('/')[1],
      request: { id: 'restart', prompt: 'Once upon a time', max_tokens: 2000, temperature: 1, seed: 3 },
      timeoutMs: 20_000,
      onReply: (r) => {
        replies.push(r);
        if (r.type === 'start') restarted ??= b.restart(300);
      },
    });
    await restarted;
    expect(isFinal(final)).toBe(true);
    expect(final.id).toBe('restart');
    const status = await Observer.connect(b.url);
    cleanups.push(() => status.close());
    await status.watch(d.topics.status);
    await status.until(() => status.raw.some((m) => JSON.parse(m.payload.toString()).state === 'online'), 5000, 'online status again');
  });

  it('a request without a seed gets a fresh one, reported in done; sending it back reproduces the answer', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never' });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    const body = { prompt: 'Once upon a time', max_tokens: 40, temperature: 1 };
    const done = async (id: string, extra: Record<string, unknown> = {}) => {
      await o.publish(d.topics.request, JSON.stringify({ id, ...body, ...extra }));
      return (await o.finalFor(id)) as Extract<Reply, { type: 'done' }>;
    };
    const a = await done('seed-a');
    const b = await done('seed-b');
    expect(a.seed).toEqual(expect.any(Number));
    expect(b.seed).not.toBe(a.seed);
    expect(b.text).not.toBe(a.text);
    const again = await done('seed-a-again', { seed: a.seed });
    expect(again).toMatchObject({ seed: a.seed, text: a.text });
  });

  it('a started request ends with done: too_large before start, a deadline as finish_reason timeout with the text so far, a full context as context', async () => {
    const small = await Model.load(STORIES, { threads: 1, contextSize: 64 });
    cleanups.push(async () => small.close());
    const d = await daemon(plain.url, { 'topics.shared': 'never' }, small);
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    await o.publish(d.topics.request, JSON.stringify({ id: 'big', prompt: 'Once upon a time there was a dog. '.repeat(20), max_tokens: 4 }));
    expect(await o.finalFor('big')).toMatchObject({ type: 'error', code: 'too_large', message: expect.stringMatching(/context holds 64/) });
    expect(o.repliesFor('big').map((r) => r.type)).toEqual(['error']);
    await o.publish(d.topics.request, JSON.stringify({ id: 'full', prompt: 'Once upon a time', max_tokens: 500, temperature: 1, seed: 2 }));
    const full = (await o.finalFor('full')) as Extract<Reply, { type: 'done' }>;
    expect(full).toMatchObject({ type: 'done', finish_reason: 'context' });
    expect(full.usage.prompt_tokens + full.usage.completion_tokens).toBeGreaterThanOrEqual(64);
    expect(full.usage.completion_tokens).toBeLessThan(500);

    const roomy = await daemon(plain.url, { 'topics.shared': 'never' });
    await o.watch(roomy.topics.response('+'));
    await o.publish(roomy.topics.request, JSON.stringify({ id: 'late', prompt: 'Once upon a time', max_tokens: 4000, temperature: 1, seed: 3, deadline_ms: 150 }));
    const late = (await o.finalFor('late')) as Extract<Reply, { type: 'done' }>;
    expect(late).toMatchObject({ type: 'done', finish_reason: 'timeout' });
    expect(late.usage.completion_tokens).toBeGreaterThan(0);
    expect(late.usage.completion_tokens).toBeLessThan(4000);
    expect(late.text).toBe(textOf(o.repliesFor('late')));
    expect(late.text.length).toBeGreaterThan(0);
  });

  it('while stopping it still answers: queued and new requests, on the node and the shared fleet topic, get busy', async () => {
    // A base topic of its own: no other test's daemon shares this fleet.
    const d = await daemon(plain.url, { 'topics.base': 'drainbase' });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'), 'drain/+');
    const long = { prompt: 'Once upon a time', max_tokens: 1500, temperature: 1, seed: 9 };
    await o.publish(d.topics.request, JSON.stringify({ id: 'run', ...long }));
    await o.publish(d.topics.request, JSON.stringify({ id: 'wait', ...long }));
    await o.until(() => o.repliesFor('run').some((r) => r.type === 'chunk'), 10_000, 'the first chunk');
    const stopped = d.stop();
    await o.publish(d.topics.request, JSON.stringify({ id: 'new-node', prompt: 'Hi', max_tokens: 2 }));
    await o.publish(d.topics.fleetRequest, JSON.stringify({ id: 'new-fleet', prompt: 'Hi', max_tokens: 2, reply_to: 'drain/new-fleet' }));
    for (const id of ['wait', 'new-node', 'new-fleet']) expect(await o.finalFor(id), id).toMatchObject({ type: 'error', code: 'busy' });
    expect(await o.finalFor('run', 20_000)).toMatchObject({ type: 'done', finish_reason: 'length' });
    await stopped;
  });

  it('keeps its retained status online: through a broker restart, and when a late last will overwrites it', async () => {
    const b = await broker({ persistence: true });
    const d = await daemon(b.url, { 'topics.shared': 'never' });
    const o = await observer(b.url);
    await o.watch(d.topics.status);
    const states = () => o.raw.filter((m) => m.topic === d.topics.status).map((m) => JSON.parse(m.payload.toString()).state);
    const lastState = () => states().at(-1);
    await o.until(() => lastState() === 'online', 5000, 'online');
    // What a broker does when the daemon's new session takes over the old one: publish the old will.
    const before = states().length;
    await o.publish(d.topics.status, JSON.stringify({ state: 'offline', node: 'x' }), { retain: true });
    // the daemon may answer it before this observer looks: the overwrite is seen, not necessarily last
    await o.until(() => states().slice(before).includes('offline'), 5000, 'the overwrite');
    await o.until(() => lastState() === 'online', 5000, 'online again');
    await b.restart(300);
    const fresh = await Observer.connect(b.url);
    cleanups.push(() => fresh.close());
    await new Promise((r) => setTimeout(r, 2000));
    await fresh.watch(d.topics.status);
    await fresh.until(() => fresh.raw.length > 0, 5000, 'the retained status');
    expect(JSON.parse(fresh.raw.at(-1)!.payload.toString())).toMatchObject({ state: 'online' });
  });

  it('ignores a retained request (it would run at every restart) and the empty message that clears it', async () => {
    const flags = { 'topics.shared': 'never', 'topics.node': `ret-${randomBytes(3).toString('hex')}` };
    const o = await observer(plain.url);
    const requestTopic = `bonsai/${flags['topics.node']}/request`;
    await o.watch(`bonsai/${flags['topics.node']}/response/+`);
    await o.publish(requestTopic, JSON.stringify({ id: 'kept', prompt: 'Once', max_tokens: 2 }), { retain: true });
    const d = await daemon(plain.url, flags);
    await o.publish(requestTopic, '', { retain: true });
    await o.publish(d.topics.request, JSON.stringify({ id: 'live', prompt: 'Once', max_tokens: 2 }));
    expect(await o.finalFor('live')).toMatchObject({ type: 'done' });
    await new Promise((r) => setTimeout(r, 300));
    expect(o.messages.map((m) => m.reply.id)).toEqual(expect.arrayContaining(['live']));
    expect(o.messages.filter((m) => m.reply.id !== 'live')).toEqual([]);
  });

  it('caches: a shared prompt prefix is reused (timings.cached_tokens), a deterministic answer is recalled (timings.cached), health shows both', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'cache.blockTokens': 16 });
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'), d.topics.health);
    const story = 'Once upon a time there was a little girl named Lily who loved to play in the park with her dog. '.repeat(3);
    const ask = async (id: string, body: Record<string, unknown>) => {
      await o.publish(d.topics.request, JSON.stringify({ id, max_tokens: 8, ...body }));
      return (await o.finalFor(id)) as Extract<Reply, { type: 'done' }>;
    };
    const first = await ask('p1', { prompt: `${story}Tom`, temperature: 0 });
    // Another prompt in between, so the context no longer holds the story: the prefix comes from the cache.
    await ask('other', { prompt: 'The cat', temperature: 0 });
    const second = await ask('p2', { prompt: `${story}Sue`, temperature: 0 });
    expect(first.timings.cached_tokens).toBe(0);
    expect(second.timings.cached_tokens).toBeGreaterThanOrEqual(48);
    const again = await ask('p1-again', { prompt: `${story}Tom`, temperature: 0 });
    expect(again).toMatchObject({ text: first.text, finish_reason: first.finish_reason, timings: { cached: true } });
    expect(o.repliesFor('p1-again').map((r) => r.type)).toEqual(['start', 'chunk', 'done']);
    // Sampled without a seed: never recalled.
    const s1 = await ask('s1', { prompt: 'Lily', temperature: 1 });
    const s2 = await ask('s2', { prompt: 'Lily', temperature: 1 });
    expect(s1.timings.cached).toBeUndefined();
    expect(s2.timings.cached).toBeUndefined();
    await o.until(() => o.raw.some((m) => m.topic === d.topics.health && JSON.parse(m.payload.toString()).cache?.answers?.hits >= 1), 5000, 'health with cache figures');
    const health = JSON.parse(o.raw.filter((m) => m.topic === d.topics.health).at(-1)!.payload.toString());
    expect(health.cache).toMatchObject({ available: true, prefix: { memory: { hits: expect.any(Number) } }, answers: { hits: 1 } });
    expect(health.journal).toMatchObject({ done: expect.any(Number) });
  });

  it('a cache file that cannot be written (read-only directory) turns the cache off with a warning; every request is still answered', async () => {
    const mount = mountTmpfs(path.join(mkdtempSync(path.join(tmpdir(), 'bonsai-ro-')), 'ro'), { readOnly: true });
    if (!mount) return void console.warn('skipped: cannot mount a read-only tmpfs here (needs root)');
    cleanups.push(async () => mount.unmount());
    const lines: Record<string, unknown>[] = [];
    const config = testConfig({ 'topics.shared': 'never', 'mqtt.url': plain.url, 'cache.path': path.join(mount.dir, 'cache.db'), 'log.level': 'info' });
    const logger = createLogger('info', config.topics.node, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const d = new Controller({ config, logger, version: 'test', loadEngine: engine });
    await d.start();
    cleanups.push(() => d.stop());
    const o = await observer(plain.url);
    await o.watch(d.topics.response('+'));
    for (const id of ['ro-1', 'ro-2']) {
      await o.publish(d.topics.request, JSON.stringify({ id, prompt: 'Once', max_tokens: 4, temperature: 0 }));
      expect(await o.finalFor(id)).toMatchObject({ type: 'done' });
    }
    expect(lines.filter((l) => l.msg === 'cache off: answering without it').length).toBeGreaterThanOrEqual(1);
  });

  it('Home Assistant: discovery with availability, republished when HA comes online, prompts via the text entity', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'homeassistant.discovery': true });
    const node = d.topics.status.split('/')[1]!;
    const o = await observer(plain.url);
    await o.watch(`homeassistant/+/bonsai_${node}/+/config`, d.topics.haAnswer);
    await o.until(() => o.raw.length >= 5, 3000, 'discovery configs');
    const configs = o.raw.filter((m) => m.topic.endsWith('/config'));
    expect(configs.every((m) => m.retain)).toBe(true);
    const text = JSON.parse(configs.find((m) => m.topic.includes('/text/'))!.payload.toString());
    expect(text).toMatchObject({ command_topic: d.topics.haPrompt, availability_topic: d.topics.status });
    const before = o.raw.length;
    await o.publish('homeassistant/status', 'online');
    await o.until(() => o.raw.length >= before + configs.length, 3000, 'republished discovery');
    await o.publish(d.topics.haPrompt, 'Once upon a time');
    await o.until(() => o.raw.some((m) => m.topic === d.topics.haAnswer), 10_000, 'the answer sensor');
    const answer = JSON.parse(o.raw.find((m) => m.topic === d.topics.haAnswer)!.payload.toString());
    expect(answer).toMatchObject({ type: 'done', text: expect.any(String) });
  });
});

describe.skipIf(!RUN)('the thinking switch on mosquitto (synthetic Qwen3 shape whose template opens <think>)', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-think-mqtt-'));
  const file = path.join(tmp, 'thinking.gguf');
  const MESSAGES = [{ role: 'user' as const, content: 'Why is the sky blue?' }];
  let plain: Mosquitto;
  let reference: Model;
  beforeAll(async () => {
    await synthesizeThinkingModel(file);
    cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));
    plain = await broker();
    reference = await thinkingModel();
  }, 120_000);

  async function thinkingModel(): Promise<Model> {
    const model = await Model.load(file, { threads: 1, contextSize: 256 });
    cleanups.push(async () => model.close());
    return model;
  }
  const expected = (enableThinking: boolean) => reference.generate({ messages: MESSAGES, enableThinking, maxTokens: 24, sampling: { temperature: 0 } });

  it('MQTT 5, streaming: think=true sends the reasoning as "thinking" chunks and in done.thinking, never in the answer', async () => {
    const d = await daemon(plain.url, { 'topics.shared': 'never', 'replies.chunkIntervalMs': 0 }, await thinkingModel());
    expect(d.protocolName).toBe('mqtt5');
    const o = await observer(plain.url);
    await o.watch('think/v5');
    const request = { messages: MESSAGES, max_tokens: 24, temperature: 0 };
    await o.publish(d.topics.request, JSON.stringify({ ...request, think: true }), { properties: { responseTopic: 'think/v5', correlationData: Buffer.from('on') } });
    const on = await o.finalFor('on');
    const want = await expected(true);
    expect(want.thinking!.length).toBeGreaterThan(10);
    expect(on).toMatchObject({ type: 'done', text: want.text, thinking: want.thinking, usage: { completion_tokens: want.ids.length } });
    const replies = o.repliesFor('on');
    const thoughts = replies.flatMap((r) => (r.type === 'thinking' ? [r] : []));
    expect(thoughts.length).toBeGreaterThan(1);
    expect(thoughts.map((r) => r.seq)).toEqual(thoughts.map((_, i) => i));
    expect(textOf(replies, 'thinking')).toBe(want.thinking);
    expect(textOf(replies)).toBe(want.text);
    for (const r of replies) if (r.type === 'chunk' || r.type === 'done') expect(r.text).not.toContain('<think>');

    // The default (think off): the same model answers, and no reasoning is sent at all.
    await o.publish(d.topics.request, JSON.stringify(request), { properties: { responseTopic: 'think/v5', correlationData: Buffer.from('off') } });
    const off = await o.finalFor('off');
    const plainAnswer = await expected(false);
    expect(plainAnswer.text).not.toBe('');
    expect(off).toMatchObject({ type: 'done', text: plainAnswer.text });
    expect(off).not.toHaveProperty('thinking');
    expect(o.repliesFor('off').map((r) => r.type)).not.toContain('thinking');
    expect(textOf(o.repliesFor('off'))).toBe(plainAnswer.text);
  });

  it('MQTT 3.1.1, final reply only: done carries the reasoning beside the answer', async () => {
    const d = await daemon(plain.url, { 'mqtt.protocol': '3.1.1', 'topics.shared': 'never' }, await thinkingModel());
    expect(d.protocolName).toBe('mqtt3.1.1');
    const o = await observer(plain.url, { protocol: '3.1.1' });
    await o.watch('think/v3/#');
    await o.publish(d.topics.request, JSON.stringify({ id: 'v3', messages: MESSAGES, think: true, max_tokens: 24, temperature: 0, stream: false, reply_to: 'think/v3/r' }));
    const want = await expected(true);
    expect(await o.finalFor('v3')).toMatchObject({ type: 'done', text: want.text, thinking: want.thinking });
    expect(o.repliesFor('v3').map((r) => r.type)).toEqual(['done']);
  });

  it('refuses think=true where it cannot apply: a plain prompt, or a model without a chat template', async () => {
    const withTemplate = await daemon(plain.url, { 'topics.shared': 'never' }, await thinkingModel());
    const base = await daemon(plain.url, { 'topics.shared': 'never' });
    const o = await observer(plain.url);
    await o.watch('think/refused/#');
    await o.publish(withTemplate.topics.request, JSON.stringify({ id: 'p', prompt: 'Hi', think: true, reply_to: 'think/refused/p' }));
    expect(await o.finalFor('p')).toMatchObject({ type: 'error', code: 'bad_request', message: expect.stringMatching(/think: .*"messages" instead of "prompt"/) });
    await o.publish(base.topics.request, JSON.stringify({ id: 'b', messages: MESSAGES, think: true, reply_to: 'think/refused/b' }));
    expect(await o.finalFor('b')).toMatchObject({ type: 'error', code: 'bad_request', message: expect.stringMatching(/no chat template.*cannot think/) });
    for (const id of ['p', 'b']) expect(o.repliesFor(id).map((r) => r.type)).toEqual(['error']);
  });
});

const WRONG_VALUES: unknown[] = [null, true, -1, 1.5, 1e308, '', 'x', [], [1, 'a'], {}, { a: 1 }, '\u0000', 'a/#'];
const FIELDS = ['id', 'prompt', 'messages', 'system', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'think', 'stream', 'reply_to', 'priority', 'deadline_ms'];

function fuzzPayload(i: number, random: () => number): { kind: string; payload: Buffer } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  if (i === 0 || i === 500) return { kind: 'huge', payload: Buffer.alloc(10 * 2 ** 20, 0x41) };
  switch (Math.floor(random() * 8)) {
    case 0:
      return { kind: 'binary', payload: randomBytes(1 + Math.floor(random() * 300)) };
    case 1:
      return { kind: 'invalid-utf8', payload: Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]) };
    case 2:
      return { kind: 'wrong-type', payload: json({ prompt: 'Once', [pick(FIELDS)]: pick(WRONG_VALUES) }) };
    case 3:
      return { kind: 'too-long-prompt', payload: json({ prompt: 'Once upon a time there was a dog. '.repeat(400), max_tokens: 4 }) };
    case 4:
      return { kind: 'unknown-field', payload: json({ prompt: 'Once', max_tokens: 2, [`x${Math.floor(random() * 1000)}`]: 1 }) };
    case 5:
      return { kind: 'broken-json', payload: Buffer.from(JSON.stringify({ prompt: 'Once', max_tokens: 2 }).slice(0, 1 + Math.floor(random() * 20))) };
    case 6:
      return { kind: 'plain-text', payload: Buffer.from(`Lily ${'and Tom '.repeat(Math.floor(random() * 5))}`) };
    default:
      return { kind: 'valid', payload: json({ prompt: pick(['Once', 'The cat', 'Lily saw']), max_tokens: 1 + Math.floor(random() * 4), temperature: random(), seed: i }) };
  }
}
