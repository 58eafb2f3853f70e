// Choosing a compiled binary (src/prebuilds.ts): the glibc a binary needs, read as binutils'
// readelf reads it; a binary of another architecture or for a newer glibc passed over with the
// reason named; a build of this machine before the packaged prebuild.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addonPath } from '../src/native.js';
import { PACKAGE_ROOT, PREBUILD_DIR, chooseBinary, glibcNeeded, glibcRuntime, unfit } from '../src/prebuilds.js';

// the binaries this process loads: its own builds, or (in the arm64 container) the prebuilt ones
const ADDON = addonPath;
const SQLITE = [path.join(path.dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node'), path.join(PREBUILD_DIR, 'better_sqlite3.node')].find((f) => existsSync(f))!;
const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-prebuilds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function hasReadelf(): boolean {
  try {
    execFileSync('readelf', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The newest GLIBC_x.y among a binary's version needs, as readelf lists them. */
function readelfGlibc(file: string): string {
  const out = execFileSync('readelf', ['--version-info', '--wide', file], { encoding: 'utf8' });
  const versions = [...out.matchAll(/Name: GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return versions.at(-1)!.join('.');
}

/** A 64-bit little-endian ELF header for `machine`, followed by `tail`. */
function elf(file: string, machine: number, tail = ''): string {
  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2;
  header[5] = 1;
  header.writeUInt16LE(machine, 18);
  writeFileSync(file, Buffer.concat([header, Buffer.from(tail, 'latin1')]));
  return file;
}
const THIS_MACHINE = process.arch === 'arm64' ? 183 : 62;
const OTHER_MACHINE = process.arch === 'arm64' ? 62 : 183;

describe('prebuilt binaries', () => {
  it.skipIf(!hasReadelf())('reads the glibc a binary needs as readelf does (the addon and better-sqlite3)', () => {
    for (const file of [ADDON, SQLITE]) expect(glibcNeeded(file)!.join('.'), file).toBe(readelfGlibc(file));
  });

  it("accepts the binaries this process loads and knows this system's glibc", () => {
    const runtime = glibcRuntime();
    expect(runtime, 'a glibc system').toBeDefined();
    expect(execFileSync('ldd', ['--version'], { encoding: 'utf8' })).toContain(`${runtime![0]}.${runtime![1]}`);
    expect(unfit(ADDON)).toBeUndefined();
    expect(unfit(SQLITE)).toBeUndefined();
  });

  it('names the versions when the system glibc is older than the binary needs', () => {
    const needed = glibcNeeded(ADDON)!;
    expect(unfit(ADDON, [needed[0], needed[1] - 1])).toBe(`needs glibc ${needed.join('.')} or newer; this system has glibc ${needed[0]}.${needed[1] - 1}`);
    expect(unfit(ADDON, needed)).toBeUndefined();
    expect(unfit(ADDON, [needed[0] + 1, 0])).toBeUndefined();
    expect(unfit(elf(path.join(dir, 'new.node'), THIS_MACHINE, 'GLIBC_2.17\0GLIBC_2.99\0GLIBC_2.4\0'))).toMatch(/^needs glibc 2\.99 or newer; this system has glibc \d+\.\d+$/);
  });

  it('passes over a binary of another architecture and a file that is not ELF', () => {
    expect(unfit(elf(path.join(dir, 'other.node'), OTHER_MACHINE))).toMatch(/^built for another architecture \(ELF machine \d+\), this is /);
    writeFileSync(path.join(dir, 'text.node'), 'not a binary at all');
    expect(unfit(path.join(dir, 'text.node'))).toBe('not an ELF file');
  });

  it('takes the first candidate that fits, and otherwise says why each does not and how to build', () => {
    const own = path.join(dir, 'own.node'), prebuilt = path.join(dir, 'prebuilt.node'), foreign = path.join(dir, 'foreign.node');
    copyFileSync(ADDON, own);
    copyFileSync(ADDON, prebuilt);
    elf(foreign, OTHER_MACHINE);
    expect(chooseBinary('x', [path.join(dir, 'missing.node'), own, prebuilt], 'rebuild')).toBe(own);
    expect(chooseBinary('x', [foreign, prebuilt], 'rebuild')).toBe(prebuilt);
    expect(() => chooseBinary('the addon', [foreign, path.join(dir, 'missing.node')], 'npm rebuild it')).toThrow(
      new RegExp(`^cannot load the addon on ${process.platform}-${process.arch}: .*foreign\\.node: built for another architecture .*\\. Build it from source: npm rebuild it$`),
    );
    expect(() => chooseBinary('the addon', [path.join(dir, 'missing.node')], 'npm rebuild it')).toThrow(/none of .*missing\.node exists/);
  });

  it('a package whose addon cannot load says why in one line and exits 1, with no stack trace', () => {
    // a copy of the built package with its dependencies but no build and no prebuild
    const pkg = path.join(dir, 'package');
    mkdirSync(pkg);
    cpSync(path.join(PACKAGE_ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(pkg, 'package.json'));
    symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    const r = spawnSync(process.execPath, [path.join(pkg, 'dist', 'cli', 'main.js'), 'run', '-p', 'x'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^bonsai: cannot load the bonsai-edge addon \(bonsai\.node\) on \S+: none of build\/Release\/bonsai\.node, prebuilds\/\S+\/bonsai\.node exists\. Build it from source: .*\n$/);
  });
});
