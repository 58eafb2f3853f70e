// The service manager's view of the daemon (sd_notify, for a unit with Type=notify): a STATUS line
// at each phase, EXTEND_TIMEOUT_USEC while the model loads (a large file on an SD card can outlast
// TimeoutStartSec), READY=1 once online (model loaded, broker connected, requests taken),
// STOPPING=1 when it starts draining and, under WatchdogSec=, WATCHDOG=1 every half period as long
// as the daemon is healthy: its event loop not stuck and its engine not wedged. Without
// NOTIFY_SOCKET (not started by systemd) it does nothing. When notifying fails and systemd expects
// watchdog pings, the daemon exits at once with the reason rather than being killed and restarted
// in a loop without one.
import type { Logger } from '../logger.js';
import type { Extension, ExtensionContext, Phase } from './extension.js';

/**
 * While loading, EXTEND_TIMEOUT_USEC goes out this often and reaches three periods ahead, so that
 * one late timer on a busy board does not let the start time out.
 */
const EXTEND_EVERY_MS = 10_000;
const EXTEND_BY_USEC = 3 * EXTEND_EVERY_MS * 1000;
/** `systemctl status` shows one STATUS line; systemd drops datagrams over 4096 bytes. */
const STATUS_MAX_CHARS = 256;
/** setInterval's longest delay; pinging sooner than a huge WatchdogSec needs is harmless. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The watchdog timeout systemd set for this process (WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * reads it), in ms: undefined when unset, or when WATCHDOG_PID names another process (the
 * variables were inherited from a supervised parent). Throws on a value that is not a positive
 * number of microseconds, so a misconfiguration stops the start instead of a kill later.
 */
function watchdogTimeoutMs(env: NodeJS.ProcessEnv): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (!usec) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  if (!/^[1-9][0-9]*$/.test(usec)) throw new Error(`WATCHDOG_USEC=${usec} is not a positive number of microseconds`);
  return Number(usec) / 1000;
}

export function systemdExtension(ctx: ExtensionContext): Extension {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return { name: 'systemd', health: () => ({ systemd: { notify: false, watchdog_sec: null } }) };
  const timeoutMs = watchdogTimeoutMs(process.env);
  const notifier = new Notifier(socket, timeoutMs !== undefined, ctx.logger);
  const progress = new EngineProgress();
  let extendTimer: NodeJS.Timeout | undefined;
  let stopWatchdog: (() => void) | undefined;

  return {
    name: 'systemd',
    phase(phase: Phase, detail: string) {
      const status = `STATUS=${statusLine(detail)}`;
      if (phase !== 'loading') clearInterval(extendTimer);
      switch (phase) {
        case 'loading':
          notifier.send(`${status}\nEXTEND_TIMEOUT_USEC=${EXTEND_BY_USEC}`);
          extendTimer = setInterval(() => notifier.send(`EXTEND_TIMEOUT_USEC=${EXTEND_BY_USEC}`), EXTEND_EVERY_MS);
          extendTimer.unref();
          return;
        case 'online':
          notifier.send(`READY=1\n${status}`);
          if (timeoutMs !== undefined) stopWatchdog = startWatchdog(timeoutMs, ctx.config.limits.maxRunMs, progress, notifier, ctx.logger);
          return;
        case 'stopping':
          // The pings go on while draining: a generation allowed to finish may outlast WatchdogSec.
          notifier.send(`STOPPING=1\n${status}`);
          return;
        case 'stopped':
          stopWatchdog?.();
          notifier.send(status);
          return;
        default:
          notifier.send(status);
      }
    },
    start() {
      if (timeoutMs === undefined) return;
      const pipeline = ctx.pipeline;
      pipeline.on('started', (job) => progress.started(job));
      pipeline.on('chunk', (job) => progress.progressed(job));
      pipeline.on('finished', (job) => progress.ended(job));
      pipeline.on('failed', ({ job }) => {
        if (job) progress.ended(job);
      });
    },
    health: () => ({ systemd: { notify: notifier.working, watchdog_sec: timeoutMs === undefined ? null : timeoutMs / 1000 } }),
  };
}

/** A detail line as one STATUS value: no line breaks of its own (they would start other keys), bounded. */
function statusLine(detail: string): string {
  return detail.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, STATUS_MAX_CHARS);
}

/**
 * Sends states through the addon, in order. The addon is imported only under systemd (the rest of
 * the daemon loads where it is not built); what is sent before it has loaded waits for it.
 */
class Notifier {
  /** False once a notification failed: the daemon then goes on without telling systemd. */
  working = true;
  private notify: ((state: string) => boolean) | undefined;
  private readonly waiting: string[] = [];

  constructor(
    private readonly socket: string,
    private readonly fatal: boolean,
    private readonly log: Logger,
  ) {
    import('../../native.js').then(
      ({ native }) => {
        this.notify = (state) => native.notify(state);
        for (const state of this.waiting.splice(0)) this.deliver(state);
      },
      (err: Error) => this.failed(new Error(`cannot notify systemd at ${socket}: the addon did not load: ${err.message}`)),
    );
  }

  send(state: string): void {
    if (this.notify) this.deliver(state);
    else this.waiting.push(state);
  }

  private deliver(state: string): void {
    if (!this.working) return;
    try {
      this.notify!(state);
    } catch (err) {
      this.failed(err as Error);
    }
  }

  private failed(err: Error): void {
    this.working = false;
    if (!this.fatal) {
      this.log.error({ socket: this.socket }, `${err.message}: going on without notifying the service manager`);
      return;
    }
    // Without its pings systemd would kill the daemon and start it again, over and over, with no
    // reason given: better one clear error and a stop.
    this.log.fatal({ socket: this.socket }, err.message);
    this.log.flush();
    process.stderr.write(`bonsai: ${err.message}\n`);
    process.exit(1);
  }
}

/**
 * The generations running and when each last showed progress (its start or its latest text), from
 * the pipeline's events. A recalled answer starts and finishes at once; a generated one may run
 * beside it.
 */
class EngineProgress {
  private readonly lastProgress = new Map<object, number>();

  started(job: object): void {
    this.lastProgress.set(job, performance.now());
  }

  progressed(job: object): void {
    if (this.lastProgress.has(job)) this.lastProgress.set(job, performance.now());
  }

  ended(job: object): void {
    this.lastProgress.delete(job);
  }

  /** The longest any running generation has shown nothing, in ms; 0 when none runs. */
  silentMs(): number {
    const now = performance.now();
    return Math.max(0, ...[...this.lastProgress.values()].map((at) => now - at));
  }
}

/**
 * WATCHDOG=1 every half timeout while the daemon is healthy; returns the function that stops it.
 * Unhealthy is an event loop that was stuck for a whole ping interval since the last ping (timers,
 * MQTT keep-alives and replies all waited that long), or a generation silent for twice
 * limits.maxRunMs: the scheduler cancels a run at maxRunMs, a cancelled generation stops at its
 * next token, and an uninterruptible prompt evaluation fits in a run's budget, so an engine that
 * shows nothing for that long is wedged. Systemd then kills the daemon and, with
 * Restart=on-failure, starts it again.
 */
function startWatchdog(timeoutMs: number, maxRunMs: number, progress: EngineProgress, notifier: Notifier, log: Logger): () => void {
  const pingEveryMs = Math.min(timeoutMs / 2, MAX_TIMER_MS);
  // A tenth of the ping interval: precise enough, and few wake-ups on a small board.
  const sampleEveryMs = Math.min(Math.max(pingEveryMs / 10, 10), 1000);
  // How late a timer fires is how long the loop could not run it: the longest since the last ping.
  let stuckMs = 0;
  let sampleDue = performance.now() + sampleEveryMs;
  let pingDue = performance.now() + pingEveryMs;
  const sampler = setInterval(() => {
    const now = performance.now();
    stuckMs = Math.max(stuckMs, now - sampleDue);
    sampleDue = now + sampleEveryMs;
  }, sampleEveryMs);
  const pinger = setInterval(() => {
    const now = performance.now();
    // The stall that ends now may not have reached the sampler yet.
    const stuck = Math.max(stuckMs, now - pingDue);
    stuckMs = 0;
    pingDue = now + pingEveryMs;
    const silentMs = progress.silentMs();
    if (stuck >= pingEveryMs) {
      log.error({ stuck_ms: Math.round(stuck), watchdog_ms: timeoutMs }, 'the event loop was stuck: systemd watchdog not notified');
    } else if (silentMs > 2 * maxRunMs) {
      log.error({ silent_ms: Math.round(silentMs), max_run_ms: maxRunMs }, 'a generation shows no progress: systemd watchdog not notified');
    } else {
      notifier.send('WATCHDOG=1');
    }
  }, pingEveryMs);
  sampler.unref();
  pinger.unref();
  return () => {
    clearInterval(sampler);
    clearInterval(pinger);
  };
}
