// bonsai doctor with faults injected: each is reported as `fail` with its fix, and the exit code
// says what a script needs (0 all ok, 2 warnings only, 1 a failure).
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { synthesize } from '../src/gguf/synth.js';
import { runCli } from './helpers/cli.js';
import { fixture, HAVE_FIXTURES, REPO_ROOT } from './helpers/fixtures.js';
import { freePort, HAVE_MOSQUITTO, startMosquitto, type Mosquitto } from './helpers/mosquitto.js';
import { mountTmpfs } from './helpers/mounts.js';
import { ENV } from './helpers/serve.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-doctor-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const board = (id: string) => path.join(REPO_ROOT, 'test/fixtures/boards', id);

interface Check {
  name: string;
  verdict: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

/**
 * A directory to put first on PATH, holding a fake `name` command that prints `stdout` (and
 * `stderr`), exits with `code` and writes its arguments, one a line, to `<dir>/<name>.args`.
 */
function fakeCommand(name: string, stdout: string, code = 0, stderr = ''): string {
  const dir = mkdtempSync(path.join(tmp, `fake-${name}-`));
  writeFileSync(path.join(dir, `${name}.out`), stdout);
  writeFileSync(path.join(dir, `${name}.err`), stderr);
  writeFileSync(path.join(dir, name), `#!/bin/sh\nprintf '%s\\n' "$@" > "$0.args"\ncat "$0.out"\ncat "$0.err" >&2\nexit ${code}\n`);
  chmodSync(path.join(dir, name), 0o755);
  return dir;
}

const onPath = (dir: string) => ({ PATH: `${dir}:${process.env.PATH}` });

async function doctor(args: string[], env: Record<string, string> = {}): Promise<{ code: number; checks: Record<string, Check>; verdict: string }> {
  const cache = path.join(tmp, `cache-${Math.random().toString(36).slice(2)}.db`);
  const r = await runCli(['doctor', '--json', '--timeout', '2', ...args], 60_000, { ...ENV, BONSAI_CACHE_PATH: cache, BONSAI_EMBEDDED_PORT: String(await freePort()), ...env });
  const doc = JSON.parse(r.stdout) as { checks: Check[]; verdict: string };
  return { code: r.code, checks: Object.fromEntries(doc.checks.map((c) => [c.name, c])), verdict: doc.verdict };
}

describe.skipIf(!HAVE_FIXTURES)('bonsai doctor', () => {
  const stories = () => fixture('stories260K/stories260K.gguf');

  it('a sound set-up: every check ok, exit 0; the plain output is one line per check', async () => {
    const r = await doctor(['--model', stories(), '--sysroot', board('rpi5')]);
    expect(r.verdict).toBe('ok');
    expect(r.code).toBe(0);
    expect(Object.keys(r.checks)).toEqual(['board', 'kernels', 'model', 'memory', 'thermal', 'cache', 'broker', 'service', 'clock']);
    for (const c of Object.values(r.checks)) expect(c.verdict, `${c.name}: ${c.detail}`).toBe('ok');
    expect(r.checks.board!.detail).toMatch(/rpi5/);
    const plain = await runCli(['doctor', '--model', stories(), '--sysroot', board('rpi5')], 60_000, { ...ENV, BONSAI_CACHE_PATH: path.join(tmp, 'plain.db'), BONSAI_EMBEDDED_PORT: String(await freePort()) });
    expect(plain.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0])).toEqual(Array(9).fill('ok'));
  });

  it('a missing model and a damaged one: fail with the fix, exit 1', async () => {
    const missing = await doctor(['--model', path.join(tmp, 'nope.gguf')]);
    expect(missing.code).toBe(1);
    expect(missing.checks.model).toMatchObject({ verdict: 'fail', fix: expect.stringMatching(/missing or damaged/) });
    const damaged = path.join(tmp, 'damaged.gguf');
    writeFileSync(damaged, readFileSync(stories()).subarray(0, 5000));
    const r = await doctor(['--model', damaged]);
    expect(r.code).toBe(1);
    expect(r.checks.model).toMatchObject({ verdict: 'fail', detail: expect.stringMatching(/damaged\.gguf/), fix: expect.stringMatching(/copy damaged\.gguf again/) });
  });

  it('a board too small for the model: memory fails, naming what would fit', async () => {
    const big = path.join(tmp, 'bonsai-1.7b.gguf');
    await synthesize(big, { shape: '1.7b', seed: 3, vocabFrom: fixture('qwen3-vocab/ggml-vocab-qwen3.gguf') });
    const r = await doctor(['--model', big, '--sysroot', board('rpi-zero-2w')]);
    expect(r.code).toBe(1);
    expect(r.checks.memory).toMatchObject({ verdict: 'fail', detail: expect.stringMatching(/rpi-zero-2w.*allows/) });
    expect(r.checks.memory!.fix).toBeTruthy();
    const roomy = await doctor(['--model', big, '--sysroot', board('rpi5')]);
    expect(roomy.checks.memory!.verdict).toBe('ok');
  }, 120_000);

  it('a cache directory that cannot be written: fail with the fix', async () => {
    const mount = mountTmpfs(path.join(tmp, 'ro'), { readOnly: true });
    if (!mount) return void console.warn('skipped: cannot mount a read-only tmpfs here (needs root)');
    try {
      const r = await doctor(['--model', stories()], { BONSAI_CACHE_PATH: path.join(mount.dir, 'cache.db') });
      expect(r.code).toBe(1);
      expect(r.checks.cache).toMatchObject({ verdict: 'fail', fix: expect.stringMatching(/make .* writable/) });
    } finally {
      mount.unmount();
    }
  });

  it('a broker that is down, and one that refuses the password: fail, each with its own fix', async () => {
    const down = await doctor(['--model', stories(), '--broker', `mqtt://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(1);
    expect(down.checks.broker).toMatchObject({ verdict: 'fail', fix: expect.stringMatching(/start the broker/) });
    if (!HAVE_MOSQUITTO) return void console.warn('skipped the password case: no mosquitto');
    const broker: Mosquitto = await startMosquitto({ users: { bonsai: 'right' } });
    try {
      const wrong = await doctor(['--model', stories(), '--broker', broker.url], { BONSAI_MQTT_USERNAME: 'bonsai', BONSAI_MQTT_PASSWORD: 'wrong' });
      expect(wrong.code).toBe(1);
      expect(wrong.checks.broker).toMatchObject({ verdict: 'fail', fix: expect.stringMatching(/mqtt\.username and mqtt\.password/) });
      const right = await doctor(['--model', stories(), '--broker', broker.url], { BONSAI_MQTT_USERNAME: 'bonsai', BONSAI_MQTT_PASSWORD: 'right' });
      expect(right.checks.broker!.verdict).toBe('ok');
    } finally {
      await broker.stop();
    }
  });

  it('warnings alone (an unknown board, a hot one) exit 2', async () => {
    const hot = path.join(tmp, 'hot-board');
    cpSync(board('rpi4'), hot, { recursive: true });
    writeFileSync(path.join(hot, 'sys/class/thermal/thermal_zone0/temp'), '88000\n');
    const r = await doctor(['--model', stories(), '--sysroot', hot]);
    expect(r.checks.thermal).toMatchObject({ verdict: 'warn', fix: expect.stringMatching(/heatsink/) });
    expect(r.verdict).toBe('warn');
    expect(r.code).toBe(2);
    // An ODROID-C4 has no profile: the generic aarch64 one applies, with a warning.
    const unknown = await doctor(['--model', stories(), '--sysroot', board('generic-aarch64')]);
    expect(unknown.checks.board).toMatchObject({ verdict: 'warn', detail: expect.stringMatching(/ODROID-C4.*generic-aarch64/), fix: expect.stringMatching(/--profile ID/) });
    expect(unknown.code).toBe(2);
  });

  it('the service as systemd shows it: the daemon still connecting (warn, with its attempt), online, failed, not installed, no systemd', async () => {
    const show = (active: string, status: string) => `LoadState=loaded\nActiveState=${active}\nSubState=start\nStatusText=${status}\n`;
    const connecting = 'connecting to mqtt://10.0.0.9:1883 (attempt 5 failed: connect ECONNREFUSED 10.0.0.9:1883; next in 8 s)';
    const bin = fakeCommand('systemctl', show('activating', connecting));
    const r = await doctor(['--model', stories()], onPath(bin));
    expect(r.checks.service).toEqual({ name: 'service', verdict: 'warn', detail: `service: activating, ${connecting}`, fix: expect.stringMatching(/cannot reach its broker: check mqtt\.url/) });
    expect(r.code).toBe(2);
    // Fixed arguments: nothing of the configuration reaches the command line.
    expect(readFileSync(path.join(bin, 'systemctl.args'), 'utf8')).toBe('show\n--property=LoadState,ActiveState,SubState,StatusText\nbonsai-edge.service\n');

    const online = await doctor(['--model', stories()], onPath(fakeCommand('systemctl', show('active', 'online: llama, mqtt5'))));
    expect(online.checks.service).toMatchObject({ verdict: 'ok', detail: 'service: active, online: llama, mqtt5' });
    const failed = await doctor(['--model', stories()], onPath(fakeCommand('systemctl', 'LoadState=loaded\nActiveState=failed\nSubState=failed\nStatusText=\n')));
    expect(failed.checks.service).toMatchObject({ verdict: 'fail', detail: 'service: failed (failed)', fix: expect.stringMatching(/journalctl -u bonsai-edge/) });
    expect(failed.code).toBe(1);
    const absent = await doctor(['--model', stories()], onPath(fakeCommand('systemctl', 'LoadState=not-found\nActiveState=inactive\nSubState=dead\nStatusText=\n')));
    expect(absent.checks.service).toMatchObject({ verdict: 'ok', detail: 'bonsai-edge.service is not installed: scripts/install sets the service up' });
    const noSystemd = await doctor(['--model', stories()], onPath(fakeCommand('systemctl', '', 1, 'System has not been booted with systemd as init system (PID 1). Can\'t operate.\nFailed to connect to bus: Host is down')));
    expect(noSystemd.checks.service).toMatchObject({ verdict: 'ok', detail: expect.stringMatching(/^systemd is not running here \(System has not been booted with systemd/) });
  });

  it("reports the firmware's throttling flags (vcgencmd get_throttled) beside the temperature", async () => {
    const bin = fakeCommand('vcgencmd', 'throttled=0x50005\n');
    const r = await doctor(['--model', stories()], onPath(bin));
    expect(readFileSync(path.join(bin, 'vcgencmd.args'), 'utf8')).toBe('get_throttled\n');
    expect(r.checks.thermal).toMatchObject({
      verdict: 'warn',
      detail: expect.stringMatching(/; firmware throttled=0x50005 \(under-voltage now, throttled now, under-voltage since boot, throttled since boot\)$/),
      fix: expect.stringMatching(/power supply/),
    });
    const calm = await doctor(['--model', stories()], onPath(fakeCommand('vcgencmd', 'throttled=0x0\n')));
    expect(calm.checks.thermal!.detail).toMatch(/; firmware throttled=0x0$/);
    // A board's tree is not this machine: its firmware is not asked.
    const tree = await doctor(['--model', stories(), '--sysroot', board('rpi5')], onPath(bin));
    expect(tree.checks.thermal!.detail).not.toMatch(/firmware/);
  });
});
