// Thermal control: a board running an LLM flat out heats up (a Pi 5 or 500 reaches its 80-85 °C
// throttle point within minutes). Every thermal.intervalSec the CPU temperature is read; above
// thermal.throttleC the engine works with fewer threads, above thermal.pauseC it stops between
// tokens, and it comes back as the board cools (below throttleC out of the pause, below resumeC to
// full speed). A running request slows down or waits; it is never failed, and its tokens are the
// same (the engine's output does not depend on its thread count). On a Raspberry Pi the
// firmware's own throttling flags (`vcgencmd get_throttled`) are reported beside the temperature.
import { execFile } from 'node:child_process';
import path from 'node:path';
import type { DaemonEngine } from '../pipeline.js';
import type { Extension, ExtensionContext } from './extension.js';
import { cpuTemperature } from './health.js';

export type ThermalState = 'normal' | 'throttled' | 'paused';

export interface ThermalLimits {
  throttleC: number;
  pauseC: number;
  resumeC: number;
}

/** The next state for a temperature, with hysteresis so the engine does not flap at a threshold. */
export function nextThermalState(state: ThermalState, celsius: number, limits: ThermalLimits): ThermalState {
  if (celsius >= limits.pauseC) return 'paused';
  if (celsius >= limits.throttleC) return 'throttled';
  if (state === 'paused') return 'throttled';
  if (state === 'throttled' && celsius >= limits.resumeC) return 'throttled';
  return 'normal';
}

/** What the engine must offer for thermal control: src/engine/engine.ts's Model does. */
interface ThrottledEngine extends DaemonEngine {
  readonly threads: number;
  limitThreads(n: number): void;
  pause(paused: boolean): void;
}

function throttles(engine: DaemonEngine): engine is ThrottledEngine {
  const e = engine as Partial<ThrottledEngine>;
  return typeof e.limitThreads === 'function' && typeof e.pause === 'function' && typeof e.threads === 'number';
}

export function thermalExtension(ctx: ExtensionContext): Extension {
  const { config, logger } = ctx;
  const limits = config.thermal;
  const thermalDir = path.join(config.profile.sysroot, 'sys/class/thermal');
  let state: ThermalState = 'normal';
  let celsius: number | undefined;
  let firmware: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  const apply = (engine: ThrottledEngine, next: ThermalState) => {
    const threads = next === 'normal' ? engine.threads : Math.max(limits.minThreads, Math.floor(engine.threads / 2));
    engine.limitThreads(Math.min(threads, engine.threads));
    engine.pause(next === 'paused');
    logger.warn({ celsius, from: state, to: next, threads, firmware }, next === 'normal' ? 'cooled down: full speed' : `CPU at ${celsius} °C: ${next}`);
    state = next;
  };

  // Only on the machine itself (not a test's tree), and given up once it fails.
  let askFirmware = config.profile.sysroot === '/';
  const check = (engine: ThrottledEngine) => {
    celsius = cpuTemperature(thermalDir);
    if (askFirmware) void readFirmwareThrottling().then((flags) => (flags === undefined ? (askFirmware = false) : (firmware = flags)));
    if (celsius === undefined) return;
    const next = nextThermalState(state, celsius, limits);
    if (next !== state) apply(engine, next);
  };

  return {
    name: 'thermal',
    start() {
      const engine = ctx.engine;
      if (!throttles(engine) || cpuTemperature(thermalDir) === undefined) return;
      check(engine);
      timer = setInterval(() => check(engine), limits.intervalSec * 1000);
      timer.unref();
    },
    health: () => (celsius === undefined ? {} : { thermal: { celsius, state, ...(firmware !== undefined ? { firmware_throttled: firmware } : {}) } }),
    stop() {
      clearInterval(timer);
      // A paused engine would hold a generation that the shutdown waits for.
      if (state === 'paused' && throttles(ctx.engine)) ctx.engine.pause(false);
    },
  };
}

/**
 * `vcgencmd get_throttled` on a Raspberry Pi: the firmware's own under-voltage and throttling
 * flags ("0x0" when all is well, from "throttled=0x0"). Undefined on other boards, under the
 * hardened service unit (it hides /dev/vchiq), or for a reply without flags: the caller need not
 * ask again. Never rejects.
 */
export function readFirmwareThrottling(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('vcgencmd', ['get_throttled'], { timeout: 2000 }, (err, stdout) => resolve(err ? undefined : /throttled=(0x[0-9a-f]+)/i.exec(stdout)?.[1]));
  });
}

/** The bits of get_throttled, as the Raspberry Pi documentation names them. */
const THROTTLED_BITS: [number, string][] = [
  [0, 'under-voltage now'],
  [1, 'ARM frequency capped now'],
  [2, 'throttled now'],
  [3, 'soft temperature limit now'],
  [16, 'under-voltage since boot'],
  [17, 'frequency capped since boot'],
  [18, 'throttled since boot'],
  [19, 'soft temperature limit since boot'],
];

/** get_throttled's flags in words ("under-voltage now, throttled since boot"); [] for 0x0. */
export function describeThrottled(flags: string): string[] {
  const value = Number.parseInt(flags, 16);
  return THROTTLED_BITS.filter(([bit]) => Math.floor(value / 2 ** bit) % 2 === 1).map(([, name]) => name);
}
