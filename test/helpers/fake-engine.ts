// A stand-in for the engine with Model's generate() contract, for the fast unit tests of the
// daemon's scheduling and protocol: it "generates" one word per token at a chosen pace and
// honours cancellation at the next token, like the real engine.
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../../src/engine/engine.js';
import { EngineError } from '../../src/errors.js';
import type { DaemonEngine } from '../../src/daemon/pipeline.js';

export class FakeEngine implements DaemonEngine {
  readonly name = 'fake';
  readonly contextSize = 64;
  chatTemplate: string | undefined = undefined;
  /** Every request the engine saw, for assertions on rendering. */
  readonly seen: GenerateRequest[] = [];
  private running = false;

  constructor(private readonly msPerToken = 1) {}

  async generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    this.seen.push(request);
    const promptIds = (request.prompt ?? request.messages?.map((m) => m.content).join(' ') ?? '').split(/\s+/).filter(Boolean).map((_, i) => i);
    if (promptIds.length >= this.contextSize) throw new EngineError('too_large', `prompt has ${promptIds.length} tokens, context holds ${this.contextSize}`);
    if (this.running) throw new EngineError('busy', 'another generation is running on this model');
    this.running = true;
    const started = performance.now();
    const ids: number[] = [];
    let text = '';
    try {
      while (ids.length < request.maxTokens && !options.signal?.aborted) {
        await new Promise((r) => setTimeout(r, this.msPerToken));
        const piece = ` w${ids.length}`;
        ids.push(ids.length);
        text += piece;
        options.onText?.(piece);
      }
    } finally {
      this.running = false;
    }
    const genMs = performance.now() - started;
    return {
      text,
      finishReason: options.signal?.aborted ? 'cancelled' : 'length',
      promptIds,
      ids,
      timings: { promptMs: 0, promptTokensPerS: 0, genMs, genTokensPerS: (ids.length * 1000) / Math.max(genMs, 1e-3) },
    };
  }
}
