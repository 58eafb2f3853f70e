// `bonsai run`: generate text from a prompt, streaming it to stdout.
import type { Command } from 'commander';
import type { ChatMessage } from '../engine/engine.js';
import { SAMPLING_DEFAULTS } from '../engine/sampling.js';
import { addCacheOptions, addModelOptions, floatOption, intOption, loadCachedModel, type CacheCliOptions, type ModelCliOptions } from './options.js';

interface RunOptions extends ModelCliOptions, CacheCliOptions {
  prompt: string;
  nPredict: number;
  temp: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  repeatLastN: number;
  seed?: number;
  json?: boolean;
  system?: string;
  chat?: boolean;
  draft: number;
  draftModel?: string;
}

export function register(program: Command): void {
  addCacheOptions(addModelOptions(program.command('run').description('generate text from a prompt')))
    .option('-p, --prompt <text>', 'prompt text (empty: start from BOS alone)', '')
    .option('-n, --n-predict <n>', 'number of tokens to generate', intOption('n-predict', 0), 128)
    .option('--temp <t>', 'temperature (0 = greedy)', floatOption('temp', 0, 100), SAMPLING_DEFAULTS.temperature)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', intOption('top-k', 0), SAMPLING_DEFAULTS.topK)
    .option('--top-p <p>', 'nucleus sampling threshold (1 = off)', floatOption('top-p', 0, 1), SAMPLING_DEFAULTS.topP)
    .option('--min-p <p>', 'drop tokens below p x the top probability (0 = off)', floatOption('min-p', 0, 1), SAMPLING_DEFAULTS.minP)
    .option('--repeat-penalty <r>', 'penalty for recent tokens (1 = off)', floatOption('repeat-penalty', 0, 100), SAMPLING_DEFAULTS.repeatPenalty)
    .option('--repeat-last-n <n>', 'how many recent tokens the penalty considers', intOption('repeat-last-n', 0), SAMPLING_DEFAULTS.repeatLastN)
    .option('--seed <s>', 'random seed (default: random)', intOption('seed', 0, 2 ** 53 - 1))
    .option('--json', 'print one JSON object with ids, text and timings at the end instead of streaming')
    .option('--chat', "send the prompt as a user message through the model's chat template (thinking off)")
    .option('--system <text>', 'a system message before the prompt (implies --chat)')
    .option('--draft <n>', 'speculative decoding: at most n draft tokens per step (0 = off), by prompt lookup or --draft-model', intOption('draft', 0, 64), 0)
    .option('--draft-model <file>', 'a smaller model with the same vocabulary that drafts (with --draft)')
    .action(async (opts: RunOptions) => {
      const { model, caches } = await loadCachedModel(opts, opts.draftModel !== undefined ? { draftModel: opts.draftModel } : {});
      try {
        const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
        const result = await model.generate(
          {
            ...(opts.chat || opts.system !== undefined ? { messages: chatMessages(opts) } : { prompt: opts.prompt }),
            maxTokens: opts.nPredict,
            draft: opts.draft,
            sampling: {
              temperature: opts.temp,
              topK: opts.topK,
              topP: opts.topP,
              minP: opts.minP,
              repeatPenalty: opts.repeatPenalty,
              repeatLastN: opts.repeatLastN,
              seed,
            },
          },
          opts.json ? {} : { onText: (text) => process.stdout.write(text) },
        );
        if (!opts.json) {
          process.stdout.write('\n');
          return;
        }
        const t = result.timings;
        process.stdout.write(
          `${JSON.stringify({
            prompt_tokens: result.promptIds,
            tokens: result.ids,
            text: result.text,
            finish_reason: result.finishReason,
            seed,
            kernels: model.kernelsLabel,
            runtime_image: model.loadInfo.image,
            timings: {
              load_ms: round(model.loadMs),
              cached_tokens: t.cachedTokens,
              prompt_ms: round(t.promptMs),
              prompt_tokens_per_s: round(t.promptTokensPerS),
              gen_ms: round(t.genMs),
              gen_tokens_per_s: round(t.genTokensPerS),
              drafted_tokens: t.draftedTokens,
              accepted_tokens: t.acceptedTokens,
            },
          })}\n`,
        );
      } finally {
        caches?.close();
        model.close();
      }
    });
}

function chatMessages(opts: RunOptions): ChatMessage[] {
  const system: ChatMessage[] = opts.system !== undefined ? [{ role: 'system', content: opts.system }] : [];
  return [...system, { role: 'user', content: opts.prompt }];
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
