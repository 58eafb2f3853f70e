// The `bonsai` program: each subcommand lives in its own module and registers itself here.
import { Command } from 'commander';
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
import { register as registerPack } from './pack.js';
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
    registerPack,
  ];
  for (const register of commands) {
    register(program);
  }
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}
