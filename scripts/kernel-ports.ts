// The Q1_0 lookup kernels against the execution ports of x86 cores this machine is not: llvm-mca
// (LLVM's machine-code analyser, with its scheduling model of each core) runs the loop that does
// one token's lookups for one tile of rows and one 128-column block, exactly as compiled into
// build/Release/bonsai.node, and reports its cycles per 128-weight row block and the busiest ports.
// It answers "is the instruction mix slower on that core?" without the core: where a machine
// measures many more cycles than its model, the difference is the machine's (shared cores,
// clocks, memory), not the code's. Then it times the same loop on this machine, weights in cache.
//
//   npx vite-node scripts/kernel-ports.ts [-- --cpus znver3,skylake-avx512,icelake-server]
//
// skylake is the client core of Skylake to Comet Lake (AVX2), skylake-avx512 the server one (also
// Cascade Lake's model); llvm-mca 14 (Debian 12) has no models of its own for newer cores and
// falls back to these. Needs objdump (binutils) and llvm-mca (Debian: apt install llvm). Prints
// Markdown.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { native } from '../src/native.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addon = path.join(repoRoot, 'build/Release/bonsai.node');
const { values: args } = parseArgs({
  options: { cpus: { type: 'string', default: 'znver2,znver3,skylake,skylake-avx512,icelake-server' } },
});
const models = args.cpus.split(',');
const ITERATIONS = 200;

/** The kernels: where their loops live, how many rows one pass of the loop covers, and the instruction that looks up. */
const KERNELS = [
  { path: 'avx2', rows: 32, functions: ['bn_gemm_q1_0_q8_0_avx2'], lookup: 'vpshufb' },
  { path: 'avx512', rows: 64, functions: ['q1_rows_chunk64_shufb', 'bn_gemm_q1_0_q8_0_avx512'], lookup: 'vpshufb' },
  { path: 'avx512vbmi', rows: 64, functions: ['q1_rows_chunk64_vbmi', 'bn_gemm_q1_0_q8_0_avx512vbmi'], lookup: 'vpermb' },
];
/** One token's pass over a tile and a block: 32 groups of 4 weights, each looked up twice (low and high parts). */
const LOOKUPS_PER_PASS = 64;

interface Instruction {
  address: number;
  text: string;
}

if (!existsSync(addon)) throw new Error(`${addon} is missing: build it first (npx cmake-js compile --directory native --out build)`);
const functions = disassemble(addon);
const work = mkdtempSync(path.join(tmpdir(), 'kernel-ports-'));
try {
  const loops = KERNELS.map((k) => ({ ...k, file: writeLoop(k.path, findLoop(k.functions, k.lookup)) }));
  console.log(`# Q1_0 lookup kernels: llvm-mca's port models (one token, ${ITERATIONS} iterations)\n`);
  console.log('cycles per 128-weight row block (a pass of the loop over a tile of rows and one block, divided by its rows), and the busiest ports\n');
  console.log(`| core model | ${loops.map((l) => `${l.path} (${l.rows} rows a pass)`).join(' | ')} |`);
  console.log(`|---|${loops.map(() => '---').join('|')}|`);
  for (const cpu of models) {
    const cells = loops.map((l) => {
      const r = analyse(l.file, cpu);
      return r ? `${(r.cycles / l.rows).toFixed(2)} (${r.busiest})` : `no ${l.path}`;
    });
    console.log(`| ${cpu} | ${cells.join(' | ')} |`);
  }
  const supported = native.kernelPaths().supported;
  const here = KERNELS.filter((k) => supported.includes(k.path)).map((k) => {
    const r = native.kernelBench({ type: 'q1_0', rows: 8192, cols: 2048, batch: 1, path: k.path, threads: 1, minMs: 500, streamBytes: 0 });
    return `${k.path} ${r.nsPerBlock.toFixed(3)} ns`;
  });
  console.log(`\nthis machine (${cpus()[0]?.model ?? 'unknown CPU'}), 8192 x 2048 GEMV with its weights in cache, 1 thread, per row block: ${here.join(', ')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** Every function of the file: its instructions in address order. */
function disassemble(file: string): Map<string, Instruction[]> {
  const text = execFileSync('objdump', ['-d', '--no-show-raw-insn', file], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  const out = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+ <([^>]+)>:$/.exec(line);
    if (head) out.set(head[1]!, (current = []));
    const ins = /^\s+([0-9a-f]+):\s+(.+)$/.exec(line);
    if (ins && current) current.push({ address: parseInt(ins[1]!, 16), text: ins[2]!.replace(/\s+#.*$/, '').replace(/<[^>]*>/g, '').trim() });
  }
  return out;
}

/** The shortest loop (a backward jump and what it jumps over) that does one token's lookups. */
function findLoop(names: string[], lookup: string): Instruction[] {
  for (const name of names) {
    const body = functions.get(name);
    if (!body) continue;
    const index = new Map(body.map((ins, i) => [ins.address, i]));
    let best: Instruction[] | undefined;
    body.forEach((ins, i) => {
      const target = /^j\w+\s+([0-9a-f]+)/.exec(ins.text);
      const start = target ? index.get(parseInt(target[1]!, 16)) : undefined;
      if (start === undefined || start >= i) return;
      const loop = body.slice(start, i + 1);
      if (loop.filter((x) => x.text.startsWith(`${lookup} `)).length !== LOOKUPS_PER_PASS) return;
      if (!best || loop.length < best.length) best = loop;
    });
    if (best) return best;
  }
  throw new Error(`no loop with ${LOOKUPS_PER_PASS} ${lookup} in ${names.join(' or ')}: the compiler laid the kernel out differently`);
}

/** The loop as llvm-mca input: its instructions without the jumps (the analyser repeats the block itself). */
function writeLoop(name: string, loop: Instruction[]): string {
  const file = path.join(work, `${name}.s`);
  writeFileSync(file, `${loop.filter((x) => !/^j\w+\s/.test(x.text)).map((x) => x.text).join('\n')}\n`);
  return file;
}

/** Cycles per pass of the loop on one core model and its two busiest resources with their cycles
 * per pass; undefined where the core lacks the loop's instructions. */
function analyse(file: string, cpu: string): { cycles: number; busiest: string } | undefined {
  const run = spawnSync('llvm-mca', [`-mcpu=${cpu}`, `-iterations=${ITERATIONS}`, file], { encoding: 'utf8' });
  if (run.error) throw new Error(`llvm-mca: ${run.error.message} (Debian: apt install llvm)`);
  if (run.status !== 0) {
    if (run.stderr.includes('unsupported instruction')) return undefined;
    throw new Error(`llvm-mca -mcpu=${cpu}: ${run.stderr.trim()}`);
  }
  const report = run.stdout;
  const total = /Total Cycles:\s+(\d+)/.exec(report);
  if (!total) throw new Error(`llvm-mca printed no cycle count for ${cpu}`);
  const lines = report.split('\n');
  const names: string[] = [];
  for (let i = lines.indexOf('Resources:') + 1; i > 0 && /^\[/.test(lines[i] ?? ''); i++) names.push(lines[i]!.replace(/^\[[\d.]+\]\s+-\s+/, ''));
  const at = lines.indexOf('Resource pressure per iteration:');
  const pressure = (lines[at + 2] ?? '').trim().split(/\s+/).map((v) => (v === '-' ? 0 : Number(v)));
  const busiest = pressure
    .map((p, i) => ({ p, name: names[i] ?? `#${i}` }))
    .sort((a, b) => b.p - a.p)
    .slice(0, 2)
    .map((x) => `${x.name} ${x.p.toFixed(0)}`)
    .join(', ');
  return { cycles: Number(total[1]) / ITERATIONS, busiest };
}
