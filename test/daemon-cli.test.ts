// `bonsai serve` and `bonsai ask` as users run them: child processes of the built CLI, the real
// engine on stories260K, the embedded broker or a real mosquitto, and signals.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../src/engine/engine.js';
import { CLI, runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, loadStories, Observer } from './helpers/daemon.js';
import { freePort, HAVE_MOSQUITTO, startMosquitto, type Mosquitto } from './helpers/mosquitto.js';
import { ENV, serve, track } from './helpers/serve.js';
import { synthesizeThinkingModel } from './helpers/thinking-model.js';

const RUN = HAVE_MOSQUITTO && HAVE_FIXTURES && existsSync(CLI);
if (!RUN) console.warn('daemon CLI tests skipped: they need mosquitto, the stories260K fixture and a built CLI (npx tsc)');

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe.skipIf(!RUN)('bonsai serve / bonsai ask', () => {
  let reference: Model;
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    reference = await loadStories();
    mosquitto = await startMosquitto();
    cleanups.push(() => mosquitto.stop(), async () => reference.close());
  });

  it('with no broker configured: embedded broker (MQTT 3.1.1 fallback), ask round trip, one log line per request', async () => {
    const port = await freePort();
    const s = serve(['--embedded-port', String(port), '--node', 'emb']);
    expect(await s.waitLog('online')).toMatchObject({ protocol: 'mqtt3.1.1', node: 'emb' });
    const url = `mqtt://127.0.0.1:${port}`;
    const expected = await reference.generate({ prompt: 'Once upon a time', maxTokens: 24, sampling: { temperature: 0 } }, {});
    const answer = await runCli(['ask', '--url', url, '--node', 'emb', '--max-tokens', '24', '--temperature', '0', 'Once upon a time']);
    expect(answer).toMatchObject({ code: 0, stdout: `${expected.text}\n` });
    const line = await s.waitLog('request done');
    expect(line).toMatchObject({ finish_reason: 'length', completion_tokens: 24, id: expect.any(String) });
    for (const key of ['queue_ms', 'ttft_ms', 'tokens_per_s', 'gen_ms', 'prompt_tokens']) expect(line[key], key).toEqual(expect.any(Number));

    const fromStdin = spawnSync(process.execPath, [CLI, 'ask', '--url', url, '--node', 'emb', '--json', '--max-tokens', '5', '-'], { input: 'Lily', encoding: 'utf8', timeout: 30_000, env: ENV });
    expect(fromStdin.status).toBe(0);
    const replies = fromStdin.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(replies[0]!.type).toBe('start');
    expect(replies.at(-1)!.type).toBe('done');

    const tooMany = await runCli(['ask', '--url', url, '--node', 'emb', '--max-tokens', '100000', 'Hi']);
    expect(tooMany.code).toBe(1);
    expect(tooMany.stderr).toMatch(/too_large/);
    const nobody = await runCli(['ask', '--url', url, '--node', 'nobody', '--timeout', '1', 'Hi']);
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toMatch(/no final reply/);

    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('exits 1 (not hanging on its embedded broker) on an open embedded broker or an unloadable model', async () => {
    const open = serve(['--embedded-port', String(await freePort())], { BONSAI_EMBEDDED_HOST: '0.0.0.0' });
    expect(await open.exited).toBe(1);
    const child = track(spawn(process.execPath, [CLI, 'serve', '--model', '/nonexistent.gguf', '--embedded-port', String(await freePort())], { env: ENV, stdio: 'ignore' }));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(1);
  });

  for (const mode of ['finish', 'cancel'] as const) {
    it(`SIGTERM during a generation (shutdown.mode=${mode}): the request gets its reply, status offline, exit 0`, async () => {
      const node = `term-${mode}`;
      const s = serve(['--broker', mosquitto.url, '--node', node], { BONSAI_SHUTDOWN_MODE: mode, BONSAI_HOMEASSISTANT_DISCOVERY: 'false' });
      await s.waitLog('online');
      const o = await Observer.connect(mosquitto.url);
      cleanups.push(() => o.close());
      await o.watch(`bonsai/${node}/response/+`, `bonsai/${node}/status`);
      await o.publish(`bonsai/${node}/request`, JSON.stringify({ id: 'long', prompt: 'Once upon a time', max_tokens: 1500, temperature: 1, seed: 7 }));
      await o.until(() => o.repliesFor('long').some((r) => r.type === 'chunk'), 10_000, 'the first chunk');
      s.child.kill('SIGTERM');
      const final = await o.finalFor('long', 20_000);
      expect(final).toMatchObject({ type: 'done', finish_reason: mode === 'finish' ? 'length' : 'cancelled' });
      expect(await s.exited).toBe(0);
      const states = o.raw.filter((m) => m.topic.endsWith('/status')).map((m) => JSON.parse(m.payload.toString()).state);
      expect(states.at(-1)).toBe('offline');
    });
  }

  it('ask --think: the reasoning goes to stderr, the answer to stdout, streamed or not', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-think-cli-'));
    cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));
    const file = path.join(tmp, 'thinking.gguf');
    await synthesizeThinkingModel(file);
    const node = 'thinker';
    const s = serve(['--broker', mosquitto.url, '--node', node], { BONSAI_HOMEASSISTANT_DISCOVERY: 'false' }, file);
    await s.waitLog('online');
    const model = await Model.load(file, { threads: 1, contextSize: 256 });
    cleanups.push(async () => model.close());
    const question = 'Why is the sky blue?';
    const greedy = { maxTokens: 24, sampling: { temperature: 0 } };
    const thinking = await model.generate({ messages: [{ role: 'user', content: question }], enableThinking: true, ...greedy });
    expect(thinking.thinking!.length).toBeGreaterThan(10);
    const args = ['ask', '--url', mosquitto.url, '--node', node, '--max-tokens', '24', '--temperature', '0'];
    for (const extra of [[], ['--no-stream']]) {
      // Not a terminal here, so the reasoning is not dimmed.
      const r = await runCli([...args, '--think', ...extra, question]);
      expect(r, extra.join(' ')).toEqual({ code: 0, stdout: `${thinking.text}\n`, stderr: `${thinking.thinking}\n` });
    }
    // Without --think the prompt is plain completion, as before, and nothing goes to stderr.
    const completion = await model.generate({ prompt: question, ...greedy });
    expect(await runCli([...args, question])).toEqual({ code: 0, stdout: `${completion.text}\n`, stderr: '' });
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('--remove-discovery deletes the Home Assistant entities the daemon published', async () => {
    const node = 'ha-node';
    const s = serve(['--broker', mosquitto.url, '--node', node]);
    await s.waitLog('online');
    const retainedConfigs = async () => {
      const o = await Observer.connect(mosquitto.url);
      try {
        await o.watch(`homeassistant/+/bonsai_${node}/+/config`);
        await new Promise((r) => setTimeout(r, 300));
        return o.raw.filter((m) => m.retain && m.payload.length > 0).length;
      } finally {
        await o.close();
      }
    };
    expect(await retainedConfigs()).toBeGreaterThanOrEqual(5);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    const removed = await runCli(['serve', '--remove-discovery', '--broker', mosquitto.url, '--node', node]);
    expect(removed).toMatchObject({ code: 0, stdout: expect.stringMatching(/removed \d+ Home Assistant discovery entries/) });
    expect(await retainedConfigs()).toBe(0);
  });
});
