// Option parsers and model loading shared by the CLI commands.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { BUNDLED_MODEL } from '../bundled.js';
import { Caches } from '../cache/caches.js';
import { CACHE_DEFAULTS } from '../cache/defaults.js';
import { Model, defaultThreads, type LoadOptions } from '../engine/engine.js';
import { KERNEL_PATHS } from '../profiles/catalog.js';

export function intOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

export function floatOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}`);
    }
    return n;
  };
}

/** Comma-separated token ids, e.g. "1,403,407". */
export function idsOption(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new InvalidArgumentError('ids must be comma-separated non-negative integers, e.g. 1,403,407');
  }
  return parts.map(Number);
}

/** The options every command that loads weights takes. */
export function addModelOptions(cmd: Command): Command {
  return addRuntimeOptions(
    cmd
      .option('-m, --model <file>', 'GGUF model file (default: the bundled 1-bit TinyStories model)', BUNDLED_MODEL)
      .option('-t, --threads <n>', 'worker threads', intOption('threads', 1, 256), defaultThreads()),
  );
}

/** How a loaded model runs: context size, KV cache type, kernel path. */
export function addRuntimeOptions(cmd: Command, contextDefault = 'min(training context, 4096)'): Command {
  return cmd
    .option('-c, --ctx-size <n>', `context size in tokens (default: ${contextDefault})`, intOption('ctx-size', 16, 1 << 20))
    .addOption(new Option('--kv-type <type>', 'KV cache type').choices(['f32', 'f16']).default('f32'))
    .addOption(new Option('--kernels <path>', 'force a kernel path').choices(KERNEL_PATHS));
}

export interface ModelCliOptions {
  model: string;
  threads: number;
  ctxSize?: number;
  kvType: 'f32' | 'f16';
  kernels?: string;
}

/** extra: load options no flag of the shared set gives (a draft model). */
export async function loadModel(opts: ModelCliOptions, caches?: Caches, extra: LoadOptions = {}): Promise<Model> {
  const load: LoadOptions = { ...extra, threads: opts.threads, kvType: opts.kvType };
  if (opts.ctxSize !== undefined) load.contextSize = opts.ctxSize;
  if (opts.kernels !== undefined) load.kernels = opts.kernels;
  const image = await caches?.imageFor(opts.model, opts.kernels);
  if (image) load.image = image;
  const model = await Model.load(opts.model, load);
  caches?.noteImage(image, model.loadInfo);
  return model;
}

/** --cache FILE / --no-cache: the prompt-prefix cache of commands that generate. */
export function addCacheOptions(cmd: Command): Command {
  return cmd
    .option('--cache <file>', 'cache file for prompt prefixes (default: $BONSAI_CACHE_PATH, else ~/.cache/bonsai-edge/cache.db)')
    .option('--no-cache', 'neither reuse nor store prompt prefixes');
}

export interface CacheCliOptions {
  /** A file, true for the default one, false with --no-cache. */
  cache: string | boolean;
}

/** The caches a command uses (undefined with --no-cache); their warnings go to stderr. */
export function openCaches(opts: CacheCliOptions): Caches | undefined {
  if (opts.cache === false) return undefined;
  const path = typeof opts.cache === 'string' ? opts.cache : process.env.BONSAI_CACHE_PATH || undefined;
  const warn = (fields: Record<string, unknown>, message: string) => process.stderr.write(`bonsai: ${message}${fields.err ? ` (${String(fields.err)})` : ''}\n`);
  return new Caches({ ...CACHE_DEFAULTS, ...(path ? { path } : {}) }, { warn });
}

/** Loads the model with its caches attached; closing the model closes the caches. */
export async function loadCachedModel(opts: ModelCliOptions & CacheCliOptions, extra: LoadOptions = {}): Promise<{ model: Model; caches: Caches | undefined }> {
  const caches = openCaches(opts);
  const model = await loadModel(opts, caches, extra);
  await caches?.attach(model);
  return { model, caches };
}
