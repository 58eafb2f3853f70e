// The retained health message: enough to see from anywhere on the network whether a board is
// alive, loaded, keeping up, and (on boards that expose it) getting hot enough to throttle.
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

export interface HealthCounters {
  served: number;
  failed: number;
  lastTokensPerS: number | null;
}

export interface Health {
  uptime_s: number;
  rss_bytes: number;
  load: number[];
  queue_depth: number;
  running: boolean;
  served: number;
  failed: number;
  last_tokens_per_s: number | null;
  cpu_temp_c?: number;
  ts: string;
}

const THERMAL_DIR = '/sys/class/thermal';

export function collectHealth(startedAt: number, counters: HealthCounters, queue: { depth: number; busy: boolean }, thermalDir = THERMAL_DIR): Health {
  const health: Health = {
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
    rss_bytes: process.memoryUsage.rss(),
    load: os.loadavg().map((l) => Math.round(l * 100) / 100),
    queue_depth: queue.depth,
    running: queue.busy,
    served: counters.served,
    failed: counters.failed,
    last_tokens_per_s: counters.lastTokensPerS === null ? null : Math.round(counters.lastTokensPerS * 10) / 10,
    ts: new Date().toISOString(),
  };
  const temp = cpuTemperature(thermalDir);
  if (temp !== undefined) health.cpu_temp_c = temp;
  return health;
}

/**
 * The CPU's thermal zone in °C. Raspberry Pi and Jetson kernels name it "cpu-thermal" /
 * "CPU-therm"; elsewhere take the first zone, which on SoCs is the CPU. Undefined when absent.
 */
export function cpuTemperature(thermalDir = THERMAL_DIR): number | undefined {
  let zones: string[];
  try {
    zones = readdirSync(thermalDir).filter((z) => z.startsWith('thermal_zone')).sort();
  } catch {
    return undefined;
  }
  const readings = zones.flatMap((z) => {
    try {
      const type = readFileSync(`${thermalDir}/${z}/type`, 'utf8').trim();
      const milli = Number(readFileSync(`${thermalDir}/${z}/temp`, 'utf8').trim());
      return Number.isFinite(milli) ? [{ type, celsius: Math.round(milli / 100) / 10 }] : [];
    } catch {
      return [];
    }
  });
  return (readings.find((r) => /cpu/i.test(r.type)) ?? readings[0])?.celsius;
}
