// `bonsai serve` as a child process of the built CLI, the way users and supervisors run it: its
// JSON log lines collected, its exit awaited. Every child is killed when the test file ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll } from 'vitest';
import { CLI } from './cli.js';
import { STORIES } from './daemon.js';

/**
 * The environment without BONSAI_* settings of the machine running the tests, but with the cache
 * file of this test run (vitest.config.ts), never the user's.
 */
export const ENV = {
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BONSAI_'))),
  BONSAI_CACHE_PATH: process.env.BONSAI_CACHE_PATH,
};

let serves = 0;

export interface Serve {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  /** stderr so far. */
  stderr(): string;
  exited: Promise<number | null>;
  waitLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Tracks a child started some other way (npm start, a shell), so that it is killed at the end too. */
export function track(child: ChildProcess): ChildProcess {
  children.push(child);
  return child;
}

export function serve(args: string[], env: Record<string, string> = {}, model: string | null = STORIES): Serve {
  const modelArgs = model === null ? [] : ['--model', model];
  // A cache file of its own unless the test shares one on purpose: answers cached by one daemon
  // must not answer another test's requests.
  const cache = `${process.env.BONSAI_CACHE_PATH}.serve-${process.pid}-${serves++}`;
  const child = track(spawn(process.execPath, [CLI, 'serve', ...modelArgs, ...args], { env: { ...ENV, BONSAI_CACHE_PATH: cache, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  return follow(child);
}

/** Collects a serve process's log lines and stderr. */
export function follow(child: ChildProcess): Serve {
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitLog = async (msg: string, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = logs.find((l) => l.msg === msg);
      if (found) return found;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`serve did not log "${msg}" (exit ${child.exitCode}): ${stderr}`);
  };
  return { child, logs, stderr: () => stderr, exited, waitLog };
}
