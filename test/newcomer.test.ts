// A newcomer's first hour with the daemon, scripted: the built CLI as child processes, the
// embedded broker and a real mosquitto, signals and kill -9. Each case is a defect a new user met
// (issue 10), held to what README.md promises: exit codes, exactly one final reply, `busy` while
// shutting down, one-line errors.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, Observer, STORIES } from './helpers/daemon.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { freePort, HAVE_MOSQUITTO, startMosquitto, type Mosquitto } from './helpers/mosquitto.js';
import { ENV, follow, serve, track } from './helpers/serve.js';

const RUN = HAVE_MOSQUITTO && HAVE_FIXTURES;
if (!RUN) console.warn('newcomer tests skipped: they need mosquitto and the stories260K fixture');

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});
const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-newcomer-'));
cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));

async function mosquitto(options: Parameters<typeof startMosquitto>[0] = {}): Promise<Mosquitto> {
  const b = await startMosquitto(options);
  cleanups.push(() => b.stop());
  return b;
}

async function observer(url: string): Promise<Observer> {
  const o = await Observer.connect(url);
  cleanups.push(() => o.close());
  return o;
}

/** `bonsai ask` as a child process, with its exit code and output once it ends. */
function askProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const child = track(spawn(process.execPath, [CLI, 'ask', ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })));
}

async function portIsFree(port: number): Promise<boolean> {
  const server = net.createServer();
  const free = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (free) await new Promise<void>((resolve) => server.close(() => resolve()));
  return free;
}

const oneLine = (text: string) => text.trim().split('\n').length === 1;

describe.skipIf(!RUN)("a newcomer's first hour", () => {
  it('serve twice on one port: the second exits 1 at once, saying the port is taken and what to do', async () => {
    const port = await freePort();
    const first = serve(['--embedded-port', String(port), '--node', 'first']);
    await first.waitLog('online');
    const started = Date.now();
    const second = serve(['--embedded-port', String(port), '--node', 'second']);
    expect(await second.exited).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(second.stderr()).toContain(`port ${port} is in use`);
    expect(second.stderr()).toContain(`use --broker mqtt://127.0.0.1:${port} or --embedded-port N`);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
  });

  it('ask whose broker goes away: exit 2 with a message once --timeout has passed (not 13, not silence)', async () => {
    const b = await startMosquitto();
    const asking = askProcess(['--url', b.url, '--node', 'nobody-home', '--timeout', '3', 'Hello']);
    await new Promise((r) => setTimeout(r, 1000));
    await b.stop();
    const r = await asking;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^bonsai ask: no final reply for .* within 3000 ms\n$/);
    expect(r.ms).toBeLessThan(10_000);
  });

  it('during a graceful shutdown every request is answered: the running ones finish, queued and new ones get busy', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const s = serve(['--embedded-port', String(port), '--node', 'drain'], { BONSAI_QUEUE_PARALLEL: '2' });
    await s.waitLog('online');
    const o = await observer(url);
    await o.watch('bonsai/drain/response/+', 'fleet/replies/+');
    const long = { prompt: 'Once upon a time', max_tokens: 1500, temperature: 1, seed: 5 };
    for (const id of ['running', 'also-running', 'queued']) await o.publish('bonsai/drain/request', JSON.stringify({ id, ...long }));
    await o.until(() => ['running', 'also-running'].every((id) => o.repliesFor(id).some((r) => r.type === 'chunk')), 10_000, 'the first chunks');
    s.child.kill('SIGTERM');
    await s.waitLog('stopping');
    await o.publish('bonsai/drain/request', JSON.stringify({ id: 'late-node', prompt: 'Hi', max_tokens: 4 }));
    await o.publish('bonsai/request', JSON.stringify({ id: 'late-fleet', prompt: 'Hi', max_tokens: 4, reply_to: 'fleet/replies/late-fleet' }));
    for (const id of ['running', 'also-running']) expect(await o.finalFor(id, 20_000), id).toMatchObject({ type: 'done', finish_reason: 'length' });
    for (const id of ['queued', 'late-node', 'late-fleet']) {
      expect(await o.finalFor(id, 20_000), id).toMatchObject({ type: 'error', code: 'busy', message: expect.stringMatching(/shutting down/) });
    }
    expect(await s.exited).toBe(0);
    // Exactly one final reply each.
    for (const id of ['running', 'also-running', 'queued', 'late-node', 'late-fleet']) expect(o.repliesFor(id).filter((r) => r.type === 'done' || r.type === 'error'), id).toHaveLength(1);
  });

  it('ask waiting while the daemon restarts (real mosquitto) gets its answer when the daemon is back online', async () => {
    const b = await mosquitto();
    const args = ['--broker', b.url, '--node', 'phoenix'];
    const first = serve(args, { BONSAI_HOMEASSISTANT_DISCOVERY: 'false' });
    await first.waitLog('online');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    // Published while no daemon listens: the broker drops it, so only a re-send can be answered.
    const asking = askProcess(['--url', b.url, '--node', 'phoenix', '--timeout', '60', '--max-tokens', '8', '--temperature', '0', 'Once upon a time']);
    await new Promise((r) => setTimeout(r, 1500));
    const second = serve(args, { BONSAI_HOMEASSISTANT_DISCOVERY: 'false' });
    await second.waitLog('online');
    const r = await asking;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    expect(r.ms).toBeLessThan(30_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('serve with a broker out of reach logs each attempt and its backoff, and stops at once on SIGTERM', async () => {
    const closed = await freePort();
    const s = serve(['--broker', `mqtt://127.0.0.1:${closed}`, '--node', 'lonely'], { BONSAI_MQTT_RECONNECT_MIN_MS: '100' });
    const deadline = Date.now() + 10_000;
    const retries = () => s.logs.filter((l) => l.msg === 'cannot reach the broker; retrying');
    while (retries().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(retries().slice(0, 3)).toEqual([1, 2, 3].map((attempt) => expect.objectContaining({ state: 'connecting', attempt, retry_in_ms: expect.any(Number), err: expect.stringMatching(/ECONNREFUSED/) })));
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('kill -9: the last will says offline and names the model as every other status does', async () => {
    const b = await mosquitto();
    const s = serve(['--broker', b.url, '--node', 'killed'], { BONSAI_HOMEASSISTANT_DISCOVERY: 'false' });
    await s.waitLog('online');
    const o = await observer(b.url);
    await o.watch('bonsai/killed/status');
    const states = () => o.raw.map((m) => JSON.parse(m.payload.toString()) as { state: string; model: string });
    await o.until(() => states().some((x) => x.state === 'online'), 5000, 'online');
    s.child.kill('SIGKILL');
    await o.until(() => states().some((x) => x.state === 'offline'), 10_000, 'the last will');
    const online = states().find((x) => x.state === 'online')!;
    const will = states().find((x) => x.state === 'offline')!;
    expect(online.model).toBe('llama'); // general.name of stories260K.gguf
    expect(will.model).toBe(online.model);
  });

  it('npm start passes SIGTERM on to the daemon: nothing is left holding the port', async () => {
    const port = await freePort();
    const npm = follow(
      track(spawn('npm', ['start', '--silent', '--', '--model', STORIES, '--embedded-port', String(port), '--node', 'npm'], { cwd: REPO_ROOT, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] })),
    );
    await npm.waitLog('online', 30_000);
    npm.child.kill('SIGTERM');
    await npm.exited;
    const deadline = Date.now() + 10_000;
    while (!(await portIsFree(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await portIsFree(port)).toBe(true);
    expect(npm.logs.some((l) => l.msg === 'offline')).toBe(true);
  });

  describe('command-line details: one clear line per mistake, options named', () => {
    it('an option error prints one line, not the whole help', async () => {
      const r = await runCli(['run', '-m', STORIES, '--threads', 'many']);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toBe(true);
      expect(r.stderr).toMatch(/threads/);
    });

    it('ask refuses a timeout that is zero, negative or not a number, naming --timeout; and a URL that is not one', async () => {
      for (const value of ['0', '-5', 'abc']) {
        const r = await runCli(['ask', '--timeout', value, 'Hi']);
        expect(r.code, value).toBe(1);
        expect(oneLine(r.stderr), value).toBe(true);
        expect(r.stderr, value).toMatch(/--timeout/);
      }
      const bad = await runCli(['ask', '--url', 'notaurl', 'Hi']);
      expect(bad.code).toBe(1);
      expect(oneLine(bad.stderr)).toBe(true);
      expect(bad.stderr).toMatch(/mqtt\.url: must be a broker URL such as mqtt:\/\/host:1883.*"notaurl"/);
    });

    it('perplexity refuses an empty separator and an empty file instead of printing a number', async () => {
      const text = path.join(tmp, 'story.txt');
      writeFileSync(text, 'Once upon a time there was a cat.\n\nThe cat sat.\n');
      const sep = await runCli(['perplexity', '-m', STORIES, '-f', text, '--separator', '']);
      expect(sep.code).toBe(1);
      expect(sep.stderr).toMatch(/separator is empty/);
      const empty = path.join(tmp, 'empty.txt');
      writeFileSync(empty, '');
      const none = await runCli(['perplexity', '-m', STORIES, '-f', empty, '--json']);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/text is empty: nothing to score/);
      expect(none.stdout).toBe('');
    });

    it('bench takes -c and --kernels like the other commands, uses an f32 KV cache by default and counts small models in K', async () => {
      const r = await runCli(['bench', '-m', STORIES, '-p', '8', '-n', '4', '-r', '1', '-t', '1', '-c', '64', '--kernels', 'scalar'], 120_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/292\.8 K parameters/);
      expect(r.stdout).toMatch(/kernels: scalar/);
      expect(r.stdout).toMatch(/context 64, f32 KV cache/);
      const tooSmall = await runCli(['bench', '-m', STORIES, '-p', '64', '-n', '8', '-c', '32']);
      expect(tooSmall.code).toBe(1);
      expect(tooSmall.stderr).toMatch(/need a context of 72 tokens/);
    }, 150_000);

    it('chat --think on a model without a chat template is refused, as the daemon refuses it', async () => {
      const r = await runCli(['chat', '-m', STORIES, '--think']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no chat template.*run without --think/);
    });

    it('a context larger than the model was trained for is refused, not shrunk in silence', async () => {
      const run = await runCli(['run', '-m', STORIES, '-p', 'Hi', '-n', '1', '-c', '100000']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/context size 100000 is larger than this model was trained for \(2048 tokens\)/);
      const s = serve(['--embedded-port', String(await freePort())], { BONSAI_MODEL_CONTEXT_SIZE: '100000' });
      expect(await s.exited).toBe(1);
      expect(s.stderr()).toMatch(/larger than this model was trained for/);
    });
  });
});
