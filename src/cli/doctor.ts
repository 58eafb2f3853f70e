// `bonsai doctor`: what stands between this board and a working daemon, checked one by one, each
// ok / warn / fail with a one-line fix. It reads the same config file, environment and flags as
// `bonsai serve`. Exit code: 0 all ok, 2 warnings only, 1 at least one failure.
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import type { Command } from 'commander';
import { CacheDatabase, defaultCachePath } from '../cache/database.js';
import { cpuTemperature } from '../daemon/extensions/health.js';
import { describeThrottled, readFirmwareThrottling } from '../daemon/extensions/thermal.js';
import { fitToBoard } from '../daemon/board.js';
import { readConfig, type DaemonConfig } from '../daemon/config.js';
import { connectOptionsFrom } from '../daemon/mqtt.js';
import { summarize, readGguf } from '../gguf/reader.js';
import { native } from '../native.js';
import { modelFits, type FitResult } from '../profiles/memory.js';
import { closeClient, connectMqtt, ConnectError } from '../protocol/connect.js';
import type { ProfileChoice } from '../profiles/detect.js';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  verdict: Verdict;
  /** What was found. */
  detail: string;
  /** One line: what to do about it (warn and fail only). */
  fix?: string;
}

interface DoctorFlags {
  config?: string;
  model?: string;
  broker?: string;
  profile?: string;
  sysroot?: string;
  json?: boolean;
  timeout: number;
}

/** Types the engine multiplies (names as the GGUF reader gives them). */
const ENGINE_TYPES = new Set(['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q1_0', 'tq1_0', 'tq2_0']);
/** A clock before this is a board without a real-time clock that has not reached a time server. */
const EARLIEST_SANE_TIME = Date.UTC(2026, 0, 1);
/** The unit scripts/install writes (scripts/service-paths.sh). */
const UNIT_NAME = 'bonsai-edge.service';

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check the board, the model, the cache, the broker and the service; each check ok, warn or fail with its fix (exit 0 ok, 2 warnings, 1 failures)')
    .option('-c, --config <file>', 'the daemon config file')
    .option('--model <file>', 'GGUF model (model.path)')
    .option('--broker <url>', 'broker URL (mqtt.url)')
    .option('--profile <id>', 'board profile (default: detected)')
    .option('--sysroot <dir>', 'read the board from this tree instead of / (tests)')
    .option('--timeout <seconds>', 'how long the broker check may take', (v) => Number(v), 5)
    .option('--json', 'print {"checks": [...], "verdict"}')
    .action(async (flags: DoctorFlags) => {
      const { config, profile } = readConfig({
        file: flags.config,
        env: process.env,
        flags: { 'model.path': flags.model, 'mqtt.url': flags.broker, 'profile.id': flags.profile, 'profile.sysroot': flags.sysroot },
      });
      const fitted = fitToBoard(config, profile);
      const checks = await runChecks(fitted.config, profile, flags.timeout * 1000);
      const verdict: Verdict = checks.some((c) => c.verdict === 'fail') ? 'fail' : checks.some((c) => c.verdict === 'warn') ? 'warn' : 'ok';
      if (flags.json) process.stdout.write(`${JSON.stringify({ checks, verdict })}\n`);
      else for (const c of checks) process.stdout.write(`${c.verdict.padEnd(4)}  ${c.name}: ${c.detail}${c.fix ? `\n      fix: ${c.fix}` : ''}\n`);
      process.exitCode = { ok: 0, warn: 2, fail: 1 }[verdict];
    });
}

export async function runChecks(config: DaemonConfig, choice: ProfileChoice, brokerTimeoutMs: number): Promise<Check[]> {
  return [
    board(choice),
    kernels(),
    ...model(config, choice),
    await thermal(config, choice),
    cache(config),
    await broker(config, brokerTimeoutMs),
    await service(),
    clock(),
  ];
}

function board(choice: ProfileChoice): Check {
  const detail = `${choice.profile.name} (${choice.profile.id}), ${choice.reason}`;
  if (choice.warnings.length === 0) return { name: 'board', verdict: 'ok', detail };
  return { name: 'board', verdict: 'warn', detail: `${detail}; ${choice.warnings.join('; ')}`, fix: 'name the board with --profile ID (bonsai profile lists what was found)' };
}

function kernels(): Check {
  const paths = native.kernelPaths('q1_0');
  const detail = `kernel path ${paths.selectedLabel} (this CPU supports ${paths.supported.join(', ')})`;
  if (paths.selected === 'scalar') return { name: 'kernels', verdict: 'warn', detail, fix: 'no SIMD kernels for this CPU: expect slow decoding (BONSAI_KERNELS forces a path)' };
  return { name: 'kernels', verdict: 'ok', detail };
}

/** The model file: present, a readable GGUF of types the engine runs, and within the board's memory. */
function model(config: DaemonConfig, choice: ProfileChoice): Check[] {
  const file = config.model.path;
  let types: string[];
  try {
    types = Object.keys(summarize(readGguf(file)).tensorTypes);
  } catch (err) {
    return [{ name: 'model', verdict: 'fail', detail: (err as Error).message, fix: `the file is missing or damaged: copy ${path.basename(file)} again and check its size and SHA-256` }];
  }
  const unsupported = types.filter((t) => !ENGINE_TYPES.has(t));
  if (unsupported.length) {
    return [{ name: 'model', verdict: 'fail', detail: `tensor types ${unsupported.join(', ')} are not ones the engine runs`, fix: 'use a GGUF of Q1_0, TQ1_0/TQ2_0, Q4_0, Q8_0 or F16/F32 weights' }];
  }
  const fit = modelFits(choice.profile, choice.variant, file, config.model.contextSize, config.model.kvType);
  return [
    { name: 'model', verdict: 'ok', detail: `${file}: a GGUF of ${types.join(', ')}` },
    fit.fits ? { name: 'memory', verdict: 'ok', detail: fit.message } : { name: 'memory', verdict: 'fail', detail: fit.message, fix: fixOf(fit) },
  ];
}

/** The CPU's temperature, and on a Raspberry Pi the firmware's throttling flags, as the health message has them. */
async function thermal(config: DaemonConfig, choice: ProfileChoice): Promise<Check> {
  const celsius = cpuTemperature(path.join(config.profile.sysroot, 'sys/class/thermal'));
  // The firmware speaks for this machine, not for a test's tree (as in the thermal extension).
  const flags = config.profile.sysroot === '/' ? await readFirmwareThrottling() : undefined;
  const reported = flags === undefined ? [] : describeThrottled(flags);
  const { throttleC, pauseC } = config.thermal;
  const detail =
    (celsius === undefined ? 'no thermal zone to read (thermal control is off)' : `CPU at ${celsius} °C (${choice.profile.id}: fewer threads from ${throttleC} °C, pause from ${pauseC} °C)`) +
    (flags === undefined ? '' : `; firmware throttled=${flags}${reported.length ? ` (${reported.join(', ')})` : ''}`);
  if (reported.some((r) => r.startsWith('under-voltage'))) {
    return { name: 'thermal', verdict: 'warn', detail, fix: "the supply sags under load and the firmware slows the CPU: use the board's own power supply (Pi 5: 5 V 5 A) and a short cable" };
  }
  if ((celsius !== undefined && celsius >= throttleC) || reported.length) {
    return { name: 'thermal', verdict: 'warn', detail, fix: 'the board is hot before any work: add a heatsink or fan, or move it out of the cupboard' };
  }
  return { name: 'thermal', verdict: 'ok', detail };
}

function cache(config: DaemonConfig): Check {
  if (!config.cache.enabled) return { name: 'cache', verdict: 'warn', detail: 'cache.enabled is false: no prompt-prefix reuse, no request journal', fix: 'set cache.enabled to true' };
  const warnings: string[] = [];
  const db = new CacheDatabase(config.cache.path ?? defaultCachePath(), { log: { warn: (_fields, message) => warnings.push(message) } });
  try {
    const writable = db.use('doctor', (d) => (d.exec('BEGIN IMMEDIATE; ROLLBACK'), true), false);
    if (!writable) return { name: 'cache', verdict: 'fail', detail: `${db.file}: ${db.reason}`, fix: `make ${path.dirname(db.file)} writable for the daemon's user (or set cache.path)` };
    const detail = `${db.file}: ${warnings.length ? warnings.join('; ') : 'sound and writable'}`;
    return warnings.length ? { name: 'cache', verdict: 'warn', detail, fix: 'the damaged file was moved aside and a new one started: nothing to do unless it recurs (check the disk)' } : { name: 'cache', verdict: 'ok', detail };
  } finally {
    db.close();
  }
}

async function broker(config: DaemonConfig, timeoutMs: number): Promise<Check> {
  const url = config.mqtt.url ?? `mqtt://127.0.0.1:${config.embedded.port}`;
  if (!config.mqtt.url && (await portFree(config.embedded.host, config.embedded.port))) {
    return { name: 'broker', verdict: 'ok', detail: `no broker configured: serve starts its own on ${config.embedded.host}:${config.embedded.port} (the port is free)` };
  }
  try {
    const { client, protocolVersion } = await connectMqtt({ ...connectOptionsFrom(config, url, `-doctor-${process.pid}`), timeoutMs });
    await closeClient(client, 1000);
    return { name: 'broker', verdict: 'ok', detail: `${url} answers (${protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1'})` };
  } catch (err) {
    const message = (err as Error).message;
    const refused = err instanceof ConnectError && /refused the connection/.test(message);
    const fix = refused ? 'check mqtt.username and mqtt.password (and the broker ACL)' : `start the broker, or check mqtt.url (${url}) and the network`;
    return { name: 'broker', verdict: 'fail', detail: message, fix };
  }
}

/**
 * The installed service as systemd sees it (its state, and the daemon's own status line: which
 * step it is at, each failed attempt to reach the broker) and, when doctor itself runs under
 * systemd, the notify socket and watchdog the service would get.
 */
async function service(): Promise<Check> {
  const checks = [await unitState(), ...notifySocket()];
  const worst = checks.find((c) => c.verdict === 'fail') ?? checks.find((c) => c.verdict === 'warn');
  return { name: 'service', verdict: worst?.verdict ?? 'ok', detail: checks.map((c) => c.detail).join('; '), ...(worst?.fix ? { fix: worst.fix } : {}) };
}

/** `systemctl show` of the unit, with fixed arguments: nothing of the configuration reaches the command line. */
function unitState(): Promise<Omit<Check, 'name'>> {
  return new Promise((resolve) => {
    execFile('systemctl', ['show', '--property=LoadState,ActiveState,SubState,StatusText', UNIT_NAME], { timeout: 5000 }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve({ verdict: 'ok', detail: 'no systemd here (no systemctl): bonsai serve runs in the foreground' });
      if (err) {
        const why = stderr.trim().split('\n')[0] || err.message;
        return resolve({ verdict: 'ok', detail: `systemd is not running here (${why}): no service to ask` });
      }
      resolve(describeUnit(properties(stdout)));
    });
  });
}

/** systemctl show's KEY=value lines; a value may hold '=' itself. */
function properties(text: string): Map<string, string> {
  const unit = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) unit.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return unit;
}

function describeUnit(unit: Map<string, string>): Omit<Check, 'name'> {
  if (unit.get('LoadState') !== 'loaded') return { verdict: 'ok', detail: `${UNIT_NAME} is not installed: scripts/install sets the service up` };
  const active = unit.get('ActiveState') ?? 'unknown';
  const status = unit.get('StatusText');
  const detail = `service: ${active}${status ? `, ${status}` : ` (${unit.get('SubState') ?? 'unknown'})`}`;
  // Type=notify: a daemon that has not reached its broker is still `activating`; its status says
  // how many attempts failed (the first line, before any, is no fault yet).
  if (status && /^connecting to .* \(attempt \d+ failed: /.test(status)) return { verdict: 'warn', detail, fix: 'the daemon cannot reach its broker: check mqtt.url, the network and the broker (journalctl -u bonsai-edge has each attempt)' };
  if (active === 'failed') return { verdict: 'fail', detail, fix: 'journalctl -u bonsai-edge -e says why it stopped; then systemctl restart bonsai-edge' };
  if (active === 'inactive') return { verdict: 'warn', detail, fix: 'installed but not running: systemctl enable --now bonsai-edge' };
  return { verdict: 'ok', detail };
}

/** systemd's notify socket and watchdog, when doctor runs under systemd (none otherwise). */
function notifySocket(): Omit<Check, 'name'>[] {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return [];
  const watchdog = Number(process.env.WATCHDOG_USEC ?? 0);
  const detail = `notify socket ${socket}${watchdog ? `, watchdog every ${watchdog / 1e6} s` : ', no watchdog'}`;
  try {
    native.notify('STATUS=bonsai doctor');
    return [{ verdict: 'ok', detail }];
  } catch (err) {
    return [{ verdict: 'fail', detail: `${detail}: ${(err as Error).message}`, fix: 'the unit needs NotifyAccess=main (or all) and the socket reachable from the service' }];
  }
}

function clock(): Check {
  const now = Date.now();
  const detail = new Date(now).toISOString();
  if (now < EARLIEST_SANE_TIME) {
    return { name: 'clock', verdict: 'fail', detail: `${detail} is before this release`, fix: 'the board has no real-time clock and no time server yet: enable NTP (timedatectl set-ntp true) and check the network' };
  }
  return { name: 'clock', verdict: 'ok', detail };
}

/** What would fit instead, from the estimate's own suggestions. */
function fixOf(fit: FitResult): string {
  const ways = [
    fit.smallerModels.length ? `use ${fit.smallerModels.join(' or ')}` : undefined,
    fit.largestF16Context ? `--ctx-size ${fit.largestF16Context} --kv-type f16` : undefined,
  ].filter(Boolean);
  return ways.length ? ways.join(', or ') : 'this board cannot hold this model: use a board with more memory';
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

