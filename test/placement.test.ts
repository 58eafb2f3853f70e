// `bonsai serve` applies what the board profile says about CPUs and memory (model.cpus,
// model.mlock; the profile sets both, see profiles.test.ts): every thread of the daemon, the
// engine's included, runs on the CPUs named, and the weights are locked in memory, as the kernel
// shows them in /proc. What the machine cannot give (CPUs it lacks, a memory-lock limit of 0) is one
// warning each, and the daemon serves all the same.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI } from './helpers/cli.js';
import { HAVE_FIXTURES, STORIES } from './helpers/daemon.js';
import { freePort } from './helpers/mosquitto.js';
import { ENV, follow, serve, track } from './helpers/serve.js';

/** A field of /proc/<pid>/status (or of one of its threads: /proc/<pid>/task/<tid>/status). */
const statusField = (file: string, field: string) => new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(file, 'utf8'))?.[1]?.trim();

/** The CPUs this test may run on, as the kernel lists them ("0-3"), expanded. */
function ownCpus(): number[] {
  return statusField('/proc/self/status', 'Cpus_allowed_list')!.split(',').flatMap((run) => {
    const [first, last = first] = run.split('-').map(Number) as [number, number?];
    return Array.from({ length: last! - first + 1 }, (_, i) => first + i);
  });
}

const HAVE_PRLIMIT = spawnSync('prlimit', ['--version']).status === 0;

describe.skipIf(!HAVE_FIXTURES)('bonsai serve on the CPUs and memory the board profile names', () => {
  it.skipIf(ownCpus().length < 2)('moves every thread, the engine pool included, onto model.cpus, and locks the weights (model.mlock)', async () => {
    const cpu = ownCpus().at(-1)!;
    const s = serve(['--embedded-port', String(await freePort()), '--node', 'placed'], { BONSAI_MODEL_CPUS: String(cpu), BONSAI_MODEL_MLOCK: 'true' });
    expect(await s.waitLog(`threads on CPUs ${cpu}`)).toMatchObject({ level: 30, cpus: String(cpu) });
    const ready = await s.waitLog('weights ready', 30_000);
    expect(ready.locked_mb).toBeGreaterThan(0);
    await s.waitLog('online', 30_000);
    const tasks = readdirSync(`/proc/${s.child.pid}/task`);
    // Node's own threads, libuv's and the engine's, which started after the move.
    expect(tasks.length).toBeGreaterThan(5);
    for (const tid of tasks) expect(statusField(`/proc/${s.child.pid}/task/${tid}/status`, 'Cpus_allowed_list'), `thread ${tid}`).toBe(String(cpu));
    const locked = Number(/^(\d+) kB$/.exec(statusField(`/proc/${s.child.pid}/status`, 'VmLck') ?? '')?.[1]);
    expect(locked * 1024).toBeGreaterThanOrEqual((ready.locked_mb as number) * 2 ** 20 * 0.9);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it.skipIf(!HAVE_PRLIMIT)('CPUs this machine lacks and a memory-lock limit of 0: a warning each, and it serves', async () => {
    // As root, CAP_IPC_LOCK would lift the limit: the daemon runs without it, as under the unit.
    const dropCap = process.getuid?.() === 0 ? ['setpriv', '--bounding-set=-ipc_lock', '--'] : [];
    const args = ['--memlock=0:0', '--', ...dropCap, process.execPath, CLI, 'serve', '--model', STORIES, '--embedded-port', String(await freePort()), '--node', 'unplaced'];
    const env = { ...ENV, BONSAI_CACHE_PATH: `${process.env.BONSAI_CACHE_PATH}.placement`, BONSAI_MODEL_CPUS: '4095', BONSAI_MODEL_MLOCK: 'true' };
    const s = follow(track(spawn('prlimit', args, { env, stdio: ['ignore', 'pipe', 'pipe'] })));
    await s.waitLog('online', 30_000);
    const own = statusField('/proc/self/status', 'Cpus_allowed_list');
    // (A board without a profile of its own adds its warning; these are the two of model.*.)
    const warnings = s.logs.filter((l) => l.level === 40 && String(l.msg).startsWith('model.')).map((l) => [l.msg, l.err]);
    expect(warnings).toEqual([
      [`model.cpus 4095: this process may run only on CPUs ${own}: its threads stay there`, undefined],
      [
        'model.mlock: the weights are not locked in memory (LimitMEMLOCK= in the unit, or ulimit -l); running without',
        expect.stringMatching(/^locking [\d.]+ MiB of weights in memory: (Cannot allocate memory|Operation not permitted) \(the memory-lock limit, RLIMIT_MEMLOCK, is 0\.0 MiB\)$/),
      ],
    ]);
    expect(statusField(`/proc/${s.child.pid}/status`, 'VmLck')).toBe('0 kB');
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });
});
