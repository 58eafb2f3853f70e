// The request journal as the daemon uses it (the store is src/cache/journal.ts). Every request is
// in the journal before the broker hears it arrived (see DaemonMqtt's intake), and followed to its
// final reply; at start, what an earlier run left unanswered is answered: run again when it is
// still within its deadline and journal.maxAgeSec, else `interrupted`, and a final reply that was
// stored but perhaps not delivered is sent again. A repeated id gets its earlier final reply
// instead of running twice, across restarts; while the journal is off (no cache file), the last
// finals are remembered in memory.
import type { DoneReply, ErrorReply } from '../../protocol/messages.js';
import type { JournalRow } from '../../cache/journal.js';
import type { DaemonPacket } from '../mqtt.js';
import type { RequestJob } from '../pipeline.js';
import type { Extension, ExtensionContext } from './extension.js';

/** Final replies kept in memory (the oldest is forgotten first). */
const REPLAY_ENTRIES = 512;
const PRUNE_EVERY_MS = 3_600_000;

export function journalExtension(ctx: ExtensionContext): Extension {
  const { journal, logger, config } = ctx;
  const finals = new Map<string, DoneReply | ErrorReply>();
  let pruner: NodeJS.Timeout | undefined;
  const remember = (key: string, reply: DoneReply | ErrorReply) => {
    finals.delete(key);
    finals.set(key, reply);
    if (finals.size > REPLAY_ENTRIES) finals.delete(finals.keys().next().value!);
  };
  const forget = (packet: DaemonPacket | undefined) => {
    if (packet?.journalRow !== undefined) journal?.forget(packet.journalRow);
  };
  const replay = (job: RequestJob, reply: DoneReply | ErrorReply) => {
    logger.info({ id: job.id }, 'repeated request id: replaying its final reply');
    job.replies.replay(reply);
    forget(job.packet);
  };

  /** What the journal knows of this request's key: answered before, in flight, or new. */
  const intercept = (job: RequestJob): boolean => {
    const earlier = finals.get(job.key);
    if (earlier) return replay(job, earlier), true;
    const row = job.packet.journalRow;
    if (row === undefined || !journal) return false;
    const settled = journal.settle(row, job.key);
    if (settled.kind === 'answered') return replay(job, JSON.parse(settled.final) as DoneReply | ErrorReply), true;
    if (settled.kind === 'in-flight') {
      // The broker delivered again what this daemon is already working on.
      forget(job.packet);
      logger.info({ id: job.id }, 'request delivered again while in flight: ignored');
      return true;
    }
    return false;
  };

  const recover = (rows: JournalRow[]) => {
    const now = Date.now();
    for (const row of rows) {
      if (row.final !== undefined) {
        resend(row);
        continue;
      }
      const fresh = now - row.receivedAt <= config.journal.maxAgeSec * 1000;
      logger.warn({ row: row.row, topic: row.topic, age_ms: now - row.receivedAt, action: fresh ? 'rerun' : 'interrupted' }, 'request left unanswered by an earlier run');
      ctx.mqtt.deliver(packetOf(row, fresh ? 'rerun' : 'interrupted'));
    }
  };

  /** A final reply stored before a crash, perhaps never delivered: sent again (the same reply). */
  const resend = (row: JournalRow) => {
    const reply = JSON.parse(row.final!) as DoneReply | ErrorReply;
    const topic = row.responseTopic ?? replyTopicOf(row);
    ctx.mqtt.publish(topic, row.final!, { contentType: 'application/json', ...(row.correlationData ? { correlationData: row.correlationData } : {}) }).then((ok) => {
      if (ok) journal?.mark(row.row, 'done');
    });
    logger.warn({ id: reply.id, row: row.row }, 'final reply of an earlier run sent again');
  };

  return {
    name: 'journal',
    start() {
      ctx.pipeline.intercept(intercept);
      ctx.pipeline.on('started', (job) => {
        if (job.packet.journalRow !== undefined) journal?.mark(job.packet.journalRow, 'running');
      });
      ctx.pipeline.on('final', (job, reply) => {
        remember(job.key, reply);
        const row = job.packet.journalRow;
        if (row === undefined || !journal) return;
        journal.final(row, JSON.stringify(reply));
        void job.replies.finalSent?.then((ok) => ok && journal.mark(row, 'done'));
      });
      // Answered at once or not a request at all: nothing the journal must see through.
      ctx.pipeline.on('failed', (failure) => {
        if (failure.stage === 'rejected') forget(failure.packet);
      });
      ctx.pipeline.on('ignored', (_what, _id, packet) => forget(packet));
      if (!journal) return;
      journal.prune(config.journal.retainSec * 1000);
      pruner = setInterval(() => journal.prune(config.journal.retainSec * 1000), PRUNE_EVERY_MS);
      pruner.unref();
      recover(journal.interrupted());
    },
    health: () => (journal ? { journal: journal.counts() } : {}),
    stop() {
      clearInterval(pruner);
    },
  };
}

function packetOf(row: JournalRow, recovered: 'rerun' | 'interrupted'): DaemonPacket {
  const properties = { ...(row.responseTopic ? { responseTopic: row.responseTopic } : {}), ...(row.correlationData ? { correlationData: row.correlationData } : {}) };
  return { cmd: 'publish', topic: row.topic, payload: row.payload, qos: 1, retain: false, dup: false, properties, journalRow: row.row, receivedAt: row.receivedAt, recovered };
}

/** The reply topic of a row whose key was settled (`<reply topic>\0<id>`). */
function replyTopicOf(row: JournalRow): string {
  return (row.key ?? '').split('\0')[0]!;
}
