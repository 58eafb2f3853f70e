// Unit tests of the daemon's pure parts: config layering, request validation and rendering,
// the scheduler, reply coalescing, health and discovery. No broker, no model.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, describeConfig, loadConfig, readConfig } from '../src/daemon/config.js';
import { cpuTemperature } from '../src/daemon/extensions/health.js';
import { discoveryMessages, discoveryRemovals } from '../src/daemon/extensions/homeassistant.js';
import { Scheduler, type AbortReason, type Job } from '../src/daemon/queue.js';
import { ReplyStream, type PublishOptions } from '../src/daemon/replies.js';
import { isRejection, modelCannotServe, parseRequest, renderForModel, type Rejection, type Request } from '../src/daemon/request.js';
import { topicsFor } from '../src/protocol/topics.js';
import { startEmbeddedBroker } from '../src/daemon/broker.js';
import { connectMqtt, ConnectError } from '../src/protocol/connect.js';
import { freePort } from './helpers/mosquitto.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'bonsai-unit-'));
afterEach(() => vi.useRealTimers());
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

describe('config', () => {
  it('has a default and a description for every key it documents', () => {
    const keys = describeConfig();
    expect(keys.length).toBeGreaterThan(30);
    for (const k of keys) expect(k.description, k.key).not.toBe('');
    expect(keys.find((k) => k.key === 'queue.maxWaiting')).toMatchObject({ env: 'BONSAI_QUEUE_MAX_WAITING', default: '8' });
    expect(keys.find((k) => k.key === 'replies.chunkIntervalMs')?.env).toBe('BONSAI_REPLIES_CHUNK_INTERVAL_MS');
  });

  it('layers defaults < file < environment < flags', () => {
    const file = path.join(tmp, 'c.json');
    writeFileSync(file, JSON.stringify({ version: 2, queue: { maxWaiting: 3 }, mqtt: { url: 'mqtt://file:1883', qos: 0 }, topics: { node: 'from-file' } }));
    const c = loadConfig({ file, env: { BONSAI_MQTT_URL: 'mqtt://env:1883', BONSAI_HOMEASSISTANT_DISCOVERY: 'false', BONSAI_TOPICS_NODE: 'from-env' }, flags: { 'topics.node': 'from-flag', 'model.path': undefined } });
    expect(c.queue.maxWaiting).toBe(3);
    expect(c.mqtt.qos).toBe(0);
    expect(c.mqtt.url).toBe('mqtt://env:1883');
    expect(c.homeassistant.discovery).toBe(false);
    expect(c.topics.node).toBe('from-flag');
    expect(c.sampling.maxTokens).toBe(256);
    expect(c.topics.node).not.toBe('');
  });

  it('migrates a file written for an older version (renamed keys) and accepts it, saying what changed', () => {
    const unversioned = path.join(tmp, 'v1.json');
    writeFileSync(unversioned, JSON.stringify({ queue: { max: 3 }, mqtt: { qos: 0 } }));
    const read = readConfig({ file: unversioned });
    expect(read.config.queue.maxWaiting).toBe(3);
    expect(read.config.version).toBe(2);
    expect(read.config.mqtt.qos).toBe(0);
    expect(read.warnings).toEqual([expect.stringMatching(/"queue\.max" is now "queue\.maxWaiting"/)]);
    const v1 = path.join(tmp, 'v1-explicit.json');
    writeFileSync(v1, JSON.stringify({ version: 1, queue: { max: 5 } }));
    expect(loadConfig({ file: v1 }).queue.maxWaiting).toBe(5);
    // An environment file deployed with the old variable name keeps working too.
    const env = readConfig({ env: { BONSAI_QUEUE_MAX: '6' } });
    expect(env.config.queue.maxWaiting).toBe(6);
    expect(env.warnings).toEqual(['environment: BONSAI_QUEUE_MAX is now BONSAI_QUEUE_MAX_WAITING']);
    expect(loadConfig({ env: { BONSAI_QUEUE_MAX: '6', BONSAI_QUEUE_MAX_WAITING: '2' } }).queue.maxWaiting).toBe(2);
  });

  it('refuses a file newer than it reads, an old key in a current file, and both names at once', () => {
    const file = path.join(tmp, 'versions.json');
    writeFileSync(file, JSON.stringify({ version: 3 }));
    expect(() => loadConfig({ file })).toThrow(/version 3, newer than this bonsai-edge reads \(2\)/);
    writeFileSync(file, JSON.stringify({ version: 'two' }));
    expect(() => loadConfig({ file })).toThrow(/"version" must be an integer/);
    writeFileSync(file, JSON.stringify({ version: 2, queue: { max: 3 } }));
    expect(() => loadConfig({ file })).toThrow(/max/);
    writeFileSync(file, JSON.stringify({ queue: { max: 3, maxWaiting: 4 } }));
    expect(() => loadConfig({ file })).toThrow(/both "queue\.max" and its new name "queue\.maxWaiting"/);
  });

  it('refuses node and base topics that would never work on a broker, naming the key', () => {
    for (const node of ['a/b', 'with+plus', 'hash#', '$sys', '']) {
      expect(() => loadConfig({ flags: { 'topics.node': node } }), node).toThrow(/topics\.node/);
    }
    for (const base of ['a//b', '/leading', 'trailing/', 'wild/+', 'wild/#', '$SYS']) {
      expect(() => loadConfig({ flags: { 'topics.base': base } }), base).toThrow(/topics\.base/);
    }
    expect(() => loadConfig({ flags: { 'topics.sharedGroup': 'a/b' } })).toThrow(/topics\.sharedGroup/);
    expect(loadConfig({ flags: { 'topics.base': 'home/bonsai', 'topics.node': 'pi-5.kitchen' } }).topics).toMatchObject({ base: 'home/bonsai', node: 'pi-5.kitchen' });
  });

  it('refuses a broker URL that is not one, in one line with the value given', () => {
    for (const url of ['notaurl', 'http://host', 'mqtt://']) {
      const message = (() => {
        try {
          loadConfig({ flags: { 'mqtt.url': url } });
          return 'accepted';
        } catch (err) {
          return (err as Error).message;
        }
      })();
      expect(message, url).toMatch(/^invalid configuration: mqtt\.url: must be a broker URL such as mqtt:\/\/host:1883/);
      expect(message, url).toContain(`(given: "${url}")`);
      expect(message.includes('\n'), url).toBe(false);
    }
    for (const url of ['mqtt://broker.lan:1883', 'mqtts://10.0.0.2:8883', 'ws://host:9001/mqtt']) expect(loadConfig({ flags: { 'mqtt.url': url } }).mqtt.url).toBe(url);
  });

  it('rejects unknown keys, wrong types and unreadable files with the key named', () => {
    const bad = path.join(tmp, 'bad.json');
    writeFileSync(bad, JSON.stringify({ queue: { maxx: 3 } }));
    expect(() => loadConfig({ file: bad })).toThrow(/maxx/);
    expect(() => loadConfig({ env: { BONSAI_QUEUE_MAX_WAITING: 'lots' } })).toThrow(/queue\.maxWaiting/);
    expect(() => loadConfig({ file: path.join(tmp, 'missing.json') })).toThrow(ConfigError);
    writeFileSync(bad, '{ not json');
    expect(() => loadConfig({ file: bad })).toThrow(/not valid JSON/);
  });
});

describe('requests', () => {
  const config = loadConfig({ flags: { 'topics.node': 'n1' } });
  const topics = topicsFor('bonsai', 'n1');
  const parse = (payload: string | Buffer, extra: { responseTopic?: string; correlationData?: Buffer } = {}) =>
    parseRequest({ payload: typeof payload === 'string' ? Buffer.from(payload) : payload, ...extra }, config, topics.response);
  const ok = (r: Request | Rejection): Request => {
    if (isRejection(r)) throw new Error(`rejected: ${r.message}`);
    return r;
  };

  it('takes plain text as a prompt with defaults and generates an id', () => {
    const r = ok(parse('Once upon a time'));
    expect(r.input).toEqual({ prompt: 'Once upon a time' });
    expect(r.options.maxTokens).toBe(256);
    expect(r.route.topic).toBe(`bonsai/n1/response/${r.route.id}`);
    expect(r.route.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.stream).toBe(true);
  });

  it('maps JSON fields to engine options', () => {
    const r = ok(parse(JSON.stringify({ id: 'a1', prompt: 'x', max_tokens: 5, temperature: 0, top_k: 3, top_p: 0.5, min_p: 0.1, seed: 7, stop: ['.'], stream: false, priority: 2, deadline_ms: 1000, reply_to: 'my/replies' })));
    expect(r.route).toEqual({ id: 'a1', topic: 'my/replies' });
    expect(r.options).toEqual({ maxTokens: 5, stop: ['.'], draft: 8, sampling: { temperature: 0, topK: 3, topP: 0.5, minP: 0.1, seed: 7 } });
    expect(r.priority).toBe(2);
    expect(r.deadline! - r.receivedAt).toBe(1000);
    expect(r.stream).toBe(false);
  });

  it('drafts up to model.draftTokens unless the request says otherwise', () => {
    expect(ok(parse(JSON.stringify({ prompt: 'x', temperature: 0 }))).options.draft).toBe(8);
    expect(ok(parse(JSON.stringify({ prompt: 'x', temperature: 0.7 }))).options.draft).toBe(8);
    expect(ok(parse(JSON.stringify({ prompt: 'x', temperature: 0.7, draft: 4 }))).options.draft).toBe(4);
    expect(ok(parse(JSON.stringify({ prompt: 'x', temperature: 0, draft: 0 }))).options.draft).toBe(0);
    expect(parse(JSON.stringify({ id: 'd1', prompt: 'x', draft: 65 }))).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/draft/) });
  });

  it('lets MQTT 5 response topic and correlation data override reply_to and id', () => {
    const corr = Buffer.from([0xff, 0x00, 0x10]);
    const r = ok(parse(JSON.stringify({ id: 'a1', prompt: 'x', reply_to: 'mine' }), { responseTopic: 'v5/replies', correlationData: corr }));
    expect(r.route.topic).toBe('v5/replies');
    expect(r.route.correlationData).toBe(corr);
    expect(r.route.id).toBe('ff0010');
    expect(ok(parse('hi', { correlationData: Buffer.from('req-7') })).route.id).toBe('req-7');
  });

  it.each([
    ['invalid UTF-8', Buffer.from([0x7b, 0xc3, 0x28]), 'bad_request', /UTF-8/],
    ['broken JSON', '{"prompt": ', 'bad_request', /not valid JSON/],
    ['empty payload', '', 'bad_request', /empty prompt/],
    ['wrong type', '{"prompt": 5}', 'bad_request', /prompt/],
    ['unknown field', '{"prompt": "x", "max_token": 5}', 'bad_request', /unknown field.*max_token/],
    ['both prompt and messages', '{"prompt": "x", "messages": [{"role":"user","content":"y"}]}', 'bad_request', /exactly one/],
    ['neither', '{"id": "q"}', 'bad_request', /exactly one/],
    ['wildcard reply_to', '{"prompt": "x", "reply_to": "a/#"}', 'bad_request', /reply_to/],
    ['too many tokens', '{"prompt": "x", "max_tokens": 100000}', 'too_large', /max_tokens/],
    ['too large', Buffer.alloc(300_000, 0x61), 'too_large', /payload is 300000 bytes/],
    ['array', '{"prompt": ["x"]}', 'bad_request', /prompt/],
    ['think that is not a boolean', '{"messages": [{"role":"user","content":"y"}], "think": "yes"}', 'bad_request', /think: .*boolean/],
    ['think with a plain prompt', '{"prompt": "x", "think": true}', 'bad_request', /^invalid request: think: thinking applies to chat requests: send "messages" instead of "prompt"$/],
  ])('rejects %s with a clear error', (_name, payload, code, message) => {
    const r = parse(payload);
    expect(isRejection(r)).toBe(true);
    expect(r).toMatchObject({ code, message: expect.stringMatching(message) });
  });

  it('still answers an invalid request on its own id and reply_to when those are valid', () => {
    const r = parse('{"id": "k9", "reply_to": "x/y", "prompt": 1}') as Rejection;
    expect(r.route).toEqual({ id: 'k9', topic: 'x/y' });
    const bad = parse('{"id": "a/b", "prompt": 1}') as Rejection;
    expect(bad.route.topic).toBe(`bonsai/n1/response/${bad.route.id}`);
    expect(bad.route.id).not.toBe('a/b');
  });

  it('takes think for chat requests, off by default, and passes it to the template only', () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    expect(ok(parse(JSON.stringify({ messages }))).think).toBe(false);
    expect(ok(parse('Plain text')).think).toBe(false);
    expect(ok(parse(JSON.stringify({ prompt: 'x', think: false }))).think).toBe(false);
    const thinking = ok(parse(JSON.stringify({ messages, think: true })));
    expect(thinking.think).toBe(true);
    expect(renderForModel(thinking, { chatTemplate: '{{ x }}' })).toMatchObject({ messages, enableThinking: true });
    expect(renderForModel(ok(parse(JSON.stringify({ messages }))), { chatTemplate: '{{ x }}' }).enableThinking).toBe(false);
    expect(modelCannotServe(thinking, { chatTemplate: '{{ x }}' })).toBeUndefined();
    expect(modelCannotServe(thinking, { chatTemplate: undefined })).toMatch(/no chat template.*cannot think: send the request without "think"/);
    expect(modelCannotServe({ think: false }, { chatTemplate: undefined })).toBeUndefined();
  });

  it('renders messages through the chat template only when the model has one', () => {
    const r = ok(parse(JSON.stringify({ system: 'Be brief.', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Bye' }] })));
    expect(renderForModel(r, { chatTemplate: undefined }).prompt).toBe('Be brief.\n\nHi\n\nHello\n\nBye');
    const chat = renderForModel(r, { chatTemplate: '{{ x }}' });
    expect(chat.prompt).toBeUndefined();
    expect(chat.messages?.[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(chat.messages).toHaveLength(4);
    const plain = ok(parse(JSON.stringify({ prompt: 'Once', system: 'Story:' })));
    expect(renderForModel(plain, { chatTemplate: '{{ x }}' })).toMatchObject({ prompt: 'Story:\n\nOnce' });
  });
});

describe('scheduler', () => {
  interface TJob extends Job {
    name: string;
  }
  function setup(max: number, maxRunMs = 10_000, parallel = 1) {
    const started: string[] = [];
    const dropped: [string, AbortReason][] = [];
    const finish = new Map<string, () => void>();
    const signals = new Map<string, AbortSignal>();
    const s = new Scheduler<TJob>({
      max,
      maxRunMs,
      parallel,
      run: (job, signal) => {
        started.push(job.name);
        signals.set(job.name, signal);
        return new Promise<void>((resolve) => {
          finish.set(job.name, resolve);
          signal.addEventListener('abort', () => resolve());
        });
      },
      dropped: (job, reason) => dropped.push([job.name, reason]),
    });
    const job = (name: string, priority = 0, deadline?: number): TJob => ({ key: name, id: name, name, priority, deadline });
    return { s, started, dropped, finish, signals, job };
  }
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('runs one at a time, by priority then arrival, and answers busy when full', async () => {
    const { s, started, finish, job } = setup(3);
    expect(s.submit(job('a'))).toBe('queued');
    expect(s.submit(job('b'))).toBe('queued');
    expect(s.submit(job('c', 5))).toBe('queued');
    expect(s.submit(job('d'))).toBe('queued');
    expect(s.submit(job('e'))).toBe('busy');
    expect(s.depth).toBe(3);
    expect(started).toEqual(['a']);
    for (const name of ['a', 'c', 'b']) {
      finish.get(name)!();
      await tick();
    }
    expect(started).toEqual(['a', 'c', 'b', 'd']);
  });

  it('runs up to `parallel` jobs at once, the next one starting as soon as one ends', async () => {
    const { s, started, finish, signals, dropped, job } = setup(2, 10_000, 3);
    for (const name of ['a', 'b', 'c', 'd', 'e']) expect(s.submit(job(name))).toBe('queued');
    expect(s.submit(job('f'))).toBe('busy');
    expect(started).toEqual(['a', 'b', 'c']);
    expect([s.active, s.depth]).toEqual([3, 2]);
    expect(s.submit(job('b'))).toBe('duplicate');
    finish.get('b')!();
    await tick();
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    expect(s.cancel('c')).toBe(1);
    expect(signals.get('c')!.reason).toBe('cancelled');
    await tick();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    const stopped = s.stop(true, 10_000);
    for (const name of ['a', 'd', 'e']) expect(signals.get(name)!.reason).toBe('shutdown');
    await stopped;
    expect([s.active, s.depth, dropped.length]).toEqual([0, 0, 0]);
  });

  it('never accepts a key that is queued or running', () => {
    const { s, job } = setup(3);
    s.submit(job('a'));
    s.submit(job('b'));
    expect(s.submit(job('a'))).toBe('duplicate');
    expect(s.submit(job('b'))).toBe('duplicate');
  });

  it('cancels queued jobs (dropped) and running ones (aborted)', async () => {
    const { s, dropped, signals, job } = setup(3);
    s.submit(job('a'));
    s.submit(job('b'));
    expect(s.cancel('b')).toBe(1);
    expect(dropped).toEqual([['b', 'cancelled']]);
    expect(s.cancel('a')).toBe(1);
    expect(signals.get('a')!.reason).toBe('cancelled');
    expect(s.cancel('zzz')).toBe(0);
  });

  it('enforces deadlines while queued and while running', async () => {
    vi.useFakeTimers();
    const { s, dropped, signals, job } = setup(3);
    const now = Date.now();
    s.submit(job('a', 0, now + 100));
    s.submit(job('b', 0, now + 50));
    vi.advanceTimersByTime(60);
    expect(dropped).toEqual([['b', 'timeout']]);
    vi.advanceTimersByTime(50);
    expect(signals.get('a')!.reason).toBe('timeout');
  });

  it('stops: drops the queue, finishes or cancels the running job', async () => {
    const { s, dropped, signals, finish, job } = setup(3);
    s.submit(job('a'));
    s.submit(job('b'));
    const stopped = s.stop(false, 10_000);
    expect(dropped).toEqual([['b', 'shutdown']]);
    expect(signals.get('a')!.aborted).toBe(false);
    expect(s.submit(job('c'))).toBe('stopped');
    finish.get('a')!();
    await stopped;
    const second = setup(1);
    second.s.submit(second.job('x'));
    await second.s.stop(true, 10_000);
    expect(second.signals.get('x')!.reason).toBe('shutdown');
  });
});

describe('reply stream', () => {
  function capture() {
    const sent: { topic: string; body: Record<string, unknown>; options: PublishOptions }[] = [];
    const publish = async (topic: string, payload: string, options: PublishOptions) => Boolean(sent.push({ topic, body: JSON.parse(payload), options }));
    return { sent, publish };
  }

  it('coalesces fast text into at most one chunk per interval, in order, then done', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { sent, publish } = capture();
    const corr = Buffer.from([1, 2]);
    const r = new ReplyStream({ id: 'x', topic: 't', correlationData: corr }, publish, { stream: true, chunkIntervalMs: 50, chunkExpirySec: 60 });
    r.start();
    for (let i = 0; i < 100; i++) {
      r.text(`${i} `);
      vi.advanceTimersByTime(1);
    }
    r.done({ text: 'all', finish_reason: 'length', seed: 1, usage: { prompt_tokens: 1, completion_tokens: 100 }, timings: { queue_ms: 0, ttft_ms: 0, tokens_per_s: 1, cached_tokens: 0 } });
    r.error('internal', 'too late');
    const types = sent.map((s) => s.body.type);
    expect(types[0]).toBe('start');
    expect(types.at(-1)).toBe('done');
    expect(types.filter((t) => t === 'chunk').length).toBeLessThanOrEqual(3);
    const chunks = sent.filter((s) => s.body.type === 'chunk');
    expect(chunks.map((c) => c.body.seq)).toEqual(chunks.map((_, i) => i));
    expect(chunks.map((c) => c.body.text).join('')).toBe(Array.from({ length: 100 }, (_, i) => `${i} `).join(''));
    expect(chunks.every((c) => c.options.expirySec === 60 && c.options.correlationData === corr)).toBe(true);
    expect(sent.at(-1)!.options.expirySec).toBeUndefined();
  });

  it('keeps reasoning and answer in chunks of their own kind, each numbered from 0, coalesced and in order', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { sent, publish } = capture();
    const r = new ReplyStream({ id: 'x', topic: 't' }, publish, { stream: true, chunkIntervalMs: 50, chunkExpirySec: 60 });
    const reasoning = Array.from({ length: 60 }, (_, i) => `r${i} `);
    const answer = Array.from({ length: 60 }, (_, i) => `a${i} `);
    r.start();
    for (const piece of reasoning) r.thinking(piece), vi.advanceTimersByTime(1);
    for (const piece of answer) r.text(piece), vi.advanceTimersByTime(1);
    r.done({ text: answer.join(''), thinking: reasoning.join(''), finish_reason: 'length', seed: 1, usage: { prompt_tokens: 1, completion_tokens: 120 }, timings: { queue_ms: 0, ttft_ms: 0, tokens_per_s: 1, cached_tokens: 0 } });
    const bodies = sent.map((s) => s.body);
    const types = bodies.map((b) => b.type);
    expect(types[0]).toBe('start');
    expect(types.at(-1)).toBe('done');
    // Every reasoning chunk comes before the first answer chunk.
    expect(types.lastIndexOf('thinking')).toBeLessThan(types.indexOf('chunk'));
    for (const [type, pieces] of [['thinking', reasoning], ['chunk', answer]] as const) {
      const chunks = bodies.filter((b) => b.type === type);
      // 60 pieces 1 ms apart at one chunk per 50 ms: 2 intervals, plus the flush at the switch or the end.
      expect(chunks.length, type).toBeGreaterThanOrEqual(2);
      expect(chunks.length, type).toBeLessThanOrEqual(3);
      expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
      expect(chunks.map((c) => c.text).join('')).toBe(pieces.join(''));
    }
    expect(bodies.at(-1)).toMatchObject({ type: 'done', text: answer.join(''), thinking: reasoning.join('') });
    expect(sent.filter((s) => s.body.type === 'thinking').every((s) => s.options.expirySec === 60)).toBe(true);
  });

  it('sends only the final reply when not streaming', () => {
    const { sent, publish } = capture();
    const r = new ReplyStream({ id: 'x', topic: 't' }, publish, { stream: false, chunkIntervalMs: 50, chunkExpirySec: 60 });
    r.start();
    r.text('abc');
    r.thinking('hmm');
    r.error('timeout', 'late');
    expect(sent.map((s) => s.body)).toEqual([{ id: 'x', type: 'error', code: 'timeout', message: 'late' }]);
  });
});

describe('health and discovery', () => {
  it('reads the CPU thermal zone when the board has one', () => {
    const dir = path.join(tmp, 'thermal');
    for (const [zone, type, milli] of [['thermal_zone0', 'gpu-thermal', '40000'], ['thermal_zone1', 'cpu-thermal', '61234']]) {
      mkdirSync(path.join(dir, zone!), { recursive: true });
      writeFileSync(path.join(dir, zone!, 'type'), `${type}\n`);
      writeFileSync(path.join(dir, zone!, 'temp'), `${milli}\n`);
    }
    expect(cpuTemperature(dir)).toBe(61.2);
    expect(cpuTemperature(path.join(tmp, 'nothing'))).toBeUndefined();
  });

  it('describes one device with availability from the status topic, and removes it all', () => {
    const ctx = { prefix: 'homeassistant', node: 'pi 5', topics: topicsFor('bonsai', 'pi 5'), model: 'm', version: '1' };
    const msgs = discoveryMessages({ ...ctx, hasTemperature: false });
    expect(msgs.map((m) => m.topic)).toContain('homeassistant/text/bonsai_pi_5/prompt/config');
    for (const m of msgs) {
      const body = JSON.parse(m.payload);
      expect(body.availability_topic).toBe('bonsai/pi 5/status');
      expect(body.device.identifiers).toEqual(['bonsai_pi_5']);
    }
    const removals = discoveryRemovals(ctx);
    expect(removals.length).toBe(msgs.length + 1);
    expect(removals.every((m) => m.payload === '')).toBe(true);
  });
});

describe('embedded broker', () => {
  it('refuses to listen beyond loopback without credentials', async () => {
    await expect(startEmbeddedBroker({ host: '0.0.0.0', port: 0 })).rejects.toThrow(/needs embedded.username and embedded.password/);
  });

  it('on a port in use, fails at once naming the port and both ways out, and leaves nothing running', async () => {
    const first = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 });
    try {
      await expect(startEmbeddedBroker({ host: '127.0.0.1', port: first.port })).rejects.toThrow(
        `port ${first.port} is in use (127.0.0.1:${first.port}) — is another broker running? use --broker mqtt://127.0.0.1:${first.port} or --embedded-port N`,
      );
    } finally {
      await first.close();
    }
  });
});

describe('connecting to a broker that is not there', () => {
  it('reports every failed attempt with the backoff before the next, then gives up at the timeout', async () => {
    const closed = await freePort();
    const attempts: { attempt: number; nextInMs: number; error: string }[] = [];
    const started = Date.now();
    await expect(
      connectMqtt({
        url: `mqtt://127.0.0.1:${closed}`,
        clientId: 'nobody',
        reconnectMinMs: 100,
        reconnectMaxMs: 400,
        timeoutMs: 1500,
        onRetry: (error, attempt, nextInMs) => attempts.push({ attempt, nextInMs, error }),
      }),
    ).rejects.toThrow(ConnectError);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts.map((a) => a.attempt)).toEqual(attempts.map((_, i) => i + 1));
    expect(attempts[0]!.error).toMatch(/ECONNREFUSED/);
    // Doubling from 100 ms up to 400 ms, each within the ±20% jitter.
    attempts.forEach((a, i) => {
      const base = Math.min(400, 100 * 2 ** i);
      expect(a.nextInMs, `attempt ${a.attempt}`).toBeGreaterThanOrEqual(base * 0.8);
      expect(a.nextInMs, `attempt ${a.attempt}`).toBeLessThanOrEqual(base * 1.2);
    });
  });
});
