// The configuration fitted to the board it runs on: what `bonsai serve` applies before it starts
// and `bonsai doctor` checks, in one place; and the daemon's threads placed on the board's cores.
import { native } from '../native.js';
import { formatCpuList, parseCpuList } from '../profiles/cpu-list.js';
import { contextsThatFit, modelFits, readModelFacts, type FitResult, type ModelFacts } from '../profiles/memory.js';
import { DEFAULT_PARALLEL, type ChosenProfile, type DaemonConfig } from './config.js';

/**
 * The configuration fitted to the model and the board before anything starts: a context size the
 * profile chose is at most what the model was trained for (one the user asked for is not cut: the
 * engine refuses it, saying so); a kernel path the profile expects gives way to the one the engine
 * detects on this CPU; as many generations run at once as asked (default DEFAULT_PARALLEL) where
 * their KV caches fit the memory budget, fewer otherwise (said in a warning when a configured
 * number is cut); and whether the model fits the board's memory budget (`bonsai serve` refuses one
 * that does not, `bonsai doctor` reports it).
 */
export function fitToBoard(config: DaemonConfig, profile: ChosenProfile): { config: DaemonConfig; warnings: string[]; fit?: FitResult } {
  const facts = modelFactsOf(config.model.path);
  if (!facts) return { config, warnings: [] };
  const model = { ...config.model };
  const warnings: string[] = [];
  if (profile.applied.includes('model.contextSize') && model.contextSize !== undefined && model.contextSize > facts.trainedContext) model.contextSize = facts.trainedContext;
  if (profile.applied.includes('model.kernels')) {
    const detected = native.kernelPaths().selected;
    if (model.kernels !== detected) {
      warnings.push(`${profile.profile.id} expects the ${model.kernels} kernel path; the engine picks ${detected} on this CPU: using ${detected}`);
      delete model.kernels;
    }
  }
  const fit = modelFits(profile.profile, profile.variant, facts, model.contextSize, model.kvType);
  const asked = config.queue.parallel ?? DEFAULT_PARALLEL;
  const parallel = Math.max(1, Math.min(asked, contextsThatFit(facts, fit.contextSize, fit.kvType, fit.budgetBytes)));
  if (parallel < asked && config.queue.parallel !== undefined) {
    warnings.push(`queue.parallel ${asked}: the ${profile.profile.id} profile's memory budget holds the KV caches of ${parallel} generation(s) of ${fit.contextSize} tokens; running ${parallel} at once`);
  }
  return { config: { ...config, model, queue: { ...config.queue, parallel } }, warnings, fit };
}

/** Undefined without a model or with one that cannot be read: the daemon's load then says what is wrong, with its status, as for any model. */
function modelFactsOf(file: string | undefined): ModelFacts | undefined {
  if (!file) return undefined;
  try {
    return readModelFacts(file);
  } catch {
    return undefined;
  }
}

/** What placeOnCpus did, as one log line. */
export interface Placement {
  level: 'info' | 'warn';
  message: string;
  fields: Record<string, unknown>;
}

/**
 * Moves every thread of the daemon onto the CPUs of `list` (model.cpus) that this process may use,
 * before the model loads, so that the engine's thread pools start there. Never throws: CPUs this
 * process may not use (the machine lacks them, or its cpuset leaves them out) and a kernel that
 * refuses (under the service unit's seccomp filter; its CPUAffinity= has placed the process
 * already) are a warning, and the threads stay where they are.
 */
export function placeOnCpus(list: string): Placement {
  // The config schema let only a CPU list through.
  const wanted = parseCpuList(list) ?? [];
  const allowed = native.cpuAffinity();
  const may = formatCpuList(allowed);
  const usable = wanted.filter((cpu) => allowed.includes(cpu));
  const missing = wanted.filter((cpu) => !allowed.includes(cpu));
  const fields = { cpus: list, allowed: may };
  if (!usable.length) return { level: 'warn', message: `model.cpus ${list}: this process may run only on CPUs ${may}: its threads stay there`, fields };
  let moved = 0;
  // Already there (a unit's CPUAffinity=, taskset): nothing to ask of a kernel that may refuse.
  if (usable.length !== allowed.length) {
    try {
      moved = native.setCpuAffinity(usable);
    } catch (err) {
      return { level: 'warn', message: `cannot move the threads onto CPUs ${formatCpuList(usable)} (model.cpus): ${(err as Error).message}; they run on CPUs ${may}`, fields };
    }
  }
  const placed = { ...fields, cpus: formatCpuList(usable), threads_moved: moved };
  if (missing.length) {
    return { level: 'warn', message: `model.cpus ${list}: CPUs ${formatCpuList(missing)} are not among the CPUs this process may use (${may}): threads on CPUs ${formatCpuList(usable)}`, fields: placed };
  }
  return { level: 'info', message: `threads on CPUs ${formatCpuList(usable)}`, fields: placed };
}
