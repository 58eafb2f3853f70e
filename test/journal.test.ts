// The request journal under crashes, with a real mosquitto and the built CLI: `kill -9` of
// `bonsai serve` with requests running, queued and arriving while it is down, then a restart —
// every accepted request gets exactly one final reply (done, or `interrupted` when too old), none
// lost, none answered twice; a kill between the receipt of a request and its journal write (the
// broker has no acknowledgement yet) is made good by the broker's redelivery.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Reply } from '../src/protocol/messages.js';
import { HAVE_FIXTURES, isFinal, Observer } from './helpers/daemon.js';
import { HAVE_MOSQUITTO, startMosquitto, type Mosquitto } from './helpers/mosquitto.js';
import { serve, type Serve } from './helpers/serve.js';

const RUN = HAVE_MOSQUITTO && HAVE_FIXTURES;
if (!RUN) console.warn('journal crash tests skipped: they need mosquitto and the stories260K fixture');

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-journal-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

async function mosquitto(): Promise<Mosquitto> {
  const b = await startMosquitto();
  cleanups.push(() => b.stop());
  return b;
}

async function observer(url: string, ...topics: string[]): Promise<Observer> {
  const o = await Observer.connect(url);
  cleanups.push(() => o.close());
  await o.watch(...topics);
  return o;
}

/** A daemon on `broker` as node `node`, with its cache file (journal) in this test's directory. */
async function daemon(broker: Mosquitto, node: string, env: Record<string, string> = {}): Promise<Serve> {
  const s = serve(['--broker', broker.url, '--node', node], { BONSAI_CACHE_PATH: path.join(tmp, `${node}.db`), BONSAI_HOMEASSISTANT_DISCOVERY: 'false', ...env });
  await s.waitLog('online', 30_000);
  return s;
}

async function kill9(s: Serve): Promise<void> {
  s.child.kill('SIGKILL');
  await s.exited;
}

const finalsOf = (o: Observer, id: string): Reply[] => o.repliesFor(id).filter(isFinal);

describe.skipIf(!RUN)('request journal: kill -9 and restart', () => {
  it('running, queued and sent-while-down requests each get exactly one final reply after a restart', async () => {
    const b = await mosquitto();
    const node = 'crash';
    const o = await observer(b.url, `bonsai/${node}/response/+`);
    // one generation at a time, so the three after the first are still queued when it is killed
    const oneAtATime = { BONSAI_QUEUE_PARALLEL: '1' };
    let s = await daemon(b, node, oneAtATime);
    const long = { prompt: 'Once upon a time', max_tokens: 1500, temperature: 1, seed: 11 };
    await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'running', ...long }));
    for (const id of ['queued-1', 'queued-2', 'queued-3']) await o.publish(`bonsai/${node}/request`, JSON.stringify({ id, prompt: 'Lily', max_tokens: 6, temperature: 0 }));
    await o.until(() => o.repliesFor('running').some((r) => r.type === 'chunk'), 10_000, 'the first chunk');
    await kill9(s);
    // While it is down: the broker keeps it for the daemon's session.
    await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'while-down', prompt: 'Tom', max_tokens: 6, temperature: 0 }));
    s = await daemon(b, node);
    const ids = ['running', 'queued-1', 'queued-2', 'queued-3', 'while-down'];
    for (const id of ids) expect(await o.finalFor(id, 30_000), id).toMatchObject({ type: 'done' });
    await new Promise((r) => setTimeout(r, 500));
    for (const id of ids) expect(finalsOf(o, id), id).toHaveLength(1);
    expect(s.logs.filter((l) => l.msg === 'request left unanswered by an earlier run').length).toBeGreaterThanOrEqual(1);
    // After the restart a repeated id is still answered from the journal, not run again.
    const startsBefore = o.repliesFor('queued-1').filter((r) => r.type === 'start').length;
    await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'queued-1', prompt: 'Lily', max_tokens: 6, temperature: 0 }));
    await o.until(() => finalsOf(o, 'queued-1').length === 2, 10_000, 'the replayed final');
    expect(finalsOf(o, 'queued-1')[1]).toEqual(finalsOf(o, 'queued-1')[0]);
    expect(o.repliesFor('queued-1').filter((r) => r.type === 'start')).toHaveLength(startsBefore);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('requests older than journal.maxAgeSec are answered `interrupted`, once', async () => {
    const b = await mosquitto();
    const node = 'stale';
    const o = await observer(b.url, `bonsai/${node}/response/+`);
    const env = { BONSAI_JOURNAL_MAX_AGE_SEC: '1' };
    let s = await daemon(b, node, env);
    await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'old', prompt: 'Once upon a time', max_tokens: 1500, temperature: 1, seed: 3 }));
    await o.until(() => o.repliesFor('old').some((r) => r.type === 'chunk'), 10_000, 'the first chunk');
    await kill9(s);
    await new Promise((r) => setTimeout(r, 1500));
    s = await daemon(b, node, env);
    expect(await o.finalFor('old', 20_000)).toMatchObject({ type: 'error', code: 'interrupted' });
    await new Promise((r) => setTimeout(r, 500));
    expect(finalsOf(o, 'old')).toHaveLength(1);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('killed after a request arrived but before it was journaled: the broker delivers it again and it is answered', async () => {
    const b = await mosquitto();
    const node = 'unacked';
    const o = await observer(b.url, `bonsai/${node}/response/+`);
    let s = await daemon(b, node, { BONSAI_TEST_PAUSE_BEFORE_ACK_MS: '5000' });
    await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'in-the-gap', prompt: 'Lily', max_tokens: 6, temperature: 0 }));
    await new Promise((r) => setTimeout(r, 800));
    expect(o.repliesFor('in-the-gap')).toEqual([]);
    await kill9(s);
    s = await daemon(b, node);
    expect(await o.finalFor('in-the-gap', 20_000)).toMatchObject({ type: 'done' });
    await new Promise((r) => setTimeout(r, 500));
    expect(finalsOf(o, 'in-the-gap')).toHaveLength(1);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });
});
