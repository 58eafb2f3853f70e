// The daemon under systemd, without systemd: `bonsai serve` (the built CLI, stories260K, the
// embedded broker) notifies a datagram socket bound here by a python3 helper, as systemd's would
// be; an in-process daemon shows that its watchdog stops while its event loop is stuck or its
// engine shows no progress; the install scripts fill a temporary root, and systemd-analyze checks
// the unit they render.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Controller } from '../src/daemon/controller.js';
import { systemdExtension } from '../src/daemon/extensions/systemd.js';
import { createLogger } from '../src/daemon/logger.js';
import type { DaemonEngine } from '../src/daemon/pipeline.js';
import { CLI } from './helpers/cli.js';
import { HAVE_FIXTURES, loadStories, Observer, STORIES, testConfig } from './helpers/daemon.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { freePort } from './helpers/mosquitto.js';
import { serve, track } from './helpers/serve.js';

const HAVE_PYTHON = spawnSync('python3', ['--version']).status === 0;
const HAVE_ANALYZE = spawnSync('systemd-analyze', ['--version']).status === 0;
const HAVE_SHELLCHECK = spawnSync('shellcheck', ['--version']).status === 0;
const RUN = HAVE_PYTHON && HAVE_FIXTURES && existsSync(CLI);
if (!RUN) console.warn('systemd notification tests skipped: they need python3, the stories260K fixture and a built CLI (npx tsc)');
if (!HAVE_ANALYZE) console.warn('systemd-analyze not found (apt-get install systemd): the unit is not verified');
if (!HAVE_SHELLCHECK) console.warn('shellcheck not found (apt-get install shellcheck): the install scripts are not linted');

const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-systemd-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
});

/** Binds an AF_UNIX datagram socket (a path, or @name in the abstract namespace) and prints each datagram as a JSON line. */
const LISTENER = `
import json, socket, sys, time
address = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + address[1:] if address.startswith("@") else address)
print(json.dumps({"bound": address}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({"wall_ms": time.time() * 1000, "state": data.decode()}), flush=True)
`;

interface Notification {
  /** When it arrived, ms since the epoch (the clock of pino's "time"). */
  wallMs: number;
  /** Its KEY=value lines. */
  lines: string[];
}

/** What a service manager would hear on its notification socket. */
class NotifyListener {
  readonly received: Notification[] = [];

  static async bind(address: string): Promise<NotifyListener> {
    const script = path.join(tmp, 'listener.py');
    writeFileSync(script, LISTENER);
    const child = track(spawn('python3', [script, address], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const listener = new NotifyListener();
    cleanups.push(async () => child.kill());
    let partial = '';
    let bound = false;
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const message = JSON.parse(line) as { bound?: string; wall_ms: number; state: string };
        if (message.bound) bound = true;
        else listener.received.push({ wallMs: message.wall_ms, lines: message.state.split('\n') });
      }
    });
    await until(() => bound, 5000, `the listener on ${address}`);
    return listener;
  }

  /** The notifications holding a line that starts with `prefix`. */
  with(prefix: string): Notification[] {
    return this.received.filter((n) => n.lines.some((l) => l.startsWith(prefix)));
  }

  /** Every STATUS= value, in order. */
  statuses(): string[] {
    return this.received.flatMap((n) => n.lines.filter((l) => l.startsWith('STATUS=')).map((l) => l.slice('STATUS='.length)));
  }
}

async function until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The gaps between consecutive WATCHDOG=1 notifications, in ms. */
function watchdogGaps(listener: NotifyListener): number[] {
  const at = listener.with('WATCHDOG=1').map((n) => n.wallMs);
  return at.slice(1).map((t, i) => t - at[i]!);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** The retained health message of a node on the embedded broker at port. */
async function health(port: number, node: string): Promise<Record<string, unknown>> {
  const observer = await Observer.connect(`mqtt://127.0.0.1:${port}`);
  try {
    await observer.watch(`bonsai/${node}/health`);
    await until(() => observer.raw.length > 0, 5000, 'the health message');
    return JSON.parse(observer.raw[0]!.payload.toString()) as Record<string, unknown>;
  } finally {
    await observer.close();
  }
}

describe.skipIf(!RUN)('bonsai serve notifies systemd', () => {
  it('STATUS at each phase in order, READY=1 once online, WATCHDOG=1 every half period, STOPPING=1 on SIGTERM, exit 0', async () => {
    const socket = path.join(tmp, 'notify');
    const listener = await NotifyListener.bind(socket);
    const port = await freePort();
    const s = serve(['--embedded-port', String(port), '--node', 'sd'], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '600000' });
    const online = await s.waitLog('online');
    await until(() => listener.with('READY=1').length > 0, 5000, 'READY=1');

    const [ready, ...readyAgain] = listener.with('READY=1');
    expect(readyAgain).toEqual([]);
    // After the daemon logged "online" (pino's time is truncated to the ms), and with its status.
    expect(ready!.wallMs).toBeGreaterThanOrEqual(Date.parse(online.time as string));
    expect(ready!.lines).toEqual(['READY=1', 'STATUS=online: llama, mqtt3.1.1']);
    const loading = listener.with('STATUS=loading')[0]!;
    expect(loading.lines).toEqual([`STATUS=loading ${STORIES}`, 'EXTEND_TIMEOUT_USEC=30000000']);
    const readyIndex = listener.received.indexOf(ready!);
    expect(listener.received.slice(0, readyIndex).some((n) => n.lines.includes('WATCHDOG=1'))).toBe(false);

    // About 8 periods of 300 ms; systemd would kill the daemon at a gap of 600 ms.
    await sleep(2500);
    const gaps = watchdogGaps(listener);
    expect(gaps.length).toBeGreaterThanOrEqual(5);
    expect(gaps.length).toBeLessThanOrEqual(9);
    expect(median(gaps)).toBeGreaterThan(240);
    expect(median(gaps)).toBeLessThan(400);
    expect(Math.max(...gaps)).toBeLessThan(600);
    expect(listener.with('WATCHDOG=1')[0]!.wallMs - ready!.wallMs).toBeLessThan(600);
    expect((await health(port, 'sd')).systemd).toEqual({ notify: true, watchdog_sec: 0.6 });

    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    await until(() => listener.statuses().includes('stopped'), 5000, 'STATUS=stopped');
    expect(listener.statuses()).toEqual([`connecting to mqtt://127.0.0.1:${port}`, `loading ${STORIES}`, 'starting', 'online: llama, mqtt3.1.1', 'stopping: answering what is queued', 'stopped']);
    const stopping = listener.with('STOPPING=1');
    expect(stopping).toHaveLength(1);
    expect(stopping[0]!.lines).toEqual(['STOPPING=1', 'STATUS=stopping: answering what is queued']);
    expect(listener.received.at(-1)!.lines).toEqual(['STATUS=stopped']);
  });

  it('a notification socket that is not there, with a watchdog: exits 1 at once, naming the socket', async () => {
    const missing = path.join(tmp, 'no-such-socket');
    const startedAt = Date.now();
    const s = serve(['--embedded-port', String(await freePort())], { NOTIFY_SOCKET: missing, WATCHDOG_USEC: '600000' });
    expect(await s.exited).toBe(1);
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    expect(s.stderr()).toContain(`bonsai: cannot notify systemd at ${missing}: No such file or directory`);
    expect(s.logs.find((l) => l.level === 60)).toMatchObject({ socket: missing, msg: `cannot notify systemd at ${missing}: No such file or directory` });
    expect(s.logs.some((l) => l.msg === 'online')).toBe(false);
  });

  it('the same without a watchdog: one error, and it serves', async () => {
    const missing = path.join(tmp, 'no-such-socket');
    const port = await freePort();
    const s = serve(['--embedded-port', String(port), '--node', 'sd-nowd'], { NOTIFY_SOCKET: missing });
    await s.waitLog('online');
    const errors = s.logs.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toBe(`cannot notify systemd at ${missing}: No such file or directory: going on without notifying the service manager`);
    expect((await health(port, 'sd-nowd')).systemd).toEqual({ notify: false, watchdog_sec: null });
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('an abstract socket (@name); WATCHDOG_PID of another process: notified, but no watchdog', async () => {
    const abstract = `@bonsai-test-${randomUUID()}`;
    const listener = await NotifyListener.bind(abstract);
    const port = await freePort();
    const s = serve(['--embedded-port', String(port), '--node', 'sd-abs'], { NOTIFY_SOCKET: abstract, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) });
    await s.waitLog('online');
    await until(() => listener.with('READY=1').length > 0, 5000, 'READY=1');
    expect((await health(port, 'sd-abs')).systemd).toEqual({ notify: true, watchdog_sec: null });
    await sleep(600);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    await until(() => listener.with('STOPPING=1').length > 0, 5000, 'STOPPING=1');
    expect(listener.with('WATCHDOG=1')).toEqual([]);
  });

  it('while the broker cannot be reached: a STATUS line for each failed attempt, and a signal ends it', async () => {
    const socket = path.join(tmp, 'notify-connecting');
    const listener = await NotifyListener.bind(socket);
    const port = await freePort();
    const s = serve(['--broker', `mqtt://127.0.0.1:${port}`], { NOTIFY_SOCKET: socket, BONSAI_MQTT_RECONNECT_MIN_MS: '100' });
    await until(() => listener.statuses().length >= 3, 10_000, 'three STATUS lines');
    const [first, ...attempts] = listener.statuses();
    expect(first).toBe(`connecting to mqtt://127.0.0.1:${port}`);
    expect(attempts[0]).toMatch(new RegExp(`^connecting to mqtt://127\\.0\\.0\\.1:${port} \\(attempt 1 failed: .*ECONNREFUSED.*; next in \\d+ s\\)$`));
    expect(attempts[1]).toMatch(/\(attempt 2 failed: /);
    expect(listener.with('READY=1')).toEqual([]);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('refuses a WATCHDOG_USEC that is not a number of microseconds', async () => {
    const s = serve(['--embedded-port', String(await freePort())], { NOTIFY_SOCKET: path.join(tmp, 'notify'), WATCHDOG_USEC: '30s' });
    expect(await s.exited).toBe(1);
    expect(s.stderr()).toBe('bonsai: WATCHDOG_USEC=30s is not a positive number of microseconds\n');
  });
});

describe.skipIf(!RUN)('the watchdog of an in-process daemon', () => {
  it('withholds WATCHDOG=1 while the event loop is stuck or a generation shows no progress, and resumes after', async () => {
    const socket = path.join(tmp, 'notify-in-process');
    const listener = await NotifyListener.bind(socket);
    const saved = { NOTIFY_SOCKET: process.env.NOTIFY_SOCKET, WATCHDOG_USEC: process.env.WATCHDOG_USEC };
    cleanups.push(async () => Object.assign(process.env, saved));
    process.env.NOTIFY_SOCKET = socket;
    // Pings every 200 ms.
    process.env.WATCHDOG_USEC = '400000';

    const model = await loadStories();
    cleanups.push(async () => model.close());
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // Ignores the scheduler's cancel at limits.maxRunMs until released, as a wedged engine would.
    const wedged: DaemonEngine = {
      name: model.name,
      contextSize: model.contextSize,
      chatTemplate: model.chatTemplate,
      prepare: (request) => model.prepare(request),
      generate: async (request, options) => {
        await released;
        return model.generate(request, options);
      },
    };
    const logs: Record<string, unknown>[] = [];
    const config = testConfig({ 'embedded.port': await freePort(), 'limits.maxRunMs': 100, 'log.level': 'info' });
    const controller = new Controller({
      config,
      logger: createLogger('info', config.topics.node, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) }),
      version: 'test',
      loadEngine: async () => wedged,
      extensions: [systemdExtension],
    });
    cleanups.push(() => controller.stop());
    await controller.start();
    await until(() => listener.with('WATCHDOG=1').length >= 3, 5000, 'three pings');

    // The event loop stuck for 600 ms: the next tick finds it and does not ping.
    const before = listener.with('WATCHDOG=1').length;
    const stuckUntil = performance.now() + 600;
    while (performance.now() < stuckUntil);
    await until(() => listener.with('WATCHDOG=1').length >= before + 2, 5000, 'pings after the stall');
    expect(Math.max(...watchdogGaps(listener))).toBeGreaterThanOrEqual(700);
    expect(logs.find((l) => l.msg === 'the event loop was stuck: systemd watchdog not notified')).toMatchObject({ watchdog_ms: 400 });

    // A generation silent for more than twice limits.maxRunMs (200 ms): no ping until it ends.
    const observer = await Observer.connect(`mqtt://127.0.0.1:${config.embedded.port}`);
    cleanups.push(() => observer.close());
    await observer.watch(controller.topics.response('wedged'));
    await observer.publish(controller.topics.request, JSON.stringify({ id: 'wedged', prompt: 'Once upon a time', max_tokens: 5 }));
    await until(() => logs.some((l) => l.msg === 'a generation shows no progress: systemd watchdog not notified'), 5000, 'the wedged engine noticed');
    const silentFrom = listener.with('WATCHDOG=1').length;
    await sleep(800);
    expect(listener.with('WATCHDOG=1').length).toBe(silentFrom);
    release();
    expect(await observer.finalFor('wedged')).toMatchObject({ type: 'done', finish_reason: 'timeout' });
    await until(() => listener.with('WATCHDOG=1').length >= silentFrom + 2, 5000, 'pings after the generation ended');
  });
});

/** Every entry under dir: its type, mode, mtime and content (file hash or link target), by path. */
function snapshot(dir: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (relative: string) => {
    for (const name of readdirSync(path.join(dir, relative)).sort()) {
      const rel = path.join(relative, name);
      const full = path.join(dir, rel);
      const st = lstatSync(full);
      const content = st.isSymbolicLink() ? `-> ${readlinkSync(full)}` : st.isFile() ? createHash('sha256').update(readFileSync(full)).digest('hex') : 'dir';
      entries[rel] = `${(st.mode & 0o7777).toString(8)} ${st.mtimeMs} ${content}`;
      if (st.isDirectory()) walk(rel);
    }
  };
  walk('');
  return entries;
}

function files(dir: string): string[] {
  return Object.entries(snapshot(dir))
    .filter(([, entry]) => !entry.endsWith(' dir'))
    .map(([rel]) => rel);
}

function script(name: 'install' | 'uninstall', ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return scriptWith({}, name, ...args);
}

/** The same with these environment variables added. */
function scriptWith(env: Record<string, string>, name: 'install' | 'uninstall', ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', name), ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** systemd-analyze verify finds nothing, and security rates the unit's exposure 2.5 or less. */
function expectVerifiedAndHardened(unit: string): void {
  const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 60_000 });
  expect(verify.status, verify.stderr).toBe(0);
  expect(verify.stderr).not.toContain('bonsai-edge');
  const security = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', unit], { encoding: 'utf8', timeout: 60_000 });
  const exposure = /Overall exposure level for bonsai-edge\.service: ([\d.]+)/.exec(security.stdout);
  expect(exposure, security.stdout + security.stderr).not.toBeNull();
  console.log(`systemd-analyze security: exposure ${exposure![1]}`);
  expect(Number(exposure![1])).toBeLessThanOrEqual(2.5);
}

const UNIT = 'etc/systemd/system/bonsai-edge.service';

describe.skipIf(!existsSync(CLI))('scripts/install and scripts/uninstall into a root', () => {
  const root = path.join(tmp, 'root');

  it('installs the unit, the config and the env file; a second run changes nothing', () => {
    const first = script('install', '--root', root);
    expect(first.status, first.stderr).toBe(0);
    const installed = snapshot(root);
    expect(files(root)).toEqual(['etc/bonsai-edge/bonsai-edge.env', 'etc/bonsai-edge/config.json', UNIT]);
    expect(installed['etc/bonsai-edge/config.json']).toMatch(/^600 /);
    expect(installed['etc/bonsai-edge/bonsai-edge.env']).toMatch(/^600 /);
    expect(installed[UNIT]).toMatch(/^644 /);
    expect(installed['srv/bonsai-edge/models']).toMatch(/^755 .* dir$/);

    const second = script('install', '--root', root);
    expect(second.status, second.stderr).toBe(0);
    expect(snapshot(root)).toEqual(installed);
    expect(second.stdout).toContain('install: unchanged /etc/systemd/system/bonsai-edge.service');
    expect(second.stdout).toContain('install: kept /etc/bonsai-edge/config.json');
  });

  it('renders the unit with node, this checkout and the board profile limits, never MemoryDenyWriteExecute', () => {
    const unit = readFileSync(path.join(root, UNIT), 'utf8');
    const node = spawnSync('bash', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
    expect(unit).toContain(`ExecStart=${node} ${REPO_ROOT}/dist/cli/main.js serve --config %d/config.json\n`);
    for (const line of ['Type=notify', 'NotifyAccess=main', 'WatchdogSec=30', 'DynamicUser=yes', 'StateDirectory=bonsai-edge', 'LoadCredential=config.json:/etc/bonsai-edge/config.json', 'EnvironmentFile=-/etc/bonsai-edge/bonsai-edge.env']) {
      expect(unit).toContain(`\n${line}\n`);
    }
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute/m);
    expect(unit).not.toMatch(/@[A-Z_]+@/);
    const profile = spawnSync(process.execPath, [CLI, 'profile', '--json'], { encoding: 'utf8' });
    // A limit the profile leaves out (absent or null) is left out of the unit.
    const service = profile.status === 0 ? ((JSON.parse(profile.stdout) as { service?: Record<string, number | string | null> }).service ?? {}) : {};
    const expected: [string, number | string | null | undefined, string][] = [
      ['MemoryHigh', service.memory_high_mb, 'M'],
      ['MemoryMax', service.memory_max_mb, 'M'],
      ['CPUQuota', service.cpu_quota_percent, '%'],
      ['CPUAffinity', service.cpu_affinity, ''],
      ['Nice', service.nice, ''],
    ];
    for (const [key, value, unitSuffix] of expected) {
      if (value === null || value === undefined) expect(unit).not.toMatch(new RegExp(`^${key}=`, 'm'));
      else expect(unit).toContain(`\n${key}=${value}${unitSuffix}\n`);
    }
    // The daemon has no CAP_IPC_LOCK: this is what lets model.mlock lock the weights.
    expect(unit).toContain('\nLimitMEMLOCK=infinity\n');
  });

  it("holds the service to the cores a board's profile names (CPUAffinity=), and stays verified and hardened", () => {
    const board = path.join(tmp, 'rk3588-root');
    // The install script asks `bonsai profile`, which detects the board from this tree.
    const r = scriptWith({ BONSAI_PROFILE_SYSROOT: path.join(REPO_ROOT, 'test/fixtures/boards/rk3588') }, 'install', '--root', board);
    expect(r.status, r.stderr).toBe(0);
    const unit = readFileSync(path.join(board, UNIT), 'utf8');
    for (const line of ['MemoryHigh=14384M', 'MemoryMax=15408M', 'CPUQuota=400%', 'CPUAffinity=4-7', 'Nice=5', 'LimitMEMLOCK=infinity']) expect(unit).toContain(`\n${line}\n`);
    if (HAVE_ANALYZE) expectVerifiedAndHardened(path.join(board, UNIT));
  });

  it('runs the Node.js that --node names, and refuses an app whose addon cannot load on this machine, saying why', () => {
    const other = path.join(tmp, 'other-root');
    const node = realpathSync(process.execPath);
    const given = script('install', '--root', other, '--node', node);
    expect(given.status, given.stderr).toBe(0);
    expect(readFileSync(path.join(other, UNIT), 'utf8')).toContain(`ExecStart=${node} ${REPO_ROOT}/dist/cli/main.js serve`);
    // an app of only the compiled TypeScript: no build of its own and no prebuilt addon
    const app = path.join(tmp, 'app-without-addon');
    cpSync(path.join(REPO_ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
    const refused = script('install', '--root', other, '--app', app);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^install: the service could not run: .*cannot load the bonsai-edge addon \(bonsai\.node\) on linux-\w+: none of build\/Release\/bonsai\.node, prebuilds\/linux-\w+\/bonsai\.node exists\. Build it from source: npm rebuild bonsai-edge/m);
  });

  it.skipIf(!HAVE_ANALYZE)('passes systemd-analyze verify, and security with an exposure of 2.5 or less', () => {
    expectVerifiedAndHardened(path.join(root, UNIT));
  });

  it('uninstall removes the unit and keeps the config, the state and model files; --purge removes config and state', () => {
    const state = path.join(root, 'var/lib/private/bonsai-edge');
    mkdirSync(state, { recursive: true });
    writeFileSync(path.join(state, 'cache.db'), 'state');
    symlinkSync('private/bonsai-edge', path.join(root, 'var/lib/bonsai-edge'));
    writeFileSync(path.join(root, 'srv/bonsai-edge/models/model.gguf'), 'weights');

    const kept = script('uninstall', '--root', root);
    expect(kept.status, kept.stderr).toBe(0);
    expect(files(root)).toEqual(['etc/bonsai-edge/bonsai-edge.env', 'etc/bonsai-edge/config.json', 'srv/bonsai-edge/models/model.gguf', 'var/lib/bonsai-edge', 'var/lib/private/bonsai-edge/cache.db']);
    expect(kept.stdout).toContain('kept /srv/bonsai-edge/models: it holds model files');

    rmSync(path.join(root, 'srv/bonsai-edge/models/model.gguf'));
    const purged = script('uninstall', '--root', root, '--purge');
    expect(purged.status, purged.stderr).toBe(0);
    expect(files(root)).toEqual([]);
    expect(existsSync(path.join(root, 'srv/bonsai-edge'))).toBe(false);
    expect(existsSync(path.join(root, 'etc/bonsai-edge'))).toBe(false);
  });

  it.skipIf(!HAVE_SHELLCHECK)('the scripts pass shellcheck', () => {
    const lint = spawnSync('shellcheck', ['-x', 'scripts/install', 'scripts/uninstall', 'scripts/service-paths.sh'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(lint.stdout).toBe('');
    expect(lint.status).toBe(0);
  });
});
