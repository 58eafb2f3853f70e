// The answer cache and the cache figures of the health message. A deterministic request (greedy,
// or with a seed the sender chose) whose answer is cached for this model, rendered prompt and
// parameters is answered from it at once, streamed as usual, with `timings.cached: true`; every
// deterministic answer generated in full is cached. Sampled requests without a seed never are.
import { AnswerCache } from '../../cache/answers.js';
import type { RequestJob } from '../pipeline.js';
import type { Extension, ExtensionContext } from './extension.js';

/** Answers that depend on when they stopped, not only on the request, are not kept. */
const KEPT = new Set(['stop', 'length', 'context']);

export function cacheExtension(ctx: ExtensionContext): Extension {
  const caches = ctx.caches;
  let warming: Promise<void> | undefined;
  const keyOf = (job: RequestJob): string | undefined => {
    const { request, prepared } = job;
    if (!caches?.modelIdentity || !request.deterministic || !prepared) return undefined;
    const { maxTokens, stop, sampling } = request.options;
    // Greedy decoding ignores the seed (and every request has one): it must not split the key.
    const { seed: _ignored, ...greedy } = sampling;
    const shaping = greedy.temperature === 0 ? greedy : sampling;
    return AnswerCache.key({ model: caches.modelIdentity, prompt: prepared.promptIds, maxTokens, stop, sampling: shaping, think: request.think });
  };
  return {
    name: 'cache',
    start() {
      if (!caches) return;
      ctx.pipeline.intercept((job) => {
        const key = keyOf(job);
        const answer = key !== undefined ? caches.answers.get(key) : undefined;
        if (!answer) return false;
        ctx.pipeline.complete(job, { ...answer, seed: job.request.options.sampling.seed });
        return true;
      });
      ctx.pipeline.on('finished', (job, reply, result) => {
        const key = keyOf(job);
        if (key === undefined || !result || !KEPT.has(reply.finish_reason)) return;
        caches.answers.put(key, {
          text: reply.text,
          ...(reply.thinking !== undefined ? { thinking: reply.thinking } : {}),
          finish_reason: reply.finish_reason,
          completion_tokens: reply.usage.completion_tokens,
        });
      });
    },
    online() {
      // Once, after the start: the prefixes used last are in memory before the first questions.
      if (!caches || warming) return;
      warming = caches.prefix.warm().then((n) => ctx.logger.info({ blocks: n }, 'prompt-prefix blocks read into memory'));
    },
    health: () => (caches ? { cache: caches.stats() } : {}),
  };
}
