// Small file systems for fault tests: a tmpfs of a given size (a disk that fills up) or mounted
// read-only (a directory nothing can be written to, even by root). Needs root and a kernel that
// lets it mount; returns undefined where it cannot, so the test can say it was skipped.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

export interface Mount {
  dir: string;
  unmount(): void;
}

export function mountTmpfs(dir: string, options: { sizeBytes?: number; readOnly?: boolean } = {}): Mount | undefined {
  mkdirSync(dir, { recursive: true });
  const opts = [`size=${options.sizeBytes ?? 1 << 20}`, ...(options.readOnly ? ['ro'] : [])].join(',');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return { dir, unmount: () => execFileSync('umount', [dir], { stdio: 'ignore' }) };
}
