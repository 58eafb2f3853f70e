// CPU lists as systemd's CPUAffinity= and taskset write them ("0-3", "4-7", "0,2,5"): how the
// configuration (model.cpus), `bonsai profile` and the service unit name the CPUs the daemon's
// threads run on.

/** CPU numbers are below this (the kernel's CPU sets, firmware-profiles/schema.json). */
const MAX_CPUS = 4096;

/** Ascending runs joined: [4, 5, 6, 7] is "4-7", [0, 2, 5] is "0,2,5". */
export function formatCpuList(cpus: number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const runs: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    runs.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return runs.join(',');
}

/** The CPUs of a list such as "4-7" or "0,2,5", ascending and each once; undefined when it is not such a list. */
export function parseCpuList(text: string): number[] | undefined {
  const cpus = new Set<number>();
  for (const part of text.split(',')) {
    const run = /^\s*(\d{1,4})(?:-(\d{1,4}))?\s*$/.exec(part);
    if (!run) return undefined;
    const first = Number(run[1]);
    const last = run[2] === undefined ? first : Number(run[2]);
    if (last < first || last >= MAX_CPUS) return undefined;
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}
