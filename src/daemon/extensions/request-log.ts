// One log line per request outcome (with its id, token counts and timings), from the pipeline's
// events: the JSON lines an operator reads with journalctl or ships to a log store.
import type { Extension, ExtensionContext } from './extension.js';

export function requestLogExtension(ctx: ExtensionContext): Extension {
  const log = ctx.logger;
  return {
    name: 'request-log',
    start() {
      const p = ctx.pipeline;
      p.on('finished', (job, reply, result) => {
        const { finish_reason, usage, timings } = reply;
        log.info({ id: job.id, topic: job.replies.route.topic, finish_reason, ...usage, ...timings, gen_ms: result ? Math.round(result.timings.genMs * 10) / 10 : 0 }, 'request done');
      });
      p.on('failed', ({ route, code, message, stage, error }) => {
        if (code === 'internal') log.error({ err: error, id: route.id }, 'generation failed');
        log.info({ id: route.id, topic: route.topic, code, message }, stage === 'rejected' ? 'request rejected' : 'request failed');
      });
      p.on('cancelled', (job, reason) => log.info({ id: job.id, reason }, 'cancel'));
      p.on('ignored', (what, id) => log.warn(id !== undefined ? { id } : {}, what));
    },
  };
}
