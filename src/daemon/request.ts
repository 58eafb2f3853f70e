// Turning an MQTT message into a validated request, or into a precise error for its sender.
// Nothing here throws: every payload, however broken, becomes either a Request or a Rejection that
// still knows where to send its error reply.
import { randomInt, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { cannotThink } from '../engine/chat.js';
import type { ChatMessage, GenerateRequest, SamplingParams } from '../engine/engine.js';
import type { ErrorCode } from '../protocol/messages.js';
import type { DaemonConfig } from './config.js';


/** Where and how replies for one request go. */
export interface ReplyRoute {
  id: string;
  topic: string;
  /** MQTT 5 correlation data, echoed byte-for-byte. */
  correlationData?: Buffer;
}

export interface Request {
  route: ReplyRoute;
  input: { prompt: string } | { messages: ChatMessage[] };
  system?: string;
  /** Sampling always has a seed (a fresh one when the request gave none), so an answer can be reproduced. */
  options: Pick<GenerateRequest, 'maxTokens' | 'stop' | 'draft'> & { sampling: Partial<SamplingParams> & { seed: number } };
  /** Qwen3's thinking switch: reason first, the reasoning replied apart from the answer (chat only). */
  think: boolean;
  /** Greedy, or sampled with a seed the sender chose: the same request gives the same answer. */
  deterministic: boolean;
  stream: boolean;
  priority: number;
  /** Absolute time (ms since epoch) after which the request ends with `timeout`. */
  deadline?: number;
  receivedAt: number;
}

export interface Rejection {
  route: ReplyRoute;
  code: ErrorCode;
  message: string;
}

export interface IncomingMessage {
  payload: Buffer;
  responseTopic?: string;
  correlationData?: Buffer;
}

/** What the receiving topic implies (e.g. Home Assistant prompts answer on a fixed topic). */
export interface TopicDefaults {
  replyTopic?: string;
  stream?: boolean;
}

/** The model facts the rendering depends on. */
export interface ModelTraits {
  chatTemplate: string | undefined;
}

const MAX_ID = 128;
const topicName = z
  .string()
  .min(1)
  .max(512)
  .refine((t) => !/[+#\0]/.test(t) && !t.startsWith('$'), 'must be a topic name without wildcards, NUL or a leading $');

const idSchema = z.string().min(1).max(MAX_ID).refine((s) => !/[/+#\0]/.test(s), 'must not contain / + # or NUL');

const requestSchema = z
  .strictObject({
    id: idSchema,
    prompt: z.string(),
    messages: z
      .array(z.strictObject({ role: z.enum(['system', 'user', 'assistant', 'tool']), content: z.string() }))
      .min(1)
      .max(1000),
    system: z.string(),
    max_tokens: z.number().int().min(1),
    temperature: z.number().min(0).max(5),
    top_p: z.number().min(0).max(1),
    top_k: z.number().int().min(0).max(1_000_000),
    min_p: z.number().min(0).max(1),
    seed: z.number().int().min(0).max(0xffffffff),
    stop: z.array(z.string().min(1).max(256)).max(16),
    think: z.boolean(),
    draft: z.number().int().min(0).max(64),
    stream: z.boolean(),
    reply_to: topicName,
    priority: z.number().int().min(-100).max(100),
    deadline_ms: z.number().int().min(1).max(86_400_000),
  })
  .partial()
  .refine((r) => (r.prompt === undefined) !== (r.messages === undefined), 'give exactly one of "prompt" or "messages"')
  // A prompt is completed as plain text, never through the chat template that holds the switch:
  // accepting think there would promise reasoning that cannot come.
  .refine((r) => !(r.think && r.prompt !== undefined), {
    path: ['think'],
    message: 'thinking applies to chat requests: send "messages" instead of "prompt"',
  });

type RequestBody = z.infer<typeof requestSchema>;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parseRequest(
  msg: IncomingMessage,
  config: DaemonConfig,
  defaultTopic: (id: string) => string,
  topicDefaults: TopicDefaults = {},
  now = Date.now(),
): Request | Rejection {
  const fallbackRoute = (body?: { id?: unknown; reply_to?: unknown }): ReplyRoute =>
    routeFor(msg, body, defaultTopic, topicDefaults);
  if (msg.payload.length > config.limits.maxPayloadBytes) {
    return reject(fallbackRoute(), 'too_large', `payload is ${msg.payload.length} bytes, the limit is ${config.limits.maxPayloadBytes}`);
  }
  let text: string;
  try {
    text = utf8.decode(msg.payload);
  } catch {
    return reject(fallbackRoute(), 'bad_request', 'payload is not valid UTF-8');
  }
  const body = decodeBody(text);
  if ('error' in body) return reject(fallbackRoute(), 'bad_request', body.error);
  const parsed = requestSchema.safeParse(body.value);
  if (!parsed.success) {
    return reject(fallbackRoute(looseFields(body.value)), 'bad_request', `invalid request: ${describeIssues(parsed.error)}`);
  }
  const r = parsed.data;
  if (r.max_tokens !== undefined && r.max_tokens > config.limits.maxTokens) {
    return reject(fallbackRoute(r), 'too_large', `max_tokens ${r.max_tokens} exceeds the limit ${config.limits.maxTokens}`);
  }
  return {
    route: fallbackRoute(r),
    input: r.messages ? { messages: r.messages } : { prompt: r.prompt ?? '' },
    ...(r.system !== undefined ? { system: r.system } : {}),
    options: generationOptions(r, config),
    think: r.think ?? false,
    deterministic: r.seed !== undefined || (r.temperature ?? config.sampling.temperature) === 0,
    stream: r.stream ?? topicDefaults.stream ?? true,
    priority: r.priority ?? 0,
    deadline: r.deadline_ms !== undefined ? now + r.deadline_ms : undefined,
    receivedAt: now,
  };
}

/**
 * Plain text is a prompt with defaults; text starting with "{" must be a JSON request. The rule is
 * simple on purpose: a prompt that happens to look like JSON is still sent as {"prompt": ...}.
 */
function decodeBody(text: string): { value: unknown } | { error: string } {
  if (!text.trimStart().startsWith('{')) {
    return text.trim() === '' ? { error: 'empty prompt' } : { value: { prompt: text } };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: `payload starts with "{" but is not valid JSON: ${(err as Error).message}` };
  }
}

/** The id and reply_to of an invalid request are still honoured when they themselves are valid. */
function looseFields(value: unknown): { id?: string; reply_to?: string } {
  const v = value as Record<string, unknown>;
  const id = idSchema.safeParse(v.id);
  const replyTo = topicName.safeParse(v.reply_to);
  return { id: id.success ? id.data : undefined, reply_to: replyTo.success ? replyTo.data : undefined };
}

/** MQTT 5 Response Topic and Correlation Data take precedence over reply_to and id. */
function routeFor(
  msg: IncomingMessage,
  body: { id?: unknown; reply_to?: unknown } | undefined,
  defaultTopic: (id: string) => string,
  topicDefaults: TopicDefaults,
): ReplyRoute {
  const id = idFromCorrelation(msg.correlationData) ?? (typeof body?.id === 'string' ? body.id : randomUUID());
  // Brokers check Response Topic syntax, but not our rule against $-topics: an unusable one is ignored.
  const responseTopic = topicName.safeParse(msg.responseTopic).success ? msg.responseTopic : undefined;
  const topic = responseTopic ?? (typeof body?.reply_to === 'string' ? body.reply_to : undefined) ?? topicDefaults.replyTopic ?? defaultTopic(id);
  return msg.correlationData ? { id, topic, correlationData: msg.correlationData } : { id, topic };
}

/** Correlation data is binary; as an id it is its text when that is a usable id, else its hex. */
function idFromCorrelation(data: Buffer | undefined): string | undefined {
  if (!data || data.length === 0) return undefined;
  try {
    const text = utf8.decode(data);
    if (idSchema.safeParse(text).success) return text;
  } catch {
    // not UTF-8: fall through to hex
  }
  return data.toString('hex').slice(0, MAX_ID);
}

function generationOptions(r: RequestBody, config: DaemonConfig): Request['options'] {
  const s = config.sampling;
  const sampling = {
    temperature: r.temperature ?? s.temperature,
    topP: r.top_p ?? s.topP,
    topK: r.top_k ?? s.topK,
    minP: r.min_p ?? s.minP,
    seed: r.seed ?? randomInt(2 ** 32),
  };
  const draft = r.draft ?? config.model.draftTokens;
  return { maxTokens: r.max_tokens ?? Math.min(s.maxTokens, config.limits.maxTokens), sampling, draft, ...(r.stop ? { stop: r.stop } : {}) };
}

/**
 * The one place that decides what the engine sees. Chat messages go through the model's chat
 * template when it has one; otherwise (base models) the text is completed as is: the message
 * contents joined by blank lines. A prompt is always plain completion. `system` comes first. The
 * thinking switch lives in the template, so it goes only with templated chats (modelCannotServe
 * refuses the other cases).
 */
export function renderForModel(req: Pick<Request, 'input' | 'system' | 'options' | 'think'>, model: ModelTraits): GenerateRequest {
  const { input, system, options } = req;
  if ('messages' in input && model.chatTemplate) {
    const messages = system !== undefined ? [{ role: 'system' as const, content: system }, ...input.messages] : input.messages;
    return { ...options, messages, enableThinking: req.think };
  }
  const parts = 'messages' in input ? input.messages.map((m) => m.content) : [input.prompt];
  return { ...options, prompt: (system !== undefined ? [system, ...parts] : parts).join('\n\n') };
}

/**
 * Why a valid request cannot run on this model, or undefined when it can. Checked before queueing
 * so the sender gets bad_request at once rather than a plain completion without the reasoning.
 */
export function modelCannotServe(req: Pick<Request, 'think'>, model: ModelTraits): string | undefined {
  const why = req.think ? cannotThink(model.chatTemplate) : undefined;
  return why && `${why}: send the request without "think"`;
}

function reject(route: ReplyRoute, code: ErrorCode, message: string): Rejection {
  return { route, code, message };
}

export function isRejection(r: Request | Rejection): r is Rejection {
  return 'code' in r;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const where = i.path.length ? i.path.join('.') : 'request';
      return i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}` : `${where}: ${i.message}`;
    })
    .join('; ');
}
