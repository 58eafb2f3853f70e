// `bonsai chat`: an interactive terminal chat. The whole conversation is re-rendered with the
// model's template each turn; the engine keeps the KV cache of the longest common token prefix,
// so only the new turn (and the previous reply) is evaluated, and the prefix cache keeps it across
// restarts: with --session NAME the conversation is taken up again where it was left. Piped input
// works too: one line is one user message.
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { Caches } from '../cache/caches.js';
import { ChatSessions } from '../cache/sessions.js';
import { cannotThink } from '../engine/chat.js';
import type { ChatMessage, Model } from '../engine/engine.js';
import { EngineError } from '../errors.js';
import { addCacheOptions, addModelOptions, floatOption, intOption, loadCachedModel, type CacheCliOptions, type ModelCliOptions } from './options.js';
import { DIM, RESET } from './style.js';

interface ChatCliOptions extends ModelCliOptions, CacheCliOptions {
  session?: string;
  system?: string;
  think?: boolean;
  nPredict: number;
  temp: number;
  seed?: number;
}

export function register(program: Command): void {
  addCacheOptions(addModelOptions(program.command('chat').description('chat with a model in the terminal (/reset starts over, /exit or Ctrl-D quits, Ctrl-C stops a reply)')))
    .option('--system <text>', 'system message')
    .option('--session <name>', 'keep the conversation under this name in the cache file, and take it up again on the next start')
    .option('--think', "let the model reason before answering (Qwen3's thinking switch); the reasoning is shown dimmed")
    .option('-n, --n-predict <n>', 'most tokens per reply', intOption('n-predict', 1), 1024)
    .option('--temp <t>', 'temperature (0 = greedy)', floatOption('temp', 0, 100), 0.7)
    .option('--seed <s>', 'random seed (default: random)', intOption('seed', 0, 2 ** 53 - 1))
    .action(async (opts: ChatCliOptions) => {
      const { model, caches } = await loadCachedModel(opts);
      try {
        const why = opts.think ? cannotThink(model.chatTemplate) : undefined;
        if (why) throw new EngineError('bad_request', `${why}: run without --think`);
        const sessions = opts.session !== undefined ? sessionsOf(caches) : undefined;
        await converse(model, opts, sessions);
      } finally {
        caches?.close();
        model.close();
      }
    });
}

async function converse(model: Model, opts: ChatCliOptions, sessions: ChatSessions | undefined): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: Boolean(process.stdin.isTTY && process.stdout.isTTY) });
  const interactive = rl.terminal;
  const system: ChatMessage[] = opts.system !== undefined ? [{ role: 'system', content: opts.system }] : [];
  let history: ChatMessage[] = opts.session && sessions ? sessions.load(opts.session) : [];
  const keep = () => opts.session && sessions?.save(opts.session, history);
  if (history.length) process.stderr.write(`bonsai chat: session ${opts.session}: ${history.length} earlier messages\n`);
  let reply: AbortController | undefined;
  // Ctrl-C stops the reply being written; at the prompt it quits.
  rl.on('SIGINT', () => (reply ? reply.abort() : rl.close()));
  if (interactive) process.stdout.write(`${model.name}: ${model.contextSize}-token context. /reset starts over, /exit quits.\n`);
  if (interactive) rl.prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === '/exit' || text === '/quit') break;
    if (text === '/reset') {
      history = [];
      keep();
    } else if (text) {
      history.push({ role: 'user', content: text });
      history = fitContext(model, system, history, opts.nPredict);
      reply = new AbortController();
      const answer = await respond(model, [...system, ...history], opts, reply.signal, interactive);
      reply = undefined;
      history.push({ role: 'assistant', content: answer });
      keep();
    }
    if (interactive) rl.prompt();
  }
  rl.close();
}

function sessionsOf(caches: Caches | undefined): ChatSessions {
  if (!caches?.db || !caches.modelIdentity) throw new Error('--session keeps the conversation in the cache file: it cannot be used with --no-cache');
  return new ChatSessions(caches.db, caches.modelIdentity);
}

/** Drops the oldest exchanges until the conversation and a full reply fit in the context. */
function fitContext(model: Model, system: ChatMessage[], history: ChatMessage[], replyTokens: number): ChatMessage[] {
  let kept = history;
  const size = (h: ChatMessage[]) => model.chatPrompt([...system, ...h]).ids.length;
  while (kept.length > 1 && size(kept) + replyTokens > model.contextSize) kept = kept.slice(2);
  if (size(kept) >= model.contextSize) throw new EngineError('too_large', `the message does not fit in the ${model.contextSize}-token context`);
  return kept;
}

/** Streams one reply (reasoning dimmed on a terminal) and returns the answer text. */
async function respond(model: Model, messages: ChatMessage[], opts: ChatCliOptions, signal: AbortSignal, interactive: boolean): Promise<string> {
  let thinking = false;
  const endThinking = () => {
    if (thinking) process.stdout.write(interactive ? `${RESET}\n\n` : '\n\n');
    thinking = false;
  };
  const result = await model.generate(
    {
      messages,
      enableThinking: opts.think ?? false,
      maxTokens: opts.nPredict,
      sampling: { temperature: opts.temp, seed: opts.seed ?? Math.floor(Math.random() * 2 ** 32) },
    },
    {
      signal,
      onThinking: (t) => {
        if (!thinking && interactive) process.stdout.write(DIM);
        thinking = true;
        process.stdout.write(t);
      },
      onText: (t) => {
        endThinking();
        process.stdout.write(t);
      },
    },
  );
  endThinking();
  process.stdout.write('\n');
  if (interactive) {
    const t = result.timings;
    process.stderr.write(`${DIM}[${result.ids.length} tokens, ${t.genTokensPerS.toFixed(1)} tok/s; prompt ${t.promptMs.toFixed(0)} ms]${RESET}\n`);
  }
  return result.text;
}
