// Which compiled binary (.node) to load: a build made on this machine when there is one, else the
// one prebuilt for this platform that ships in the package (prebuilds/<platform>-<arch>/), so a
// board without a compiler or internet runs the npm tarball as it is. A candidate counts only if
// its ELF machine is this process's architecture and the glibc it was linked against is not newer
// than this system's: a board that is too old gets a sentence naming both versions, not the
// loader's "version `GLIBC_2.xx' not found".
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PREBUILD_DIR = path.join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`);

/** e_machine of the ELF header, per Node architecture. */
const ELF_MACHINE: Partial<Record<NodeJS.Architecture, number>> = { x64: 62, arm64: 183, arm: 40, ia32: 3, riscv64: 243 };

/** A glibc version as [major, minor]. */
type Version = [number, number];
const show = (v: Version) => v.join('.');
const older = (a: Version, b: Version) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** The ELF machine of a file, or undefined for a file that is not ELF. */
function elfMachine(file: string): number | undefined {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    if (readSync(fd, header, 0, 20, 0) < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  } finally {
    closeSync(fd);
  }
}

/** The newest GLIBC_x.y symbol version a binary asks for (none for a binary that needs no glibc). */
export function glibcNeeded(file: string): Version | undefined {
  let newest: Version | undefined;
  for (const m of readFileSync(file).toString('latin1').matchAll(/GLIBC_(\d+)\.(\d+)/g)) {
    const v: Version = [Number(m[1]), Number(m[2])];
    if (!newest || older(newest, v)) newest = v;
  }
  return newest;
}

/** This system's glibc, undefined where there is none (musl) or the platform is not Linux. */
export function glibcRuntime(): Version | undefined {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const m = /^(\d+)\.(\d+)/.exec(header?.glibcVersionRuntime ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Why `file` cannot be loaded here, or undefined when it can. */
export function unfit(file: string, runtime = glibcRuntime()): string | undefined {
  const machine = elfMachine(file);
  if (machine === undefined) return process.platform === 'linux' ? 'not an ELF file' : undefined;
  if (machine !== ELF_MACHINE[process.arch]) return `built for another architecture (ELF machine ${machine}), this is ${process.arch}`;
  const needed = glibcNeeded(file);
  if (!needed) return undefined;
  if (!runtime) return `needs glibc ${show(needed)}; this system has none (musl?)`;
  if (older(runtime, needed)) return `needs glibc ${show(needed)} or newer; this system has glibc ${show(runtime)}`;
  return undefined;
}

/**
 * The first of `candidates` that exists and fits this system. Throws one sentence naming each
 * candidate that was found and why it does not fit, and how to build from source.
 */
export function chooseBinary(what: string, candidates: string[], rebuild: string): string {
  const reasons: string[] = [];
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    const why = unfit(file);
    if (!why) return file;
    reasons.push(`${path.relative(PACKAGE_ROOT, file)}: ${why}`);
  }
  const found = reasons.length ? reasons.join('; ') : `none of ${candidates.map((f) => path.relative(PACKAGE_ROOT, f)).join(', ')} exists`;
  throw new Error(`cannot load ${what} on ${process.platform}-${process.arch}: ${found}. Build it from source: ${rebuild}`);
}
