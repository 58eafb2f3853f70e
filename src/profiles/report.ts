// A chosen profile as `bonsai profile --json` prints it: the board's facts, the settings the
// profile gives the daemon, and the systemd limits the install script writes into the unit. The
// field names are an interface: scripts/install reads `service.*`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { native } from '../native.js';
import { ramLabel } from './catalog.js';
import { formatCpuList } from './cpu-list.js';
import { describeCores, type ProfileChoice } from './detect.js';
import { largestBonsai } from './memory.js';

export interface ProfileReport {
  id: string;
  name: string;
  /** The RAM variant, as the board is sold ("4 GB"), and its size in MiB. */
  variant: string;
  variant_ram_mb: number;
  reason: string;
  /** MemTotal in MiB; null when unreadable. */
  ram_mb: number | null;
  cores: number;
  /** "4x Cortex-A72 (0xd08)"; null when cpuinfo names no parts (x86). */
  core_kinds: string | null;
  kernel_path: string;
  threads: number;
  cpus: number[];
  /** The largest Bonsai model that fits with the variant's context size and KV type. */
  max_model: string | null;
  context_size: number;
  kv_type: string;
  mlock: boolean;
  memory_budget_mb: number;
  prefix_cache_mb: number;
  thermal: { throttle_c: number; pause_c: number; resume_c: number; min_threads: number; interval_sec: number; zone: string | null; celsius: number | null };
  /** Bytes; null when the tree does not say. */
  page_size: number | null;
  /** cpu_affinity: the CPUs the daemon's threads are held to (a CPU list, "4-7"), null where the profile names none. */
  service: { memory_high_mb: number; memory_max_mb: number; cpu_quota_percent: number | null; cpu_affinity: string | null; nice: number };
  recommended_model: string | null;
  warnings: string[];
}

/**
 * The page size under `sysroot`: on this machine the engine's own (native/core, sysconf); in a
 * test's tree the `KernelPageSize` of proc/self/smaps when it has one.
 */
export function pageSizeOf(sysroot: string): number | undefined {
  if (sysroot === '/') return native.pageSize();
  let smaps: string;
  try {
    smaps = readFileSync(path.join(sysroot, 'proc/self/smaps'), 'latin1');
  } catch {
    return undefined;
  }
  const kb = Number(/^KernelPageSize:\s+(\d{1,7})\s+kB$/m.exec(smaps)?.[1] ?? NaN);
  return Number.isInteger(kb) && kb > 0 && (kb & (kb - 1)) === 0 ? kb * 1024 : undefined;
}

export function profileReport(choice: ProfileChoice): ProfileReport {
  const { profile, variant, facts } = choice;
  const pageSize = pageSizeOf(facts.sysroot);
  const warnings = [...choice.warnings];
  if (pageSize !== undefined && !profile.page_size.expected.includes(pageSize)) {
    warnings.push(`the kernel's pages are ${pageSize / 1024} KiB; ${profile.id} expects ${profile.page_size.expected.map((p) => `${p / 1024} KiB`).join(' or ')}`);
  }
  const t = profile.thermal;
  return {
    id: profile.id,
    name: profile.name,
    variant: ramLabel(variant.ram_mb),
    variant_ram_mb: variant.ram_mb,
    reason: choice.reason,
    ram_mb: facts.memTotalKiB === undefined ? null : Math.round(facts.memTotalKiB / 1024),
    cores: facts.cores.length,
    core_kinds: describeCores(facts.cores) ?? null,
    kernel_path: choice.kernelPath,
    threads: choice.threads,
    cpus: choice.cpus,
    max_model: largestBonsai(variant),
    context_size: variant.context_size,
    kv_type: variant.kv_type,
    mlock: variant.mlock,
    memory_budget_mb: variant.memory_budget_mb,
    prefix_cache_mb: variant.prefix_cache_mb,
    thermal: {
      throttle_c: t.throttle_c,
      pause_c: t.pause_c,
      resume_c: t.resume_c,
      min_threads: t.min_threads,
      interval_sec: t.interval_sec,
      zone: choice.cpuZone?.type ?? null,
      celsius: choice.cpuZone?.celsius ?? null,
    },
    page_size: pageSize ?? null,
    service: {
      memory_high_mb: variant.service.memory_high_mb,
      memory_max_mb: variant.service.memory_max_mb,
      cpu_quota_percent: variant.service.cpu_quota_percent ?? profile.service.cpu_quota_percent ?? null,
      cpu_affinity: choice.pinned ? formatCpuList(choice.cpus) : null,
      nice: profile.service.nice,
    },
    recommended_model: variant.recommended_model,
    warnings,
  };
}
