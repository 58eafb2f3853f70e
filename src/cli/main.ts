#!/usr/bin/env node
// The `bonsai` command line: runs the program (program.ts) and turns every error into one line on
// stderr and a non-zero exit, including one met while loading it (an addon that cannot load on
// this board says why in a sentence, not with a stack trace).
import { CommanderError, type Command } from 'commander';

/**
 * One line on stderr (the stack trace with --verbose), then exit at once: a handle left open on
 * the way to the error (a socket, a timer) must not keep a failed command alive, where a
 * supervisor would take it for running.
 */
function fail(e: unknown, verbose: boolean): never {
  const err = e as Error;
  process.stderr.write(`bonsai: ${verbose ? (err.stack ?? err.message) : err.message}\n`);
  process.exit(1);
}

async function loadProgram(): Promise<Command> {
  try {
    const { buildProgram } = await import('./program.js');
    return buildProgram();
  } catch (e) {
    fail(e, process.argv.includes('--verbose'));
  }
}

/**
 * Each generation running at once holds one of libuv's threads for its whole length (its tokens
 * come back through the addon's workers), and file, DNS and SQLite work waits for a free one: room
 * for queue.parallel's largest value (16) beside libuv's own four. Read when the pool first starts,
 * which is after this line; a value the user set is kept.
 */
const UV_THREADS = 4 + 16;

async function main(): Promise<void> {
  process.env.UV_THREADPOOL_SIZE ??= String(UV_THREADS);
  // A reader that goes away (`bonsai run ... | head`) is a normal end, not a crash.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
  const program = await loadProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed the message (or the help) itself.
      process.exitCode = e.exitCode;
      return;
    }
    fail(e, program.opts().verbose === true);
  }
}

await main();
