#!/usr/bin/env node
// The `bonsai` command line: each subcommand lives in its own module and registers itself here.
import { Command, CommanderError } from 'commander';
import { register as registerRun } from './run.js';
import { register as registerTokenize } from './tokenize.js';
import { register as registerInspect } from './inspect.js';
import { register as registerLogits } from './logits.js';
import { register as registerPerplexity } from './perplexity.js';
import { register as registerSynth } from './synth.js';
import { register as registerBench } from './bench.js';
import { register as registerChat } from './chat.js';
import { register as registerServe } from './serve.js';
import { register as registerAsk } from './ask.js';
import { register as registerCache } from './cache.js';
import { register as registerDoctor } from './doctor.js';
import { register as registerProfile } from './profile.js';
import { register as registerDistill } from './distill.js';
import { packageVersion } from '../version.js';

export function buildProgram(): Command {
  const program = new Command('bonsai')
    .description('Run 1-bit (Bonsai, Q1_0) and other GGUF language models offline, and serve them over MQTT')
    .version(packageVersion())
    .option('--verbose', 'print stack traces with errors')
    .exitOverride();
  const commands = [
    registerServe,
    registerAsk,
    registerRun,
    registerTokenize,
    registerInspect,
    registerLogits,
    registerPerplexity,
    registerSynth,
    registerBench,
    registerChat,
    registerCache,
    registerDoctor,
    registerProfile,
    registerDistill,
  ];
  for (const register of commands) {
    register(program);
  }
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

async function main(): Promise<void> {
  // A reader that goes away (`bonsai run ... | head`) is a normal end, not a crash.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed the message (or the help) itself.
      process.exitCode = e.exitCode;
      return;
    }
    const err = e as Error;
    process.stderr.write(`bonsai: ${program.opts().verbose ? (err.stack ?? err.message) : err.message}\n`);
    // Exit now: a handle left open on the way to the error (a socket, a timer) must not keep a
    // failed command alive, where a supervisor would take it for running.
    process.exit(1);
  }
}

await main();
