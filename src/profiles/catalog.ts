// The board profiles in firmware-profiles/: one JSON file per board, checked against
// firmware-profiles/schema.json and then against what the schema cannot say (thresholds in
// order, variants by size, patterns that compile), so detection never works from a profile that
// contradicts itself. A broken file is refused with its name and the JSON path of the fault.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

/** Beside src/ and dist/ alike: both are one level below the package root. */
export const PROFILES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'firmware-profiles');

/** The engine's kernel paths (native/kernels/isa.h), the names `--kernels`, `model.kernels` and a
 * profile's kernel_path take; schema.json's kernelPath lists the same (test/profiles.test.ts). */
export const KERNEL_PATHS = ['scalar', 'neon', 'dotprod', 'i8mm', 'avx2', 'avx512', 'avx512vbmi'] as const;
export type KernelPath = (typeof KERNEL_PATHS)[number];
export type KvType = 'f32' | 'f16';
export type BonsaiName = 'Bonsai-1.7B' | 'Bonsai-4B' | 'Bonsai-8B';

/** A kind of core and how many the board has, as /proc/cpuinfo numbers them ("0x41", "0xd08"). */
export interface CoreKind {
  implementer: string;
  part: string;
  count: number;
}

export interface RamVariant {
  ram_mb: number;
  memory_budget_mb: number;
  context_size: number;
  kv_type: KvType;
  mlock: boolean;
  prefix_cache_mb: number;
  recommended_model: BonsaiName | null;
  threads?: number;
  /** Generations decoded together (queue.parallel). */
  parallel?: number;
  cpus?: number[];
  service: { memory_high_mb: number; memory_max_mb: number; cpu_quota_percent?: number };
  notes?: string;
}

export interface BoardProfile {
  id: string;
  name: string;
  arch: 'aarch64' | 'x86_64';
  /** Absent: the fallback of its architecture. */
  match?: {
    model?: string[];
    compatible?: string[];
    hardware?: string[];
    cpu?: CoreKind[];
    by_cpu?: boolean;
  };
  cpu: { threads: number | 'auto'; max_threads?: number; cpus?: number[]; kernel_path?: KernelPath };
  thermal: { zones: string[]; throttle_c: number; pause_c: number; resume_c: number; min_threads: number; interval_sec: number; notes?: string };
  page_size: { expected: number[]; notes?: string };
  service: { cpu_quota_percent?: number; nice: number };
  /** Smallest first. */
  variants: RamVariant[];
  notes: string[];
}

export class ProfileError extends Error {
  override name = 'ProfileError';
}

let validator: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (!validator) {
    const schema: unknown = JSON.parse(readFileSync(path.join(PROFILES_DIR, 'schema.json'), 'utf8'));
    validator = new Ajv2020({ allErrors: true, strict: true }).compile(schema as object);
  }
  return validator;
}

/** `file: /variants/1/kv_type: must be equal to one of the allowed values (f32, f16)`, one per fault. */
function describeErrors(file: string, errors: ErrorObject[]): string {
  return errors
    .map((e) => {
      const allowed = e.keyword === 'enum' ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ')})` : '';
      const extra = e.keyword === 'additionalProperties' ? ` "${(e.params as { additionalProperty: string }).additionalProperty}"` : '';
      return `${file}: ${e.instancePath || '/'}: ${e.message ?? e.keyword}${allowed}${extra}`;
    })
    .join('; ');
}

/** Parses and checks one profile; `file` names it in errors and must be `<id>.json`. */
export function parseProfile(text: string, file: string): BoardProfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProfileError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const validate = schemaValidator();
  if (!validate(value)) throw new ProfileError(describeErrors(file, validate.errors ?? []));
  const profile = value as BoardProfile;
  const faults = semanticFaults(profile, path.basename(file, '.json'));
  if (faults.length) throw new ProfileError(faults.map((f) => `${file}: ${f}`).join('; '));
  return profile;
}

/** What the schema cannot check, each with its JSON path. */
function semanticFaults(p: BoardProfile, fileId: string): string[] {
  const faults: string[] = [];
  if (p.id !== fileId) faults.push(`/id: "${p.id}" must be the file name ("${fileId}")`);
  const t = p.thermal;
  if (!(t.resume_c < t.throttle_c && t.throttle_c < t.pause_c)) faults.push(`/thermal: resume_c < throttle_c < pause_c is required (${t.resume_c}, ${t.throttle_c}, ${t.pause_c})`);
  if (p.cpu.threads === 'auto' && p.cpu.max_threads === undefined) faults.push('/cpu/max_threads: required with threads "auto"');
  if (p.cpu.threads !== 'auto' && p.cpu.max_threads !== undefined) faults.push('/cpu/max_threads: only with threads "auto"');
  for (const [key, patterns] of Object.entries({ model: p.match?.model, compatible: p.match?.compatible, hardware: p.match?.hardware })) {
    (patterns ?? []).forEach((pattern, i) => {
      try {
        new RegExp(pattern);
      } catch (err) {
        faults.push(`/match/${key}/${i}: ${(err as Error).message}`);
      }
    });
  }
  if (p.match?.by_cpu && !p.match.cpu) faults.push('/match/by_cpu: needs match.cpu');
  p.variants.forEach((v, i) => {
    const at = `/variants/${i}`;
    if (i > 0 && v.ram_mb <= p.variants[i - 1]!.ram_mb) faults.push(`${at}/ram_mb: variants go from the smallest RAM up, each size once`);
    if (v.memory_budget_mb + v.prefix_cache_mb > v.ram_mb) faults.push(`${at}/memory_budget_mb: with prefix_cache_mb more than the RAM (${v.ram_mb} MiB)`);
    if (v.service.memory_max_mb < v.service.memory_high_mb) faults.push(`${at}/service/memory_max_mb: below memory_high_mb`);
    const threads = v.threads ?? p.cpu.threads;
    const cpus = v.cpus ?? p.cpu.cpus;
    if (typeof threads === 'number' && cpus && cpus.length < threads) faults.push(`${at}: ${threads} threads on ${cpus.length} CPUs`);
  });
  return faults;
}

const catalogs = new Map<string, BoardProfile[]>();

/**
 * Every profile in `dir` (each `*.json` but the schema), sorted by id; read once per directory.
 * Each architecture has exactly one fallback (a profile without `match`).
 */
export function loadProfiles(dir = PROFILES_DIR): BoardProfile[] {
  const cached = catalogs.get(dir);
  if (cached) return cached;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'schema.json').sort();
  const profiles = files.map((f) => parseProfile(readFileSync(path.join(dir, f), 'utf8'), path.join(dir, f)));
  for (const arch of new Set(profiles.map((p) => p.arch))) {
    const fallbacks = profiles.filter((p) => p.arch === arch && !p.match).map((p) => p.id);
    if (fallbacks.length !== 1) throw new ProfileError(`${dir}: ${arch} needs exactly one profile without "match" (its fallback), found ${fallbacks.length ? fallbacks.join(', ') : 'none'}`);
  }
  catalogs.set(dir, profiles);
  return profiles;
}

export function profileById(id: string, profiles = loadProfiles()): BoardProfile {
  const profile = profiles.find((p) => p.id === id);
  if (!profile) throw new ProfileError(`unknown profile "${id}": use one of ${profiles.map((p) => p.id).join(', ')}`);
  return profile;
}

/** "512 MB", "4 GB": boards are sold by these names. */
export function ramLabel(mb: number): string {
  return mb >= 1024 ? `${mb / 1024} GB` : `${mb} MB`;
}
