// Config files outlive releases: one written for an older bonsai-edge sits on a board and must keep
// working after an update. A file names the format it was written for (`version`; a file without
// one predates versioning and is version 1), and each step below brings it one version forward.
// An environment variable of a renamed key keeps working too, with a warning.

export const CONFIG_VERSION = 2;

type Layer = Record<string, unknown>;

interface Migration {
  /** The version this step upgrades from (to from + 1). */
  from: number;
  /** Dotted keys: old name -> new name. */
  renames: Record<string, string>;
}

const MIGRATIONS: Migration[] = [
  // With parallel generations ahead, a bare "max" no longer says which limit it is.
  { from: 1, renames: { 'queue.max': 'queue.maxWaiting' } },
];

export class ConfigMigrationError extends Error {
  override name = 'ConfigMigrationError';
}

/** Brings a config file's contents to CONFIG_VERSION; returns a note per change made. */
export function migrateConfigFile(layer: Layer, file: string): { layer: Layer; notes: string[] } {
  const version = layer.version ?? 1;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new ConfigMigrationError(`config file ${file}: "version" must be an integer from 1 to ${CONFIG_VERSION}`);
  }
  if (version > CONFIG_VERSION) {
    throw new ConfigMigrationError(`config file ${file} is version ${version}, newer than this bonsai-edge reads (${CONFIG_VERSION}): update bonsai-edge`);
  }
  const out = structuredClone(layer);
  const notes: string[] = [];
  for (const step of MIGRATIONS.filter((m) => m.from >= version)) {
    for (const [from, to] of Object.entries(step.renames)) {
      if (moveKey(out, from, to, file)) notes.push(`config file ${file}: "${from}" is now "${to}" (version ${step.from} -> ${step.from + 1})`);
    }
  }
  out.version = CONFIG_VERSION;
  return { layer: out, notes };
}

/** Every key renamed by a migration: old dotted name -> current dotted name. */
export function renamedKeys(): Map<string, string> {
  const renamed = new Map<string, string>();
  for (const step of MIGRATIONS) {
    for (const [from, to] of Object.entries(step.renames)) {
      for (const [old, current] of renamed) if (current === from) renamed.set(old, to);
      renamed.set(from, to);
    }
  }
  return renamed;
}

function moveKey(layer: Layer, from: string, to: string, file: string): boolean {
  const [fromSection, fromLeaf] = from.split('.', 2) as [string, string];
  const source = layer[fromSection];
  if (!isObject(source) || !(fromLeaf in source)) return false;
  const [toSection, toLeaf] = to.split('.', 2) as [string, string];
  const target = isObject(layer[toSection]) ? (layer[toSection] as Layer) : (layer[toSection] = {});
  if (toLeaf in (target as Layer)) throw new ConfigMigrationError(`config file ${file} sets both "${from}" and its new name "${to}": keep "${to}"`);
  (target as Layer)[toLeaf] = source[fromLeaf];
  delete source[fromLeaf];
  return true;
}

function isObject(value: unknown): value is Layer {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
