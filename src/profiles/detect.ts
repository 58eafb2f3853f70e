// Which board this is, from what Linux says about it under a root directory (`/`, or a test's
// tree): /proc/device-tree/{model,compatible}, /proc/cpuinfo (the cores, their features, and the
// Model/Hardware lines Raspberry Pi kernels add), /proc/meminfo (which RAM variant),
// /sys/class/thermal and the architecture. Every value read is checked before use; what cannot be
// read becomes a warning, never a crash, and a board no profile names gets its architecture's
// fallback. profile.id (`--profile`) skips the detection but not the checks against the facts.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadProfiles, profileById, ramLabel, type BoardProfile, type CoreKind, type KernelPath, type RamVariant } from './catalog.js';

export interface CpuCore {
  /** The `processor` number: the CPU number of affinity masks. */
  index: number;
  implementer?: number;
  part?: number;
  /** x86: which physical core this logical CPU is a thread of. */
  physicalCore?: string;
}

export interface ThermalReading {
  zone: string;
  type: string;
  celsius: number | undefined;
}

export interface SystemFacts {
  sysroot: string;
  /** uname -m's name: aarch64, x86_64, armv7l, ... */
  arch: string;
  archSource: string;
  deviceTreeModel?: string;
  compatible: string[];
  cpuinfoModel?: string;
  hardware?: string;
  cores: CpuCore[];
  /** The first processor's `Features` (ARM) or `flags` (x86). */
  features: string[];
  memTotalKiB?: number;
  thermal: ThermalReading[];
}

export interface ProfileChoice {
  profile: BoardProfile;
  variant: RamVariant;
  /** One line: what matched, and how the RAM variant was chosen. */
  reason: string;
  warnings: string[];
  facts: SystemFacts;
  threads: number;
  /** The CPU numbers the threads belong on. */
  cpus: number[];
  /**
   * Whether the profile names the cores its threads belong on: then the daemon's threads are held
   * to `cpus` (model.cpus, the unit's CPUAffinity=). A generic profile, made for any machine, leaves
   * them where the kernel puts them.
   */
  pinned: boolean;
  kernelPath: KernelPath;
  /** The CPU's thermal zone by the profile's preference, when there is one. */
  cpuZone?: ThermalReading;
}

export interface ChooseOptions {
  /** Root of the tree to read (default /). */
  sysroot?: string;
  /** A profile id: no detection. */
  id?: string;
  profiles?: BoardProfile[];
}

const MAX_FILE_BYTES = 4 << 20;

/** ARM cores by name and class (higher is faster), as their MIDR part numbers say. */
const ARM_PARTS: Record<number, { name: string; rank: number }> = {
  0xd04: { name: 'Cortex-A35', rank: 0 },
  0xd03: { name: 'Cortex-A53', rank: 1 },
  0xd05: { name: 'Cortex-A55', rank: 1 },
  0xd46: { name: 'Cortex-A510', rank: 1 },
  0xd80: { name: 'Cortex-A520', rank: 1 },
  0xd07: { name: 'Cortex-A57', rank: 2 },
  0xd08: { name: 'Cortex-A72', rank: 3 },
  0xd09: { name: 'Cortex-A73', rank: 3 },
  0xd0a: { name: 'Cortex-A75', rank: 4 },
  0xd0b: { name: 'Cortex-A76', rank: 5 },
  0xd0c: { name: 'Neoverse-N1', rank: 5 },
  0xd0d: { name: 'Cortex-A77', rank: 5 },
  0xd41: { name: 'Cortex-A78', rank: 6 },
  0xd42: { name: 'Cortex-A78AE', rank: 6 },
  0xd4b: { name: 'Cortex-A78C', rank: 6 },
  0xd44: { name: 'Cortex-X1', rank: 7 },
  0xd47: { name: 'Cortex-A710', rank: 7 },
  0xd49: { name: 'Neoverse-N2', rank: 7 },
  0xd4d: { name: 'Cortex-A715', rank: 7 },
  0xd81: { name: 'Cortex-A720', rank: 7 },
  0xd40: { name: 'Neoverse-V1', rank: 8 },
  0xd48: { name: 'Cortex-X2', rank: 8 },
  0xd4e: { name: 'Cortex-X3', rank: 8 },
  0xd4f: { name: 'Neoverse-V2', rank: 8 },
  0xd82: { name: 'Cortex-X4', rank: 9 },
};
const ARM_LTD = 0x41;

const hex = (n: number, digits: number) => `0x${n.toString(16).padStart(digits, '0')}`;

/** "Cortex-A72 (0xd08)", or the bare numbers of a core not in the table. */
function coreName(implementer: number | undefined, part: number | undefined): string {
  if (part === undefined) return 'unknown core';
  const known = implementer === ARM_LTD ? ARM_PARTS[part] : undefined;
  return known ? `${known.name} (${hex(part, 3)})` : `core ${implementer === undefined ? '?' : hex(implementer, 2)}/${hex(part, 3)}`;
}

function readText(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'latin1');
    return text.length <= MAX_FILE_BYTES ? text : undefined;
  } catch {
    return undefined;
  }
}

/** A device-tree string property: NUL-terminated, printable, not empty. */
function deviceTreeStrings(file: string): string[] {
  const raw = readText(file);
  if (raw === undefined) return [];
  return raw.split('\0').filter((s) => s !== '' && s.length <= 256 && /^[\x20-\x7e]+$/.test(s));
}

interface Cpuinfo {
  cores: CpuCore[];
  features: string[];
  model?: string;
  hardware?: string;
  cpuArchitecture?: string;
  x86: boolean;
}

const HEX = /^0x[0-9a-f]{1,8}$/i;

function parseCpuinfo(text: string): Cpuinfo {
  const cores: CpuCore[] = [];
  const info: Cpuinfo = { cores, features: [], x86: false };
  let current: CpuCore | undefined;
  let physicalId: string | undefined;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'processor') {
      current = /^\d{1,5}$/.test(value) ? { index: Number(value) } : undefined;
      if (current) cores.push(current);
      physicalId = undefined;
    } else if (key === 'CPU implementer' && current && HEX.test(value)) current.implementer = Number(value);
    else if (key === 'CPU part' && current && HEX.test(value)) current.part = Number(value);
    else if (key === 'CPU architecture' && info.cpuArchitecture === undefined) info.cpuArchitecture = value;
    else if ((key === 'Features' || key === 'flags') && info.features.length === 0) info.features = value.split(/\s+/).filter(Boolean);
    else if (key === 'vendor_id') info.x86 = true;
    else if (key === 'physical id') physicalId = value;
    else if (key === 'core id' && current) current.physicalCore = `${physicalId ?? 0}/${value}`;
    else if (key === 'Model' && value) info.model = value;
    else if (key === 'Hardware' && value) info.hardware = value;
  }
  return info;
}

/** uname -m's names for Node's process.arch. */
const NODE_ARCH: Record<string, string> = { arm64: 'aarch64', x64: 'x86_64', arm: 'armv7l', ia32: 'i686' };

function architecture(sysroot: string, cpuinfo: Cpuinfo | undefined): { arch: string; source: string } {
  // On this machine, what bonsai-edge itself runs as: a 32-bit userland on a 64-bit kernel is 32-bit.
  if (sysroot === '/') return { arch: NODE_ARCH[process.arch] ?? process.arch, source: 'this process' };
  const named = readText(path.join(sysroot, 'proc/sys/kernel/arch'))?.trim();
  if (named && /^[a-z0-9_]{2,16}$/.test(named)) return { arch: named, source: 'proc/sys/kernel/arch' };
  if (cpuinfo?.x86) return { arch: 'x86_64', source: 'proc/cpuinfo' };
  if (cpuinfo?.cpuArchitecture === '8' || cpuinfo?.features.includes('asimd')) return { arch: 'aarch64', source: 'proc/cpuinfo' };
  if (cpuinfo?.cpuArchitecture === '7') return { arch: 'armv7l', source: 'proc/cpuinfo' };
  return { arch: NODE_ARCH[process.arch] ?? process.arch, source: 'this process (the tree does not say)' };
}

function memTotalKiB(sysroot: string): number | undefined {
  const match = /^MemTotal:\s+(\d{1,15})\s+kB\s*$/m.exec(readText(path.join(sysroot, 'proc/meminfo')) ?? '');
  const kib = match ? Number(match[1]) : NaN;
  return Number.isSafeInteger(kib) && kib > 0 ? kib : undefined;
}

function thermalZones(sysroot: string): ThermalReading[] {
  const dir = path.join(sysroot, 'sys/class/thermal');
  let zones: string[];
  try {
    zones = readdirSync(dir).filter((z) => /^thermal_zone\d+$/.test(z));
  } catch {
    return [];
  }
  zones.sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  return zones.flatMap((zone) => {
    const type = readText(path.join(dir, zone, 'type'))?.trim();
    if (!type || type.length > 64) return [];
    const text = readText(path.join(dir, zone, 'temp'))?.trim() ?? '';
    const milli = /^-?\d{1,6}$/.test(text) ? Number(text) : NaN;
    // Millidegrees; a sensor that is off or broken reports nonsense, which is no reading.
    const celsius = milli > -60_000 && milli < 200_000 ? Math.round(milli / 100) / 10 : undefined;
    return [{ zone, type, celsius }];
  });
}

/** The facts detection works from; nothing here throws. */
export function readSystemFacts(sysroot = '/'): SystemFacts {
  const text = readText(path.join(sysroot, 'proc/cpuinfo'));
  const cpuinfo = text === undefined ? undefined : parseCpuinfo(text);
  const { arch, source } = architecture(sysroot, cpuinfo);
  const model = deviceTreeStrings(path.join(sysroot, 'proc/device-tree/model'))[0];
  const facts: SystemFacts = {
    sysroot,
    arch,
    archSource: source,
    compatible: deviceTreeStrings(path.join(sysroot, 'proc/device-tree/compatible')),
    cores: cpuinfo?.cores ?? [],
    features: cpuinfo?.features ?? [],
    thermal: thermalZones(sysroot),
  };
  if (model) facts.deviceTreeModel = model;
  if (cpuinfo?.model) facts.cpuinfoModel = cpuinfo.model;
  if (cpuinfo?.hardware) facts.hardware = cpuinfo.hardware;
  const kib = memTotalKiB(sysroot);
  if (kib !== undefined) facts.memTotalKiB = kib;
  return facts;
}

/** "4x Cortex-A55 (0xd05) + 4x Cortex-A76 (0xd0b)"; undefined when cpuinfo names no parts. */
export function describeCores(cores: CpuCore[]): string | undefined {
  const counts = tally(cores.flatMap((c) => (c.part === undefined ? [] : [coreName(c.implementer, c.part)])));
  return counts.size ? [...counts].map(([name, n]) => `${n}x ${name}`).join(' + ') : undefined;
}

function tally(keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** How many cores of each kind ("implementer/part"). */
function kindsOf(cores: CpuCore[]): Map<string, number> {
  return tally(cores.flatMap((c) => (c.part === undefined ? [] : [`${c.implementer ?? 0}/${c.part}`])));
}

function profileKinds(cpu: CoreKind[]): Map<string, number> {
  return new Map(cpu.map((k) => [`${Number(k.implementer)}/${Number(k.part)}`, k.count]));
}

/** The evidence that facts show this board, strongest first; undefined when none. */
function evidence(profile: BoardProfile, facts: SystemFacts): { strength: number; what: string } | undefined {
  const m = profile.match;
  if (!m) return undefined;
  const matches = (patterns: string[] | undefined, value: string | undefined) => value !== undefined && (patterns ?? []).some((p) => new RegExp(p).test(value));
  if (matches(m.model, facts.deviceTreeModel)) return { strength: 4, what: `device-tree model "${facts.deviceTreeModel}"` };
  const compatible = facts.compatible.find((c) => matches(m.compatible, c));
  if (compatible) return { strength: 4, what: `device-tree compatible "${compatible}"` };
  if (matches(m.model, facts.cpuinfoModel)) return { strength: 3, what: `cpuinfo Model "${facts.cpuinfoModel}"` };
  if (matches(m.hardware, facts.hardware)) return { strength: 2, what: `cpuinfo Hardware "${facts.hardware}"` };
  if (m.by_cpu && m.cpu && sameKinds(kindsOf(facts.cores), profileKinds(m.cpu), true)) return { strength: 1, what: `CPU ${describeCores(facts.cores)}` };
  return undefined;
}

function sameKinds(found: Map<string, number>, expected: Map<string, number>, counts: boolean): boolean {
  return found.size === expected.size && [...expected].every(([kind, n]) => found.has(kind) && (!counts || found.get(kind) === n));
}

/** What facts identify the board by, for messages. */
function describeBoard(facts: SystemFacts): string {
  const said = [
    facts.deviceTreeModel && `device-tree model "${facts.deviceTreeModel}"`,
    !facts.deviceTreeModel && facts.cpuinfoModel && `cpuinfo Model "${facts.cpuinfoModel}"`,
    describeCores(facts.cores),
  ].filter(Boolean);
  return said.length ? said.join(', ') : 'nothing readable';
}

/** The fallback profile: the architecture's own, else the nearest family's (with a warning). */
function fallbackFor(arch: string, profiles: BoardProfile[], warnings: string[]): BoardProfile {
  const generics = profiles.filter((p) => !p.match);
  const own = generics.find((p) => p.arch === arch);
  if (own) return own;
  const family = arch.startsWith('arm') || arch.startsWith('aarch') ? 'aarch64' : 'x86_64';
  const nearest = generics.find((p) => p.arch === family) ?? generics[0];
  if (!nearest) throw new Error('no fallback profile');
  warnings.push(`no profile is made for ${arch}: using ${nearest.id}'s thread and memory rules`);
  return nearest;
}

/** The kernel path the cpuinfo features promise (the engine's own choice is made at run time). */
function kernelPathFromFeatures(arch: string, features: string[]): KernelPath {
  const has = (...names: string[]) => names.every((n) => features.includes(n));
  if (arch === 'x86_64') {
    if (has('avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni')) return has('avx512vbmi') ? 'avx512vbmi' : 'avx512';
    return has('avx2', 'fma', 'f16c') ? 'avx2' : 'scalar';
  }
  if (has('i8mm', 'asimddp')) return 'i8mm';
  if (has('asimddp')) return 'dotprod';
  return has('asimd') || has('neon') ? 'neon' : 'scalar';
}

/**
 * The RAM variant: the smallest whose RAM is at least what Linux sees, when Linux sees at least
 * three quarters of it (the rest goes to firmware, the GPU and the kernel); otherwise the largest
 * the machine has room for (a virtual machine with 24 GB gets the 16 GB variant).
 */
function chooseVariant(profile: BoardProfile, memMiB: number | undefined, warnings: string[]): { variant: RamVariant; why: string } {
  const variants = profile.variants;
  if (memMiB === undefined) {
    warnings.push(`MemTotal unreadable: assuming the smallest ${profile.id} variant (${ramLabel(variants[0]!.ram_mb)})`);
    return { variant: variants[0]!, why: 'RAM unknown' };
  }
  const seen = memMiB >= 1024 ? `${(memMiB / 1024).toFixed(1)} GiB` : `${Math.round(memMiB)} MiB`;
  const fits = variants.find((v) => v.ram_mb >= memMiB && memMiB >= v.ram_mb * 0.75);
  if (fits) return { variant: fits, why: `MemTotal ${seen}: the ${ramLabel(fits.ram_mb)} variant` };
  const below = [...variants].reverse().find((v) => v.ram_mb <= memMiB);
  if (!below) {
    warnings.push(`MemTotal ${seen} is less than ${profile.id}'s smallest variant (${ramLabel(variants[0]!.ram_mb)}) expects`);
    return { variant: variants[0]!, why: `MemTotal ${seen}: the smallest variant` };
  }
  // A fallback profile meets every RAM size; a board that fits none of its variants is odd.
  if (profile.match) {
    const odd = memMiB > variants[variants.length - 1]!.ram_mb ? `more than ${profile.id} is made with` : 'is memory reserved elsewhere (GPU split, mem=)?';
    warnings.push(`MemTotal ${seen} fits no ${profile.id} variant (${odd}): using ${ramLabel(below.ram_mb)}`);
  }
  return { variant: below, why: `MemTotal ${seen}: the ${ramLabel(below.ram_mb)} variant` };
}

/** Threads and their CPUs: one per core of the fastest kind (ARM), or per physical core (x86). */
function placeThreads(profile: BoardProfile, variant: RamVariant, facts: SystemFacts, warnings: string[]): { threads: number; cpus: number[]; pinned: boolean } {
  const cores = facts.cores;
  const ranks = cores.map((c) => (c.implementer === ARM_LTD && c.part !== undefined ? ARM_PARTS[c.part]?.rank : undefined));
  let fastest: number[] | undefined;
  if (cores.length && ranks.every((r) => r !== undefined)) {
    const top = Math.max(...(ranks as number[]));
    fastest = cores.filter((_, i) => ranks[i] === top).map((c) => c.index);
  } else if (cores.length && cores.every((c) => c.physicalCore !== undefined)) {
    const firstThread = new Map<string, number>();
    for (const c of cores) if (!firstThread.has(c.physicalCore!)) firstThread.set(c.physicalCore!, c.index);
    fastest = [...firstThread.values()];
  } else if (cores.length) {
    const unknown = cores.find((c, i) => c.part !== undefined && ranks[i] === undefined);
    if (unknown) warnings.push(`${coreName(unknown.implementer, unknown.part)} is not in the table of ARM cores: threads on every CPU`);
    fastest = cores.map((c) => c.index);
  }
  const planned = variant.cpus ?? profile.cpu.cpus;
  if (planned && fastest && (planned.length !== fastest.length || planned.some((c, i) => c !== fastest[i]))) {
    warnings.push(`the fastest cores here are CPUs ${fastest.join(',')}, not ${planned.join(',')} as ${profile.id} has them`);
  }
  // Where cpuinfo says nothing, the CPUs this process may use are all there is to go by.
  if (!cores.length) warnings.push('/proc/cpuinfo unreadable: threads from the CPUs this process may use');
  const own = Array.from({ length: os.availableParallelism() }, (_, i) => i);
  const available = fastest ?? planned ?? own;
  const setting = variant.threads ?? profile.cpu.threads;
  const wanted = setting === 'auto' ? Math.min(profile.cpu.max_threads!, available.length) : setting;
  const online = facts.sysroot === '/' ? own.length : available.length;
  const threads = Math.max(1, Math.min(wanted, available.length, online));
  if (threads < wanted) warnings.push(`${profile.id} runs ${wanted} threads; this machine offers ${threads}`);
  return { threads, cpus: available, pinned: planned !== undefined };
}

function cpuZone(profile: BoardProfile, facts: SystemFacts, warnings: string[]): ThermalReading | undefined {
  const readable = facts.thermal.filter((z) => z.celsius !== undefined);
  for (const type of profile.thermal.zones) {
    const zone = readable.find((z) => z.type === type);
    if (zone) return zone;
  }
  if (profile.thermal.zones.length && readable.length) warnings.push(`no thermal zone of type ${profile.thermal.zones.join(' or ')}: the CPU's temperature is a guess`);
  return readable.find((z) => /cpu/i.test(z.type)) ?? readable[0];
}

/** Where the facts contradict the profile: another architecture, other cores, other features. */
function contradictions(profile: BoardProfile, facts: SystemFacts, warnings: string[]): void {
  if (facts.arch !== profile.arch) {
    const bits = /^(armv[67]|i[3-6]86)/.test(facts.arch) ? ': a 32-bit userland cannot map large models; install a 64-bit OS' : '';
    warnings.push(`this system runs ${facts.arch} (${facts.archSource}); ${profile.id} is for ${profile.arch}${bits}`);
  }
  const expected = profile.match?.cpu;
  const found = kindsOf(facts.cores);
  if (expected && found.size && !sameKinds(found, profileKinds(expected), false)) {
    const wanted = expected.map((k) => `${k.count}x ${coreName(Number(k.implementer), Number(k.part))}`).join(' + ');
    warnings.push(`the CPU is ${describeCores(facts.cores)}, not the ${wanted} of ${profile.id}`);
  }
  const promised = profile.cpu.kernel_path;
  if (promised && facts.features.length) {
    const featured = kernelPathFromFeatures(profile.arch, facts.features);
    if (featured !== promised) warnings.push(`the cpuinfo features give the ${featured} kernel path, not ${promised} as ${profile.id} expects`);
  }
}

/** The profile for the machine under `sysroot` (or the one named), with the reason and what does not fit. */
export function chooseProfile(options: ChooseOptions = {}): ProfileChoice {
  const sysroot = options.sysroot ?? '/';
  const profiles = options.profiles ?? loadProfiles();
  const facts = readSystemFacts(sysroot);
  const warnings: string[] = [];
  let profile: BoardProfile;
  let why: string;
  if (options.id !== undefined) {
    profile = profileById(options.id, profiles);
    why = `profile.id is ${profile.id} (set, not detected)`;
  } else {
    const found = profiles
      .map((p) => ({ p, e: evidence(p, facts) }))
      .filter((c): c is { p: BoardProfile; e: { strength: number; what: string } } => c.e !== undefined)
      .sort((a, b) => b.e.strength - a.e.strength);
    const best = found[0];
    if (best) {
      const rivals = found.filter((c) => c !== best && c.e.strength === best.e.strength).map((c) => c.p.id);
      if (rivals.length) warnings.push(`${best.e.what} also matches ${rivals.join(', ')}: using ${best.p.id}`);
      profile = best.p;
      why = `${best.e.what} matches ${profile.id}`;
    } else if (facts.arch === 'x86_64' && !facts.deviceTreeModel) {
      // PCs are told apart by their architecture alone: there is one x86-64 profile.
      profile = fallbackFor(facts.arch, profiles, warnings);
      why = `an x86_64 machine (${facts.archSource}): ${profile.id}`;
    } else {
      profile = fallbackFor(facts.arch, profiles, warnings);
      why = `no board profile matches (${describeBoard(facts)}): the ${facts.arch} fallback ${profile.id}`;
      warnings.push(`no profile for this board (${describeBoard(facts)}): ${profile.id}'s generic limits apply; --profile ID names another`);
    }
  }
  contradictions(profile, facts, warnings);
  const memMiB = facts.memTotalKiB !== undefined ? facts.memTotalKiB / 1024 : sysroot === '/' ? os.totalmem() / 2 ** 20 : undefined;
  const { variant, why: ramWhy } = chooseVariant(profile, memMiB, warnings);
  const { threads, cpus, pinned } = placeThreads(profile, variant, facts, warnings);
  const choice: ProfileChoice = {
    profile,
    variant,
    reason: `${why}; ${ramWhy}`,
    warnings,
    facts,
    threads,
    cpus,
    pinned,
    kernelPath: profile.cpu.kernel_path ?? kernelPathFromFeatures(facts.arch, facts.features),
  };
  const zone = cpuZone(profile, facts, warnings);
  if (zone) choice.cpuZone = zone;
  return choice;
}
