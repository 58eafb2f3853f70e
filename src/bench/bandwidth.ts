// The memory read bandwidth that `bonsai bench` and `bonsai bench kernels` set their figures
// against: the native probe (native/tools/), read more than once in a run, and a warning when its
// readings disagree (a shared host whose neighbours come and go moves it mid-run).
import { native } from '../native.js';

export interface Bandwidth {
  threads: number;
  gbps: number;
}

/** The probe's buffer: far larger than any cache. */
export const BANDWIDTH_BYTES = 512 * 2 ** 20;
const BANDWIDTH_REPS = 5;
/** How far a thread count's readings may spread before the ratios to them are called unreliable. */
const BANDWIDTH_DRIFT = 0.15;

/** The best of a few reads with each thread count; onThreads(t) before each. */
export function probeBandwidth(threads: number[], bytes = BANDWIDTH_BYTES, onThreads?: (threads: number) => void): Bandwidth[] {
  return threads.map((t) => {
    onThreads?.(t);
    return { threads: t, gbps: native.memoryBandwidth(bytes, t, BANDWIDTH_REPS).bestGBps };
  });
}

/** The best reading of each thread count, in the order they first appear. */
export function bestBandwidth(readings: Bandwidth[]): Bandwidth[] {
  const best = new Map<number, number>();
  for (const r of readings) best.set(r.threads, Math.max(best.get(r.threads) ?? 0, r.gbps));
  return [...best].map(([threads, gbps]) => ({ threads, gbps }));
}

/**
 * A warning when the readings of some thread count spread by more than BANDWIDTH_DRIFT: the
 * roofline (the best reading) then held for part of the run only.
 */
export function bandwidthDrift(readings: Bandwidth[]): string | null {
  const moved = bestBandwidth(readings).flatMap(({ threads, gbps: max }) => {
    const min = Math.min(...readings.filter((r) => r.threads === threads).map((r) => r.gbps));
    return max > (1 + BANDWIDTH_DRIFT) * min ? [`${min.toFixed(1)}-${max.toFixed(1)} GB/s with ${threads} thread${threads > 1 ? 's' : ''}`] : [];
  });
  if (moved.length === 0) return null;
  return `the memory read bandwidth moved during the run (${moved.join(', ')}): the figures are set against the best reading, and their ratios to it are unreliable on a machine this busy`;
}
