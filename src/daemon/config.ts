// The daemon's configuration: one zod schema is the single source of truth for the keys, their
// types, defaults and documentation. Values are layered, each layer winning over the ones before:
// defaults < the board profile < JSON file < environment (BONSAI_<SECTION>_<KEY>) < command-line
// flags, and the merged result is validated once. The board profile (src/profiles/, detected from
// profile.sysroot or named by profile.id, both taken from the layers above it) fills in what suits
// the board: model.threads, model.cpus, model.mlock, model.contextSize, model.kvType,
// model.kernels, cache.memoryMb and the thermal section; anything the user sets wins over it. A file written for an older version is
// migrated first (config-migrations.ts).
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { z } from 'zod';
import { BUNDLED_MODEL } from '../bundled.js';
import { CACHE_DEFAULTS } from '../cache/defaults.js';
import { SAMPLING_DEFAULTS } from '../engine/sampling.js';
import { KERNEL_PATHS, ProfileError } from '../profiles/catalog.js';
import { formatCpuList, parseCpuList } from '../profiles/cpu-list.js';
import { chooseProfile, type ProfileChoice } from '../profiles/detect.js';
import { CONFIG_VERSION, ConfigMigrationError, migrateConfigFile, renamedKeys } from './config-migrations.js';

// prefault({}) parses an absent section as {} so that each key's own default applies.
const section = <T extends z.ZodRawShape>(shape: T) => z.strictObject(shape).prefault({} as z.input<z.ZodObject<T, z.core.$strict>>);
const int = () => z.number().int();
// Names that become part of topics: a wildcard or an empty level would subscribe to the wrong
// thing or get the connection dropped by the broker, in a loop.
const WILDCARDS = /[+#\0]/;
const topicLevel = () =>
  z.string().min(1).max(128).refine((v) => !WILDCARDS.test(v) && !v.includes('/') && !v.startsWith('$'), 'must be one topic level: no / + # NUL, no leading $');
const BROKER_SCHEMES = ['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ssl:', 'ws:', 'wss:'];
const brokerUrl = () =>
  z.string().refine((v) => {
    try {
      const url = new URL(v);
      return BROKER_SCHEMES.includes(url.protocol) && url.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be a broker URL such as mqtt://host:1883, mqtts://host:8883 or ws://host:9001/mqtt');
const topicPath = () =>
  z
    .string()
    .min(1)
    .max(256)
    .refine((v) => !WILDCARDS.test(v) && !v.startsWith('$') && v.split('/').every((level) => level !== ''), 'must be topic levels joined by /: no + # NUL, no empty level, no leading $');

/** Generations decoded together when neither the configuration nor the board profile says. */
export const DEFAULT_PARALLEL = 4;

export const configSchema = z.strictObject({
  version: z.literal(CONFIG_VERSION).default(CONFIG_VERSION),
  model: section({
    path: z.string().min(1).default(BUNDLED_MODEL).describe('GGUF model file (default: the bundled 1-bit TinyStories model)'),
    threads: int().min(1).max(256).optional().describe("inference threads (default: the board profile's)"),
    contextSize: int().min(16).optional().describe("context size in tokens (default: the board profile's, at most the training context)"),
    kvType: z.enum(['f32', 'f16']).default('f32').describe("KV cache type (the board profile's: f16 where memory is short)"),
    kernels: z.enum(KERNEL_PATHS).optional().describe(`kernel path: ${KERNEL_PATHS.join(', ')} (default: the best this CPU has)`),
    cpus: z
      .string()
      .refine((v) => parseCpuList(v) !== undefined, 'must be a CPU list such as 4-7 or 0,2,5')
      .optional()
      .describe("CPUs the daemon's threads run on, e.g. 4-7 (default: the cores the board profile names; none: where the kernel puts them)"),
    mlock: z.boolean().default(false).describe("lock the weights in memory once loaded, never paged out (the board profile's; needs LimitMEMLOCK= or ulimit -l)"),
    draftModel: z.string().min(1).optional().describe('a smaller model with the same vocabulary that drafts for speculative decoding, instead of prompt lookup'),
    draftTokens: int().min(0).max(64).default(8).describe('speculative decoding: most draft tokens per step when a request gives no "draft"; 0 = off'),
  }),
  sampling: section({
    maxTokens: int().min(1).default(256).describe('max_tokens when a request gives none'),
    temperature: z.number().min(0).max(5).default(SAMPLING_DEFAULTS.temperature).describe('temperature when a request gives none (0 = greedy)'),
    topP: z.number().min(0).max(1).default(SAMPLING_DEFAULTS.topP).describe('top_p default'),
    topK: int().min(0).default(SAMPLING_DEFAULTS.topK).describe('top_k default (0 = off)'),
    minP: z.number().min(0).max(1).default(SAMPLING_DEFAULTS.minP).describe('min_p default'),
  }),
  limits: section({
    maxTokens: int().min(1).default(4096).describe('largest max_tokens a request may ask for'),
    maxPayloadBytes: int().min(64).default(262144).describe('larger request payloads get `too_large`'),
    maxRunMs: int().min(100).default(600000).describe('a generation running longer ends with `timeout`'),
  }),
  queue: section({
    maxWaiting: int().min(0).default(8).describe('requests waiting behind the running ones; more get `busy`'),
    parallel: int().min(1).max(16).optional().describe("generations decoded together, each with its own KV cache (default: the board profile's, else 4; fewer where the memory budget holds fewer)"),
  }),
  mqtt: section({
    url: brokerUrl().optional().describe('broker URL (mqtt://, mqtts://, ws://, wss://); unset: start the embedded broker'),
    username: z.string().optional().describe('broker user name'),
    password: z.string().optional().describe('broker password'),
    ca: z.string().optional().describe('PEM file of the CA that signed the broker certificate'),
    cert: z.string().optional().describe('PEM client certificate file (mutual TLS)'),
    key: z.string().optional().describe('PEM client key file (mutual TLS)'),
    rejectUnauthorized: z.boolean().default(true).describe('verify the broker certificate'),
    clientId: z.string().min(1).optional().describe('MQTT client id (default: bonsai-<node>)'),
    protocol: z.enum(['auto', '5', '3.1.1']).default('auto').describe('auto: MQTT 5, falling back to 3.1.1 when the broker refuses 5'),
    keepaliveSec: int().min(5).default(30).describe('MQTT keep-alive'),
    reconnectMinMs: int().min(50).default(500).describe('first reconnect delay; doubles up to reconnectMaxMs'),
    reconnectMaxMs: int().min(100).default(30000).describe('longest reconnect delay'),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(1).describe('QoS of subscriptions and replies'),
  }),
  embedded: section({
    host: z.string().default('127.0.0.1').describe('address of the embedded broker; beyond loopback only with username+password'),
    port: int().min(0).max(65535).default(1883).describe('port of the embedded broker'),
    username: z.string().min(1).optional().describe('user name clients of the embedded broker must give'),
    password: z.string().min(1).optional().describe('password clients of the embedded broker must give'),
  }),
  topics: section({
    base: topicPath().default('bonsai').describe('base topic'),
    node: topicLevel().default(os.hostname()).describe('node id in topics (default: host name)'),
    shared: z.enum(['auto', 'always', 'never']).default('auto').describe('take <base>/request as $share/<group>/...: auto = when the MQTT 5 broker says it can'),
    sharedGroup: topicLevel().default('bonsai').describe('shared subscription group'),
  }),
  replies: section({
    chunkIntervalMs: int().min(0).default(50).describe('streamed text is coalesced into at most one chunk per interval'),
    chunkExpirySec: int().min(1).default(300).describe('MQTT 5 message expiry of chunks'),
  }),
  health: section({
    intervalSec: z.number().min(0.1).default(30).describe('period of the retained health message'),
  }),
  homeassistant: section({
    discovery: z.boolean().default(true).describe('publish Home Assistant MQTT discovery'),
    prefix: topicPath().default('homeassistant').describe('Home Assistant discovery prefix'),
  }),
  cache: section({
    enabled: z.boolean().default(CACHE_DEFAULTS.enabled).describe('keep prompt prefixes, answers and the request journal in a SQLite file'),
    path: z.string().min(1).optional().describe('the cache file (default: $STATE_DIRECTORY or $CACHE_DIRECTORY under systemd, else ~/.cache/bonsai-edge/cache.db)'),
    memoryMb: z.number().min(0).default(CACHE_DEFAULTS.memoryMb).describe('in-memory budget of prompt-prefix KV blocks'),
    diskMb: z.number().min(0).default(CACHE_DEFAULTS.diskMb).describe('on-disk budget of prompt-prefix KV blocks'),
    answersMb: z.number().min(0).default(CACHE_DEFAULTS.answersMb).describe('on-disk budget of cached answers (deterministic requests only)'),
    blockTokens: int().min(16).max(1024).default(CACHE_DEFAULTS.blockTokens).describe('tokens per prompt-prefix block'),
  }),
  journal: section({
    maxAgeSec: int().min(1).default(600).describe('after a crash, unfinished requests older than this get `interrupted` instead of running'),
    retainSec: int().min(60).default(86400).describe('how long finished requests are remembered (a repeated id gets the same final reply)'),
    sessionExpirySec: int().min(0).default(3600).describe('how long the broker keeps undelivered requests for this node while it is down'),
  }),
  shutdown: section({
    mode: z.enum(['finish', 'cancel']).default('finish').describe('on SIGTERM/SIGINT: let the running generation finish, or cancel it'),
    graceMs: int().min(0).default(30000).describe('finish mode: cancel the running generation after this long'),
  }),
  thermal: section({
    throttleC: z.number().min(20).max(130).default(85).describe('CPU °C at which the engine works with fewer threads'),
    pauseC: z.number().min(20).max(130).default(95).describe('CPU °C at which generation pauses between tokens'),
    resumeC: z.number().min(20).max(130).default(80).describe('below this CPU °C: full speed again'),
    minThreads: int().min(1).max(256).default(1).describe('fewest threads while throttled'),
    intervalSec: z.number().min(0.1).max(3600).default(5).describe('period of the temperature check'),
  }),
  profile: section({
    id: z.string().min(1).max(64).optional().describe('board profile (firmware-profiles/<id>.json; default: detected)'),
    sysroot: z.string().min(1).default('/').describe('root of the /proc and /sys trees the board is detected from'),
  }),
  log: section({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('log level'),
  }),
});

export type DaemonConfig = z.infer<typeof configSchema>;
type Layer = Record<string, unknown>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Dotted keys (e.g. "mqtt.url") from command-line flags; undefined values are ignored. */
  flags?: Record<string, unknown>;
}

export function loadConfig(sources: ConfigSources = {}): DaemonConfig {
  return readConfig(sources).config;
}

/** The board profile the configuration was layered on, and the keys whose values came from it. */
export interface ChosenProfile extends ProfileChoice {
  /** Dotted keys (e.g. "model.contextSize") set by the profile and by no later layer. */
  applied: string[];
}

/**
 * The configuration, what the reader changed on the way (keys renamed since the file was written),
 * and the board profile it was layered on: which, why, and what about the board does not fit it.
 */
export function readConfig(sources: ConfigSources = {}): { config: DaemonConfig; warnings: string[]; profile: ChosenProfile } {
  const user: Layer = {};
  const warnings: string[] = [];
  if (sources.file) {
    const { layer, notes } = migrateFile(readConfigFile(sources.file), sources.file);
    mergeLayer(user, layer);
    warnings.push(...notes);
  }
  mergeLayer(user, envLayer(sources.env ?? {}, warnings));
  mergeLayer(user, dottedLayer(sources.flags ?? {}));
  const choice = boardProfile(user);
  const layer = profileLayer(choice);
  const merged: Layer = {};
  mergeLayer(merged, layer);
  mergeLayer(merged, user);
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${describeIssues(parsed.error, merged)}`);
  const { thermal } = parsed.data;
  if (!(thermal.resumeC < thermal.throttleC && thermal.throttleC < thermal.pauseC)) {
    throw new ConfigError(`invalid configuration: thermal.resumeC < thermal.throttleC < thermal.pauseC is required (given: ${thermal.resumeC}, ${thermal.throttleC}, ${thermal.pauseC})`);
  }
  const applied = Object.entries(layer).flatMap(([sec, values]) =>
    Object.keys(values as Layer).filter((leaf) => !isSection(user[sec]) || !(leaf in (user[sec] as Layer))).map((leaf) => `${sec}.${leaf}`),
  );
  return { config: parsed.data, warnings, profile: { ...choice, applied } };
}

/** The profile section is read from the layers above the profile, so it is checked on its own first. */
function boardProfile(user: Layer): ProfileChoice {
  const parsed = configSchema.shape.profile.safeParse(user.profile);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${describeIssues(parsed.error, user, 'profile')}`);
  try {
    return chooseProfile({ sysroot: parsed.data.sysroot, ...(parsed.data.id !== undefined ? { id: parsed.data.id } : {}) });
  } catch (err) {
    if (err instanceof ProfileError) throw new ConfigError(`profile.id: ${err.message}`);
    throw err;
  }
}

/** What the board profile contributes, as config keys. */
function profileLayer(choice: ProfileChoice): Layer {
  const { profile, variant } = choice;
  const t = profile.thermal;
  return {
    model: {
      threads: choice.threads,
      contextSize: variant.context_size,
      kvType: variant.kv_type,
      mlock: variant.mlock,
      ...(choice.pinned ? { cpus: formatCpuList(choice.cpus) } : {}),
      ...(profile.cpu.kernel_path ? { kernels: profile.cpu.kernel_path } : {}),
    },
    cache: { memoryMb: variant.prefix_cache_mb },
    ...(variant.parallel ? { queue: { parallel: variant.parallel } } : {}),
    thermal: { throttleC: t.throttle_c, pauseC: t.pause_c, resumeC: t.resume_c, minThreads: t.min_threads, intervalSec: t.interval_sec },
  };
}

/** One line: each problem with its key and the value given, e.g. `mqtt.url: must be ... (given: "x")`. */
function describeIssues(error: z.ZodError, merged: Layer, section?: string): string {
  return error.issues
    .map((issue) => {
      const keys = section ? [section, ...issue.path] : issue.path;
      const key = keys.join('.');
      if (issue.code === 'unrecognized_keys') return `unknown key(s) ${issue.keys.map((k) => (key ? `${key}.${k}` : k)).join(', ')}`;
      const given = keys.reduce<unknown>((v, p) => (isSection(v) ? v[p as string] : undefined), merged);
      return `${key}: ${issue.message}${given !== undefined ? ` (given: ${JSON.stringify(given)})` : ''}`;
    })
    .join('; ');
}

function migrateFile(layer: Layer, file: string): { layer: Layer; notes: string[] } {
  try {
    return migrateConfigFile(layer, file);
  } catch (err) {
    if (err instanceof ConfigMigrationError) throw new ConfigError(err.message);
    throw err;
  }
}

/** Every key with its environment variable, default and description (for docs and --help). */
export function describeConfig(): { key: string; env: string; default: string; description: string }[] {
  return leaves().map(({ key, schema }) => ({
    key,
    env: envName(key),
    default: schema.def.type === 'default' ? JSON.stringify((schema as z.ZodDefault).def.defaultValue) : '',
    description: schema.description ?? '',
  }));
}

function leaves(): { key: string; schema: z.ZodType }[] {
  const out: { key: string; schema: z.ZodType }[] = [];
  for (const [name, sec] of Object.entries(configSchema.shape)) {
    if (name === 'version') continue;
    const inner = (sec.def as unknown as { innerType: z.ZodObject }).innerType;
    for (const [leaf, schema] of Object.entries(inner.shape)) out.push({ key: `${name}.${leaf}`, schema: schema as z.ZodType });
  }
  return out;
}

function envName(key: string): string {
  return 'BONSAI_' + key.replace('.', '_').replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

function readConfigFile(file: string): Layer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('top level must be an object');
    return value as Layer;
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

function envLayer(env: NodeJS.ProcessEnv, warnings: string[]): Layer {
  const flat: Record<string, unknown> = {};
  const oldNames = new Map([...renamedKeys()].map(([old, current]) => [current, old]));
  for (const { key, schema } of leaves()) {
    let raw = env[envName(key)];
    const old = oldNames.get(key);
    if ((raw === undefined || raw === '') && old !== undefined && env[envName(old)]) {
      raw = env[envName(old)];
      warnings.push(`environment: ${envName(old)} is now ${envName(key)}`);
    }
    if (raw !== undefined && raw !== '') flat[key] = coerceEnv(raw, leafType(schema));
  }
  return dottedLayer(flat);
}

/** Environment values are strings; turn them into what the key expects so zod can check them. */
function coerceEnv(raw: string, type: string): unknown {
  if (type === 'number' || type === 'union') return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  if (type === 'boolean') return /^(1|true|yes|on)$/i.test(raw) ? true : /^(0|false|no|off)$/i.test(raw) ? false : raw;
  return raw;
}

function leafType(schema: z.ZodType): string {
  let s = schema;
  while (s.def.type === 'default' || s.def.type === 'optional') s = (s.def as unknown as { innerType: z.ZodType }).innerType;
  return s.def.type;
}

function dottedLayer(flat: Record<string, unknown>): Layer {
  const out: Layer = {};
  for (const [key, value] of Object.entries(flat)) {
    if (value === undefined) continue;
    const [sec, leaf] = key.split('.', 2) as [string, string];
    ((out[sec] ??= {}) as Layer)[leaf] = value;
  }
  return out;
}

function isSection(value: unknown): value is Layer {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function mergeLayer(into: Layer, layer: Layer): void {
  for (const [sec, values] of Object.entries(layer)) {
    const earlier = into[sec];
    into[sec] = isSection(values) && isSection(earlier) ? { ...earlier, ...values } : values;
  }
}
