// The retained health message: enough to see from anywhere on the network whether a board is
// alive, loaded, keeping up, and (on boards that expose it) getting hot enough to throttle. It is
// published every health.intervalSec, with the fields other extensions add (health()).
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import type { Extension, ExtensionContext } from './extension.js';

/** The fields of the machine and the queue; the request counters and other extensions add theirs. */
export interface SystemHealth {
  uptime_s: number;
  rss_bytes: number;
  load: number[];
  queue_depth: number;
  /** Generations running now (up to queue.parallel). */
  running: number;
  cpu_temp_c?: number;
  ts: string;
}

const THERMAL_DIR = '/sys/class/thermal';

export function systemHealth(startedAt: number, queue: { depth: number; active: number }, thermalDir = THERMAL_DIR): SystemHealth {
  const health: SystemHealth = {
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
    rss_bytes: process.memoryUsage.rss(),
    load: os.loadavg().map((l) => Math.round(l * 100) / 100),
    queue_depth: queue.depth,
    running: queue.active,
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

export function healthExtension(ctx: ExtensionContext): Extension {
  let served = 0;
  let failed = 0;
  let lastTokensPerS: number | null = null;
  let timer: NodeJS.Timeout | undefined;
  const publish = () => {
    const health = { ...systemHealth(ctx.startedAt, { depth: ctx.pipeline.depth, active: ctx.pipeline.active }), ...ctx.health() };
    ctx.mqtt.publish(ctx.topics.health, JSON.stringify(health), { qos: 0, retain: true });
  };
  return {
    name: 'health',
    start() {
      ctx.pipeline.on('finished', (_job, _reply, result) => {
        served++;
        // A recalled answer says nothing about generation speed.
        if (result) lastTokensPerS = result.timings.genTokensPerS;
      });
      ctx.pipeline.on('failed', () => void failed++);
    },
    online() {
      publish();
      clearInterval(timer);
      timer = setInterval(publish, ctx.config.health.intervalSec * 1000);
      timer.unref();
    },
    health: () => ({ served, failed, last_tokens_per_s: lastTokensPerS === null ? null : Math.round(lastTokensPerS * 10) / 10 }),
    stop() {
      clearInterval(timer);
    },
  };
}
