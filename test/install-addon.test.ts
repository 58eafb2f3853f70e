// npm's install step (scripts/install-addon.mjs) in a copy of the package as npm unpacks it (no
// native tests, a prebuild for this platform): a prebuild that fits is taken as it is; one that
// does not fit (here: built for another architecture) is passed over with the reason named, and
// the addon is built from the C sources, after which the package runs a prompt as the checkout's
// own build does. Not in the arm64 container's list: a build under emulation takes too long.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { addonPath } from '../src/native.js';
import { PACKAGE_ROOT } from '../src/prebuilds.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bonsai-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const platform = `${process.platform}-${process.arch}`;
const OTHER_MACHINE = process.arch === 'arm64' ? 62 : 183;

/** The package as `npm pack` lays it out, with `prebuilt` as this platform's prebuilt addon. */
function unpackedPackage(name: string, prebuilt: (file: string) => void): string {
  const pkg = path.join(dir, name);
  for (const folder of ['dist', 'native', 'models']) {
    cpSync(path.join(PACKAGE_ROOT, folder), path.join(pkg, folder), { recursive: true, filter: (src) => !src.startsWith(path.join(PACKAGE_ROOT, 'native', 'tests')) });
  }
  mkdirSync(path.join(pkg, 'scripts'));
  copyFileSync(path.join(PACKAGE_ROOT, 'scripts', 'install-addon.mjs'), path.join(pkg, 'scripts', 'install-addon.mjs'));
  copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(pkg, 'package.json'));
  symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  mkdirSync(path.join(pkg, 'prebuilds', platform), { recursive: true });
  prebuilt(path.join(pkg, 'prebuilds', platform, 'bonsai.node'));
  return pkg;
}

function install(pkg: string) {
  return spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install-addon.mjs')], { cwd: pkg, encoding: 'utf8', timeout: 900_000 });
}

function story(main: string): string {
  const r = spawnSync(process.execPath, [main, 'run', '-m', BUNDLED_MODEL, '-p', 'Once upon a time', '-n', '16', '--temp', '0', '--no-cache'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).not.toMatch(/cannot load/);
  expect(r.status).toBe(0);
  return r.stdout;
}

describe('npm install step of the package', () => {
  it('takes a prebuilt addon that fits this system, building nothing', () => {
    const pkg = unpackedPackage('fits', (file) => copyFileSync(addonPath, file));
    const r = install(pkg);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`bonsai-edge: using the prebuilt addon prebuilds/${platform}/bonsai.node\n`);
    expect(existsSync(path.join(pkg, 'build'))).toBe(false);
    expect(story(path.join(pkg, 'dist', 'cli', 'main.js'))).toBe(story(path.join(PACKAGE_ROOT, 'dist', 'cli', 'main.js')));
  });

  it('builds from source when the prebuilt addon is for another architecture, and the build runs the model', () => {
    const pkg = unpackedPackage('unfit', (file) => {
      const header = Buffer.alloc(64);
      header.writeUInt32BE(0x7f454c46, 0);
      header[4] = 2;
      header[5] = 1;
      header.writeUInt16LE(OTHER_MACHINE, 18);
      writeFileSync(file, header);
    });
    const r = install(pkg);
    expect(r.stdout).toContain(`bonsai-edge: the prebuilt addon prebuilds/${platform}/bonsai.node built for another architecture (ELF machine ${OTHER_MACHINE}), this is ${process.arch}: building it from source\n`);
    expect(r.status).toBe(0);
    expect(existsSync(path.join(pkg, 'build', 'Release', 'bonsai.node'))).toBe(true);
    expect(existsSync(path.join(pkg, 'build', 'tests'))).toBe(false);
    expect(story(path.join(pkg, 'dist', 'cli', 'main.js'))).toBe(story(path.join(PACKAGE_ROOT, 'dist', 'cli', 'main.js')));
  }, 900_000);
});
