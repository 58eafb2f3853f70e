// npm's install step for the addon: the prebuilt binary for this platform when the package has one
// that fits this system (its architecture, and a glibc at least as new as it needs), else a build
// from the C sources with cmake-js (needs cmake and a C/C++ compiler). In a checkout there are no
// prebuilds: it always builds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'bonsai.node');
if (existsSync(prebuilt) && existsSync(path.join(root, 'dist', 'prebuilds.js'))) {
  const { unfit } = await import('../dist/prebuilds.js');
  const why = unfit(prebuilt);
  if (!why) {
    console.log(`bonsai-edge: using the prebuilt addon ${path.relative(root, prebuilt)}`);
    process.exit(0);
  }
  console.log(`bonsai-edge: the prebuilt addon ${path.relative(root, prebuilt)} ${why}: building it from source`);
}
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const tests = existsSync(path.join(root, 'native', 'tests')) ? [] : ['--CDBONSAI_TESTS=OFF'];
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', 'native', '--out', 'build', ...tests], { cwd: root, stdio: 'inherit' });
process.exit(build.status ?? 1);
