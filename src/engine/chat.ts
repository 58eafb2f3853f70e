// Chat requests: the model's own Jinja chat template rendered from messages (as transformers and
// llama.cpp do), and Qwen3-style <think>…</think> reasoning split from the answer while it streams.
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

export interface ChatRenderOptions {
  /** End with the opening of an assistant turn (default true). */
  addGenerationPrompt?: boolean;
  /**
   * Qwen3's thinking switch (default false: on small devices a long hidden monologue costs more
   * than it helps). Templates without the switch ignore it.
   */
  enableThinking?: boolean;
}

/**
 * Why a model cannot reason before answering, or undefined when it can: the thinking switch is a
 * variable of the chat template, and a base model has none.
 */
export function cannotThink(chatTemplate: string | undefined): string | undefined {
  return chatTemplate ? undefined : 'this model has no chat template (a base model), so it cannot think';
}

export class ChatTemplate {
  private readonly template: Template;

  /** Parses once: a 4 KB template takes milliseconds to parse, too long to repeat per request. */
  constructor(
    readonly source: string,
    private readonly specials: { bosToken?: string; eosToken?: string } = {},
  ) {
    this.template = new Template(source);
  }

  render(messages: ChatMessage[], { addGenerationPrompt = true, enableThinking = false }: ChatRenderOptions = {}): string {
    if (messages.length === 0) throw new Error('a chat needs at least one message');
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      enable_thinking: enableThinking,
      bos_token: this.specials.bosToken ?? '',
      eos_token: this.specials.eosToken ?? '',
    });
  }
}

/**
 * True when a rendered prompt leaves a <think> block open, i.e. the template itself starts the
 * reasoning and the model's output begins inside it.
 */
export function opensThinking(prompt: string): boolean {
  return prompt.lastIndexOf(THINK_OPEN) > prompt.lastIndexOf(THINK_CLOSE);
}

export interface ThinkPieces {
  thinking: string;
  answer: string;
}

const THINK_OPEN = '<think>';
const THINK_CLOSE = '</think>';

type SplitState = 'before' | 'thinkStart' | 'thinking' | 'answerStart' | 'answer';

/**
 * Splits streamed model output into reasoning and answer. A <think> block is recognised only at the
 * start of the output (after whitespace); the newlines the template puts around the reasoning and
 * before the answer are dropped, as Qwen3's template does when it re-renders a reply. Text that
 * might be the start of a tag is held back until the next piece decides it.
 */
export class ThinkSplitter {
  private state: SplitState;
  private pending = '';

  constructor(startInThinking = false) {
    this.state = startInThinking ? 'thinkStart' : 'before';
  }

  push(text: string): ThinkPieces {
    this.pending += text;
    const out: ThinkPieces = { thinking: '', answer: '' };
    while (this.step(out));
    return out;
  }

  /** Ends the stream with its last text: whatever is held back is released as it stands. */
  flush(text = ''): ThinkPieces {
    const out = this.push(text);
    const rest = this.pending;
    this.pending = '';
    if (this.state === 'thinking') out.thinking += rest.replace(/\n+$/, '');
    else if (this.state === 'answer' || this.state === 'before') out.answer += rest.trimStart();
    return out;
  }

  /** One state transition; false when it needs more text. */
  private step(out: ThinkPieces): boolean {
    switch (this.state) {
      case 'before': {
        const head = this.pending.trimStart();
        if (head.startsWith(THINK_OPEN)) return this.enter('thinkStart', head.slice(THINK_OPEN.length));
        if (THINK_OPEN.startsWith(head)) return false;
        return this.enter('answer', head);
      }
      case 'thinkStart':
        return this.skipLeading(/^\n+/, 'thinking');
      case 'thinking': {
        const at = this.pending.indexOf(THINK_CLOSE);
        if (at >= 0) {
          out.thinking += this.pending.slice(0, at).replace(/\n+$/, '');
          return this.enter('answerStart', this.pending.slice(at + THINK_CLOSE.length));
        }
        const cut = heldTail(this.pending);
        out.thinking += this.pending.slice(0, this.pending.length - cut);
        this.pending = this.pending.slice(this.pending.length - cut);
        return false;
      }
      case 'answerStart':
        return this.skipLeading(/^\s+/, 'answer');
      case 'answer':
        out.answer += this.pending;
        this.pending = '';
        return false;
    }
  }

  private enter(state: SplitState, pending: string): boolean {
    this.state = state;
    this.pending = pending;
    return true;
  }

  /** Drops leading text matching `re`; moves on once something else has arrived. */
  private skipLeading(re: RegExp, next: SplitState): boolean {
    const rest = this.pending.replace(re, '');
    if (rest === '') {
      this.pending = '';
      return false;
    }
    return this.enter(next, rest);
  }
}

/** Length of the tail that could still become "\n…\n</think>": newlines, then a prefix of the tag. */
function heldTail(s: string): number {
  let k = Math.min(THINK_CLOSE.length - 1, s.length);
  while (!THINK_CLOSE.startsWith(s.slice(s.length - k))) k--;
  let start = s.length - k;
  while (start > 0 && s[start - 1] === '\n') start--;
  return s.length - start;
}
