// The replay of finished requests: a request whose id (on its reply topic) already got its final
// reply is answered with that reply again instead of running twice. Clients publish a request
// again after a reconnect (they cannot know whether it arrived), so this is what makes a retry
// safe. Requests refused before queueing are not kept: a corrected retry with the same id runs.
import type { DoneReply, ErrorReply } from '../../protocol/messages.js';
import type { Extension, ExtensionContext } from './extension.js';

/** Final replies kept (the oldest is forgotten first). */
const REPLAY_ENTRIES = 512;

export function replayExtension(ctx: ExtensionContext): Extension {
  const finals = new Map<string, DoneReply | ErrorReply>();
  const remember = (key: string, reply: DoneReply | ErrorReply) => {
    finals.delete(key);
    finals.set(key, reply);
    if (finals.size > REPLAY_ENTRIES) finals.delete(finals.keys().next().value!);
  };
  return {
    name: 'replay',
    start() {
      ctx.pipeline.on('finished', (job, reply) => remember(job.key, reply));
      ctx.pipeline.on('failed', (failure) => {
        if (failure.job) remember(failure.job.key, { id: failure.route.id, type: 'error', code: failure.code, message: failure.message });
      });
      ctx.pipeline.intercept((job) => {
        const earlier = finals.get(job.key);
        if (!earlier) return false;
        ctx.logger.info({ id: job.id }, 'repeated request id: replaying its final reply');
        job.replies.replay(earlier);
        return true;
      });
    },
  };
}
