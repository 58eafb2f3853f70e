// Scheduling: a bounded priority queue in front of `parallel` workers. Up to that many generations
// run at once (the model decodes them together, one context each); the rest wait by priority, then
// arrival. A full queue answers at once instead of growing, deadlines are enforced while waiting
// and while running, and a request key that is queued or running is never accepted a second time.

export interface Job {
  /** Unique per request (reply topic + id); duplicates are refused while the first is in flight. */
  key: string;
  id: string;
  priority: number;
  /** Absolute ms since epoch. */
  deadline?: number;
}

/** Why a job's AbortSignal fired; the runner turns it into the right reply. */
export type AbortReason = 'cancelled' | 'timeout' | 'shutdown';

export interface SchedulerOptions<J extends Job> {
  /** Waiting jobs beyond the running ones. */
  max: number;
  /** Jobs that run at once (default 1). */
  parallel?: number;
  /** Longest a job may run before its signal aborts with 'timeout'. */
  maxRunMs: number;
  /** Runs one job; must settle (it owns the job's replies) and should stop soon after `signal` aborts. */
  run: (job: J, signal: AbortSignal) => Promise<void>;
  /** A waiting job left the queue without running (deadline passed, cancelled, shutdown). */
  dropped: (job: J, reason: AbortReason) => void;
  now?: () => number;
}

interface Waiting<J> {
  job: J;
  seq: number;
  timer?: NodeJS.Timeout;
}

export type SubmitResult = 'queued' | 'busy' | 'duplicate' | 'stopped';

interface Running<J> {
  job: J;
  controller: AbortController;
  done: Promise<void>;
}

export class Scheduler<J extends Job> {
  private waiting: Waiting<J>[] = [];
  private readonly running = new Set<Running<J>>();
  private seq = 0;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: SchedulerOptions<J>) {
    this.now = opts.now ?? Date.now;
  }

  get depth(): number {
    return this.waiting.length;
  }
  /** Jobs running now. */
  get active(): number {
    return this.running.size;
  }
  private get slots(): number {
    return this.opts.parallel ?? 1;
  }

  has(key: string): boolean {
    return [...this.running].some((r) => r.job.key === key) || this.waiting.some((w) => w.job.key === key);
  }

  submit(job: J): SubmitResult {
    if (this.stopped) return 'stopped';
    if (this.has(job.key)) return 'duplicate';
    if (this.running.size >= this.slots && this.waiting.length >= this.opts.max) return 'busy';
    const entry: Waiting<J> = { job, seq: this.seq++ };
    if (job.deadline !== undefined) {
      entry.timer = setTimeout(() => this.drop(entry, 'timeout'), Math.max(0, job.deadline - this.now()));
    }
    this.insert(entry);
    this.pump();
    return 'queued';
  }

  /** Cancels every queued or running job with this id; returns how many were found. */
  cancel(id: string): number {
    let found = 0;
    for (const w of this.waiting.filter((w) => w.job.id === id)) {
      this.drop(w, 'cancelled');
      found++;
    }
    for (const r of this.running) {
      if (r.job.id !== id) continue;
      r.controller.abort('cancelled' satisfies AbortReason);
      found++;
    }
    return found;
  }

  /**
   * Stops taking jobs and drops the waiting ones. The running jobs finish, or are aborted with
   * 'shutdown' at once (cancel=true) or after graceMs. Resolves when nothing runs any more.
   */
  async stop(cancelRunning: boolean, graceMs: number): Promise<void> {
    this.stopped = true;
    for (const w of [...this.waiting]) this.drop(w, 'shutdown');
    const running = [...this.running];
    if (running.length === 0) return;
    const abortAll = () => running.forEach((r) => r.controller.abort('shutdown' satisfies AbortReason));
    if (cancelRunning) abortAll();
    const grace = setTimeout(abortAll, graceMs);
    await Promise.all(running.map((r) => r.done));
    clearTimeout(grace);
  }

  private insert(entry: Waiting<J>): void {
    // Higher priority first, then first come first served; the queue is small, so a linear scan is fine.
    const at = this.waiting.findIndex((w) => w.job.priority < entry.job.priority);
    if (at < 0) this.waiting.push(entry);
    else this.waiting.splice(at, 0, entry);
  }

  private drop(entry: Waiting<J>, reason: AbortReason): void {
    const at = this.waiting.indexOf(entry);
    if (at < 0) return;
    this.waiting.splice(at, 1);
    clearTimeout(entry.timer);
    this.opts.dropped(entry.job, reason);
  }

  private pump(): void {
    while (this.running.size < this.slots && !this.stopped && this.waiting.length > 0) this.start(this.waiting.shift()!);
  }

  private start(next: Waiting<J>): void {
    clearTimeout(next.timer);
    const { job } = next;
    const controller = new AbortController();
    const limit = Math.min(this.opts.maxRunMs, job.deadline !== undefined ? job.deadline - this.now() : Infinity);
    const timer = setTimeout(() => controller.abort('timeout' satisfies AbortReason), Math.max(0, limit));
    const entry: Running<J> = { job, controller, done: Promise.resolve() };
    entry.done = this.opts
      .run(job, controller.signal)
      .catch(() => undefined) // run owns its errors and replies; nothing may stop the queue
      .finally(() => {
        clearTimeout(timer);
        this.running.delete(entry);
        this.pump();
      });
    this.running.add(entry);
  }
}
