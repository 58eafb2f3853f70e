// The reply messages of the MQTT protocol, as the daemon sends them and clients read them: in
// order on one topic, `start`, then `chunk`/`thinking` pieces, then exactly one of `done` or `error`.

export type ErrorCode = 'bad_request' | 'too_large' | 'busy' | 'cancelled' | 'timeout' | 'interrupted' | 'model_error' | 'internal';

export interface DoneBody {
  text: string;
  /** The whole reasoning; present only when the request asked for thinking. */
  thinking?: string;
  /**
   * stop: end of text or a stop string; length: max_tokens; context: the context is full;
   * timeout: the request's deadline or limits.maxRunMs; cancelled: a cancel or the shutdown.
   */
  finish_reason: 'stop' | 'length' | 'context' | 'timeout' | 'cancelled';
  /** The sampling seed: sending it back with the same request reproduces the answer. */
  seed: number;
  usage: { prompt_tokens: number; completion_tokens: number };
  /**
   * cached_tokens: prompt tokens whose KV came from the prefix cache (not evaluated); cached: the
   * whole answer was recalled from the answer cache.
   */
  timings: { queue_ms: number; ttft_ms: number; tokens_per_s: number; cached_tokens: number; cached?: boolean; drafted_tokens?: number; accepted_tokens?: number };
}

/** A piece of the answer, or of the reasoning; each kind numbers its own chunks from 0. */
export type ChunkType = 'chunk' | 'thinking';

export type Reply =
  | { id: string; type: 'start'; [extra: string]: unknown }
  | { id: string; type: ChunkType; seq: number; text: string }
  | ({ id: string; type: 'done' } & DoneBody)
  | { id: string; type: 'error'; code: ErrorCode; message: string };

export type DoneReply = Extract<Reply, { type: 'done' }>;
export type ErrorReply = Extract<Reply, { type: 'error' }>;

export function isFinalReply(reply: Reply): boolean {
  return reply.type === 'done' || reply.type === 'error';
}
