// The rooms of src/ and the one direction data flows between them (ARCHITECTURE.md): a module
// imports only from its own room or a lower one, so the engine never depends on the daemon, and
// the daemon's core never on the extensions that plug into it.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/fixtures.js';

const SRC = path.join(REPO_ROOT, 'src');

/** Lower ranks are lower rooms. Top-level files are rooms of their own. */
const RANK: Record<string, number> = {
  'native.ts': 0,
  'errors.ts': 0,
  'version.ts': 0,
  'bundled.ts': 0,
  'prebuilds.ts': 0,
  gguf: 1,
  pack: 1,
  engine: 2,
  bench: 3,
  cache: 3,
  protocol: 3,
  profiles: 3,
  train: 3,
  client: 4,
  daemon: 5,
  cli: 6,
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

/** Relative imports of a file (static, re-exports and dynamic), as repo paths relative to src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((spec) => path.relative(SRC, path.resolve(path.dirname(file), spec)));
}

const roomOf = (relative: string) => relative.split(path.sep)[0]!;
const files = sources(SRC).map((f) => ({ file: path.relative(SRC, f), imports: importsOf(f) }));

describe('architecture', () => {
  it('knows the room of every file in src/', () => {
    expect(files.length).toBeGreaterThan(40);
    for (const { file } of files) expect(RANK[roomOf(file)], file).toBeDefined();
  });

  it('imports only from the same room or a lower one', () => {
    const upward = files.flatMap(({ file, imports }) =>
      imports.filter((target) => RANK[roomOf(target)]! > RANK[roomOf(file)]!).map((target) => `${file} -> ${target}`),
    );
    expect(upward).toEqual([]);
  });

  it('keeps the daemon core free of its extensions (only the controller wires them in)', () => {
    const core = files.filter(({ file }) => file.startsWith(`daemon${path.sep}`) && !file.includes(`${path.sep}extensions${path.sep}`));
    const wired = core.flatMap(({ file, imports }) =>
      imports.filter((target) => target.includes(`${path.sep}extensions${path.sep}`) && !file.endsWith('controller.ts')).map((t) => `${file} -> ${t}`),
    );
    expect(wired).toEqual([]);
  });
});
