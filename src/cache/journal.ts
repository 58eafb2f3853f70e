// The request journal: every request message as it arrived, written (with synchronous=FULL, so a
// power cut keeps it) before the broker is told it was received, then followed to its final reply.
// A row is `received`, then `accepted` (parsed, with its key: reply topic + id), `running`, `final`
// (the final reply is stored and being published) and `done` (the broker has it). After a crash,
// the rows an earlier run left unfinished are what the daemon still owes an answer.
import { randomUUID } from 'node:crypto';
import type { CacheDatabase } from './database.js';

export type JournalState = 'received' | 'accepted' | 'running' | 'final' | 'done';

export interface JournalRow {
  row: number;
  topic: string;
  payload: Buffer;
  responseTopic?: string;
  correlationData?: Buffer;
  receivedAt: number;
  state: JournalState;
  /** `<reply topic>\0<id>`, once the request was parsed. */
  key?: string;
  /** The final reply (JSON), from `final` on. */
  final?: string;
}

/** What a parsed request's key says about it. */
export type Settled = { kind: 'new' } | { kind: 'answered'; final: string } | { kind: 'in-flight' };

export class RequestJournal {
  /** This process's run: rows of other runs that are unfinished were interrupted. */
  readonly run = randomUUID();

  /** `node`: whose requests these are (daemons of several nodes may share one cache file). */
  constructor(
    private readonly db: CacheDatabase,
    private readonly node: string,
  ) {}

  get available(): boolean {
    return this.db.available;
  }

  /** Writes an arrived message; undefined when the journal cannot (it is off). */
  record(topic: string, payload: Buffer, props: { responseTopic?: string; correlationData?: Buffer }, receivedAt: number): number | undefined {
    return this.db.use(
      'journal write',
      (db) =>
        Number(
          db
            .prepare('INSERT INTO journal (node, run, topic, payload, response_topic, correlation, received_at, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
            .run(this.node, this.run, topic, payload, props.responseTopic ?? null, props.correlationData ?? null, receivedAt, 'received', Date.now()).lastInsertRowid,
        ),
      undefined,
    );
  }

  /**
   * Links a row to its request key. A key that another row already answered gets that final reply;
   * one that another row is still working on is in flight (a redelivery); otherwise it is new.
   */
  settle(row: number, key: string): Settled {
    return this.db.use(
      'journal settle',
      (db): Settled => {
        const other = db.prepare('SELECT state, final FROM journal WHERE node = ? AND key = ? AND row != ? ORDER BY row DESC LIMIT 1').get(this.node, key, row) as
          | { state: JournalState; final: string | null }
          | undefined;
        if (other?.final) return { kind: 'answered', final: other.final };
        if (other) return { kind: 'in-flight' };
        db.prepare('UPDATE journal SET key = ?, state = ?, updated_at = ? WHERE row = ?').run(key, 'accepted', Date.now(), row);
        return { kind: 'new' };
      },
      { kind: 'new' },
    );
  }

  mark(row: number, state: 'running' | 'done'): void {
    this.db.use('journal write', (db) => db.prepare('UPDATE journal SET state = ?, updated_at = ? WHERE row = ?').run(state, Date.now(), row), undefined);
  }

  /** The final reply is about to be published: stored first, so a crash now re-sends it, not re-runs. */
  final(row: number, reply: string): void {
    this.db.use('journal write', (db) => db.prepare('UPDATE journal SET state = ?, final = ?, updated_at = ? WHERE row = ?').run('final', reply, Date.now(), row), undefined);
  }

  /** A message that needs no answer from the journal (refused at once, ignored, a duplicate). */
  forget(row: number): void {
    this.db.use('journal write', (db) => db.prepare('DELETE FROM journal WHERE row = ?').run(row), undefined);
  }

  /** Rows earlier runs left unfinished, oldest first. */
  interrupted(): JournalRow[] {
    const rows = this.db.use(
      'journal read',
      (db) =>
        db.prepare("SELECT row, topic, payload, response_topic, correlation, received_at, state, key, final FROM journal WHERE node = ? AND run != ? AND state != 'done' ORDER BY row").all(this.node, this.run) as {
          row: number;
          topic: string;
          payload: Buffer;
          response_topic: string | null;
          correlation: Buffer | null;
          received_at: number;
          state: JournalState;
          key: string | null;
          final: string | null;
        }[],
      [],
    );
    return rows.map((r) => ({
      row: r.row,
      topic: r.topic,
      payload: r.payload,
      ...(r.response_topic !== null ? { responseTopic: r.response_topic } : {}),
      ...(r.correlation !== null ? { correlationData: r.correlation } : {}),
      receivedAt: r.received_at,
      state: r.state,
      ...(r.key !== null ? { key: r.key } : {}),
      ...(r.final !== null ? { final: r.final } : {}),
    }));
  }

  /** Forgets finished requests older than retainMs (their ids may then run again). */
  prune(retainMs: number): number {
    return this.db.use('journal prune', (db) => db.prepare("DELETE FROM journal WHERE state = 'done' AND updated_at < ?").run(Date.now() - retainMs).changes, 0);
  }

  counts(): Record<JournalState, number> {
    const rows = this.db.use('journal read', (db) => db.prepare('SELECT state, count(*) AS n FROM journal WHERE node = ? GROUP BY state').all(this.node) as { state: JournalState; n: number }[], []);
    const counts: Record<JournalState, number> = { received: 0, accepted: 0, running: 0, final: 0, done: 0 };
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }
}
