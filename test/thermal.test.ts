// Thermal control: a fake thermal zone in a test's system tree heats past the limits; the daemon's
// engine works with fewer threads, then pauses between tokens, and resumes when it cools, without
// failing the running request, whose text is the same as an unthrottled run's.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nextThermalState, type ThermalState } from '../src/daemon/extensions/thermal.js';
import { Model } from '../src/engine/engine.js';
import type { Reply } from '../src/protocol/messages.js';
import { HAVE_FIXTURES, loadStories, Observer, startDaemon, STORIES, testConfig } from './helpers/daemon.js';
import { HAVE_MOSQUITTO, startMosquitto } from './helpers/mosquitto.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-thermal-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

const LIMITS = { throttleC: 80, pauseC: 90, resumeC: 70 };

describe('thermal states', () => {
  it('throttles above T1, pauses above T2, and comes back with hysteresis', () => {
    const walk = (temps: number[]) => {
      let state: ThermalState = 'normal';
      return temps.map((t) => (state = nextThermalState(state, t, LIMITS)));
    };
    expect(walk([50, 79.9, 80, 89, 90, 95, 85, 80, 75, 71, 69.9, 50])).toEqual([
      'normal', 'normal', 'throttled', 'throttled', 'paused', 'paused', 'throttled', 'throttled', 'throttled', 'throttled', 'normal', 'normal',
    ]);
    // Out of the pause it goes to throttled, never straight to full speed.
    expect(nextThermalState('paused', 40, LIMITS)).toBe('throttled');
  });
});

describe.skipIf(!(HAVE_MOSQUITTO && HAVE_FIXTURES))('thermal control of a running request', () => {
  it('fewer threads when hot, a pause when too hot, full speed again when cool; the request is answered as if nothing happened', async () => {
    const zone = path.join(tmp, 'sys/class/thermal/thermal_zone0');
    mkdirSync(zone, { recursive: true });
    writeFileSync(path.join(zone, 'type'), 'cpu-thermal\n');
    const heat = (celsius: number) => writeFileSync(path.join(zone, 'temp'), `${Math.round(celsius * 1000)}\n`);
    heat(50);

    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const reference = await loadStories();
    cleanups.push(async () => reference.close());
    const request = { prompt: 'Once upon a time', max_tokens: 300, temperature: 1, seed: 21 };
    const expected = await reference.generate({ prompt: request.prompt, maxTokens: request.max_tokens, sampling: { temperature: 1, seed: 21 } });

    const engine = await Model.load(STORIES, { threads: 2 });
    cleanups.push(async () => engine.close());
    const calls: string[] = [];
    const limitThreads = engine.limitThreads.bind(engine);
    const pause = engine.pause.bind(engine);
    engine.limitThreads = (n: number) => {
      calls.push(`threads ${n}`);
      limitThreads(n);
    };
    engine.pause = (paused: boolean) => {
      calls.push(`pause ${paused}`);
      pause(paused);
    };

    const config = testConfig({ 'topics.shared': 'never', 'profile.sysroot': tmp, 'thermal.throttleC': 80, 'thermal.pauseC': 90, 'thermal.resumeC': 70, 'thermal.minThreads': 1, 'thermal.intervalSec': 0.1 });
    const d = await startDaemon(broker.url, engine, config);
    cleanups.push(() => d.stop());
    const o = await Observer.connect(broker.url);
    cleanups.push(() => o.close());
    await o.watch(d.topics.response('+'), d.topics.health);
    const waitFor = (call: string) => o.until(() => calls.includes(call), 5000, call);

    heat(85);
    await waitFor('threads 1');
    heat(95);
    await waitFor('pause true');
    await o.publish(d.topics.request, JSON.stringify({ id: 'hot', ...request }));
    await o.until(() => o.repliesFor('hot').some((r) => r.type === 'start'), 5000, 'start');
    // Paused between tokens: nothing comes while it is this hot.
    await new Promise((r) => setTimeout(r, 800));
    expect(o.repliesFor('hot').filter((r) => r.type !== 'start')).toEqual([]);
    await o.until(() => o.raw.some((m) => m.topic === d.topics.health && JSON.parse(m.payload.toString()).thermal?.state === 'paused'), 3000, 'health saying paused');

    heat(60);
    const done = (await o.finalFor('hot', 20_000)) as Extract<Reply, { type: 'done' }>;
    expect(done).toMatchObject({ type: 'done', finish_reason: expected.finishReason, text: expected.text });
    await waitFor('threads 2');
    expect(calls).toEqual(['threads 1', 'pause false', 'threads 1', 'pause true', 'threads 1', 'pause false', 'threads 2', 'pause false']);
  }, 60_000);
});
