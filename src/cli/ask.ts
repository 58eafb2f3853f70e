// `bonsai ask`: send one prompt to a daemon and stream its answer to stdout (with --think, the
// model's reasoning to stderr). It reads the same config file and BONSAI_* environment as
// `bonsai serve`, so on the daemon's own machine no flags are needed. Exit codes: 0 done,
// 1 error reply, 2 no answer (timeout, no broker).
import { randomInt } from 'node:crypto';
import type { Command } from 'commander';
import { ask, AskTimeout } from '../client/ask.js';
import { loadConfig } from '../daemon/config.js';
import { connectOptionsFrom } from '../daemon/mqtt.js';
import { closeClient, connectMqtt, ConnectError } from '../protocol/connect.js';
import type { Reply } from '../protocol/messages.js';
import { floatOption, intOption } from './options.js';
import { DIM, RESET } from './style.js';

interface AskFlags {
  config?: string;
  url?: string;
  node?: string;
  fleet?: boolean;
  baseTopic?: string;
  json?: boolean;
  system?: string;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  think?: boolean;
  stream: boolean;
  timeout: number;
}

export function register(program: Command): void {
  program
    .command('ask')
    .description('send a prompt to a bonsai daemon over MQTT and print the answer as it streams')
    .argument('[prompt]', 'the prompt, or - to read it from stdin')
    .option('-c, --config <file>', 'the daemon config file (broker, credentials, TLS, topics)')
    .option('--url <url>', 'broker URL (default: mqtt.url, else the embedded broker on 127.0.0.1)')
    .option('--node <name>', 'node to ask (default: topics.node, i.e. this host name)')
    .option('--fleet', 'send to the fleet topic: any node answers')
    .option('--base-topic <topic>', 'base topic (default: bonsai)')
    .option('--json', 'print every reply message as one JSON line')
    .option('--system <text>', 'system text')
    .option('--max-tokens <n>', 'max tokens to generate', intOption('max-tokens', 1))
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', floatOption('temperature', 0, 5))
    .option('--seed <n>', 'sampling seed (default: a random one, sent with the request so a re-sent request gives the same answer)', intOption('seed', 0, 0xffffffff))
    .option('--think', "let the model reason first (Qwen3's thinking switch; sends the prompt as a chat message): the reasoning goes to stderr")
    .option('--no-stream', 'ask for the final answer only')
    .option('--timeout <seconds>', 'give up after this long', floatOption('timeout', 0.001, 86_400), 300)
    .action(async (prompt: string | undefined, flags: AskFlags) => {
      process.exitCode = await run(prompt, flags);
    });
}

async function run(promptArg: string | undefined, flags: AskFlags): Promise<number> {
  const prompt = promptArg === '-' ? await readStdin() : promptArg;
  if (!prompt) {
    console.error('bonsai ask: give a prompt, or - to read it from stdin');
    return 2;
  }
  const config = loadConfig({ file: flags.config, env: process.env, flags: { 'mqtt.url': flags.url, 'topics.node': flags.node, 'topics.base': flags.baseTopic } });
  const url = config.mqtt.url ?? `mqtt://127.0.0.1:${config.embedded.port}`;
  const timeoutMs = flags.timeout * 1000;
  try {
    const connection = await connectMqtt({ ...connectOptionsFrom(config, url, `-ask-${process.pid}`), timeoutMs });
    try {
      // Thinking is a switch of the chat template, which a plain prompt does not go through.
      const input = flags.think ? { messages: [{ role: 'user', content: prompt }], think: true } : { prompt };
      const request: Record<string, unknown> = { ...input, stream: flags.stream, seed: flags.seed ?? randomInt(2 ** 32) };
      if (flags.system !== undefined) request.system = flags.system;
      if (flags.maxTokens !== undefined) request.max_tokens = flags.maxTokens;
      if (flags.temperature !== undefined) request.temperature = flags.temperature;
      const printer = flags.json ? printJson : textPrinter();
      const final = await ask(connection, { base: config.topics.base, node: flags.fleet ? undefined : config.topics.node, request, timeoutMs, onReply: printer });
      if (final.type === 'error') {
        if (!flags.json) console.error(`bonsai ask: ${final.code}: ${final.message}`);
        return 1;
      }
      return 0;
    } finally {
      // The broker may be gone: a clean disconnect would never finish.
      await closeClient(connection.client, 1000);
    }
  } catch (err) {
    if (err instanceof AskTimeout || err instanceof ConnectError) {
      console.error(`bonsai ask: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

function printJson(reply: Reply): void {
  process.stdout.write(JSON.stringify(reply) + '\n');
}

/**
 * Streams the answer to stdout and the reasoning to stderr (dimmed on a terminal) as they come;
 * prints the final reply's text and reasoning only when nothing was streamed. When the daemon
 * starts a re-sent request over (it restarted mid-answer; the seed makes the text the same), what
 * was printed already is not printed again.
 */
function textPrinter(): (reply: Reply) => void {
  let streamed = false;
  let reasoned = false;
  const printed = { chunk: 0, thinking: 0 };
  const seen = { chunk: 0, thinking: 0 };
  const unprinted = (type: 'chunk' | 'thinking', text: string) => {
    const fresh = text.slice(Math.max(0, printed[type] - seen[type]));
    seen[type] += text.length;
    printed[type] = Math.max(printed[type], seen[type]);
    return fresh;
  };
  const reason = (text: string) => {
    reasoned = true;
    process.stderr.write(process.stderr.isTTY ? `${DIM}${text}${RESET}` : text);
  };
  const endReasoning = () => {
    if (reasoned) process.stderr.write('\n');
    reasoned = false;
  };
  return (reply) => {
    if (reply.type === 'start') {
      seen.chunk = seen.thinking = 0;
    } else if (reply.type === 'thinking') {
      streamed = true;
      const text = unprinted('thinking', reply.text);
      if (text) reason(text);
    } else if (reply.type === 'chunk') {
      streamed = true;
      const text = unprinted('chunk', reply.text);
      if (!text) return;
      endReasoning();
      process.stdout.write(text);
    } else if (reply.type === 'done') {
      if (!streamed && reply.thinking) reason(reply.thinking);
      endReasoning();
      // A final reply replayed without chunks (the request had finished) may hold text not yet printed.
      process.stdout.write((streamed ? reply.text.slice(printed.chunk) : reply.text) + '\n');
    }
  };
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of process.stdin) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
