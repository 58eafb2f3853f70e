// Where the benchmark peer (node-llama-cpp) is installed, if anywhere: a normal dependency
// resolution first, then .peer/ in the checkout (scripts/install-peer.sh puts it there).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const checkout = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bases = [import.meta.url, path.join(checkout, '.peer', 'package.json')];

/** A file URL to import node-llama-cpp from, or undefined when it is not installed. */
export function peerModuleUrl(): string | undefined {
  for (const base of bases) {
    try {
      return pathToFileURL(createRequire(base).resolve('node-llama-cpp')).href;
    } catch {
      // not installed there
    }
  }
  return undefined;
}
