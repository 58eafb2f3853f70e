// Chat templates against llama.cpp's token ids for a Qwen3 chat turn, the thinking switch, and the
// streaming <think> splitter; end to end on a synthetic Bonsai-1.7B-shaped model (one layer).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, opensThinking, ThinkSplitter, type ChatMessage, type ThinkPieces } from '../src/engine/chat.js';
import { CHATML_TEMPLATE } from '../src/gguf/chat-template.js';
import { Model } from '../src/engine/engine.js';
import { readGguf } from '../src/gguf/reader.js';
import { synthesize } from '../src/gguf/synth.js';
import { CLI, runCli } from './helpers/cli.js';
import { HAVE_FIXTURES, fixture } from './helpers/fixtures.js';
import { splitWholeOutput, synthesizeThinkingModel } from './helpers/thinking-model.js';

const VOCAB = fixture('qwen3-vocab/ggml-vocab-qwen3.gguf');

interface EncodeCase {
  text: string;
  parse_special: boolean;
  ids: number[];
}

/** llama.cpp's ids for a full Qwen3 turn (system, user, non-thinking assistant reply), specials parsed. */
function qwen3Turn(): EncodeCase {
  const cases = readFileSync(fixture('qwen3-vocab/encode_llamacpp.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EncodeCase);
  return cases.find((c) => c.parse_special && c.text.startsWith('<|im_start|>system'))!;
}

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Hello, who are you?' },
];
const REPLY = 'I am Qwen.';

describe.skipIf(!HAVE_FIXTURES)('Qwen3 chat template (from the real Qwen3 vocab GGUF)', () => {
  let template: ChatTemplate;
  beforeAll(() => {
    template = new ChatTemplate(readGguf(VOCAB).metadata['tokenizer.chat_template'] as string);
  });

  it('renders the generation prompt of a non-thinking turn as llama.cpp’s reference text', () => {
    const turn = qwen3Turn();
    const prompt = template.render(CONVERSATION);
    expect(prompt).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, who are you?<|im_end|>\n' +
        '<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
    expect(prompt + `${REPLY}<|im_end|>`).toBe(turn.text);
  });

  it('renders a finished conversation (no generation prompt) like the reference turn', () => {
    const text = template.render([...CONVERSATION, { role: 'assistant', content: REPLY }], { addGenerationPrompt: false });
    expect(text).toBe(`${qwen3Turn().text}\n`);
  });

  it('leaves the <think> block to the model when thinking is on', () => {
    const prompt = template.render(CONVERSATION, { enableThinking: true });
    expect(prompt.endsWith('<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n')).toBe(true);
    expect(opensThinking(prompt)).toBe(false);
  });

  it("drops an earlier reply's reasoning when the conversation goes on", () => {
    const prompt = template.render([
      ...CONVERSATION,
      { role: 'assistant', content: '<think>\nThe user greets me.\n</think>\n\nI am Qwen.' },
      { role: 'user', content: 'Thanks!' },
    ]);
    expect(prompt).toContain('<|im_start|>assistant\nI am Qwen.<|im_end|>\n<|im_start|>user\nThanks!<|im_end|>\n');
    expect(prompt).not.toContain('The user greets me');
  });
});

describe('ChatML fallback template', () => {
  it('renders messages and the assistant opening', () => {
    const text = new ChatTemplate(CHATML_TEMPLATE).render([{ role: 'user', content: 'Hi' }]);
    expect(text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  });

  it("passes a template's raise_exception on as an error", () => {
    const t = new ChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}ok");
    expect(() => t.render([{ role: 'assistant', content: 'x' }])).toThrow('roles must alternate');
  });

  it('refuses an empty conversation', () => {
    expect(() => new ChatTemplate(CHATML_TEMPLATE).render([])).toThrow(/at least one message/);
  });
});

describe('ThinkSplitter', () => {
  const OUTPUT = '<think>\nLet me think.\nTwo lines.\n</think>\n\nThe answer.';

  /** Feeds the text in pieces of `size` characters and joins what comes out. */
  function split(text: string, size: number, startInThinking = false): ThinkPieces {
    const s = new ThinkSplitter(startInThinking);
    const out = { thinking: '', answer: '' };
    for (let i = 0; i < text.length; i += size) {
      const p = s.push(text.slice(i, i + size));
      out.thinking += p.thinking;
      out.answer += p.answer;
    }
    const p = s.flush();
    return { thinking: out.thinking + p.thinking, answer: out.answer + p.answer };
  }

  for (const size of [1, 2, 3, 7, 1000]) {
    it(`separates reasoning from the answer, fed ${size} character(s) at a time`, () => {
      expect(split(OUTPUT, size)).toEqual({ thinking: 'Let me think.\nTwo lines.', answer: 'The answer.' });
    });
  }

  it('passes output without a think block through as the answer', () => {
    expect(split('Hello <think> is only a tag here.', 1)).toEqual({ thinking: '', answer: 'Hello <think> is only a tag here.' });
  });

  it('starts inside the reasoning when the prompt opened the block', () => {
    expect(split('Reasoning.\n</think>\n\nAnswer.', 1, true)).toEqual({ thinking: 'Reasoning.', answer: 'Answer.' });
  });

  it('keeps an unfinished reasoning out of the answer', () => {
    expect(split('<think>\nStill thinking when the tokens ran out\n\n</thi', 2)).toEqual({
      thinking: 'Still thinking when the tokens ran out\n\n</thi',
      answer: '',
    });
  });

  it('emits text as soon as it cannot be part of a tag', () => {
    const s = new ThinkSplitter();
    expect(s.push('<thi')).toEqual({ thinking: '', answer: '' });
    expect(s.push('nk>\nStep one')).toEqual({ thinking: 'Step one', answer: '' });
    expect(s.push('\n</')).toEqual({ thinking: '', answer: '' });
    expect(s.push('b> is markup')).toEqual({ thinking: '\n</b> is markup', answer: '' });
  });

  it('finds the reasoning in a prompt that leaves <think> open', () => {
    expect(opensThinking('<|im_start|>assistant\n<think>\n')).toBe(true);
    expect(opensThinking('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(false);
    expect(opensThinking('<|im_start|>assistant\n')).toBe(false);
  });
});

describe.skipIf(!HAVE_FIXTURES)('chat on a synthetic Bonsai-1.7B-shaped model (1 layer, real Qwen3 vocab)', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-chat-'));
  const file = path.join(tmp, 'bonsai-1.7b-1layer.gguf');
  let model: Model;
  beforeAll(async () => {
    await synthesize(file, { shape: '1.7b', layers: 1, vocabFrom: VOCAB, seed: 7 });
    model = await Model.load(file, { threads: 2, contextSize: 256 });
  }, 120_000);
  afterAll(() => {
    model?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("tokenizes the rendered chat to llama.cpp's ids", () => {
    const turn = qwen3Turn();
    const { text, ids } = model.chatPrompt(CONVERSATION);
    expect(text + `${REPLY}<|im_end|>`).toBe(turn.text);
    expect(ids).toEqual(turn.ids.slice(0, ids.length));
    // Only the reply's own tokens follow: the prompt ends exactly at "</think>\n\n".
    expect(turn.ids.slice(ids.length)).toEqual(model.tokenizer.encode(`${REPLY}<|im_end|>`, { addSpecial: false, parseSpecial: true }));
  });

  it('generates a chat reply with no reasoning in it, and returns no thinking when it is off', async () => {
    const r = await model.generate({ messages: CONVERSATION, maxTokens: 6, sampling: { temperature: 0 } });
    expect(r.promptIds).toEqual(model.chatPrompt(CONVERSATION).ids);
    expect(r.ids.length).toBeGreaterThan(0);
    expect(r.text).not.toContain('<think>');
    expect(r.thinking).toBeUndefined();
  });

  it('renders the next turn on top of the same tokens, so the engine can keep their KV cache', async () => {
    const first = await model.generate({ messages: CONVERSATION, maxTokens: 4, sampling: { temperature: 0 } });
    const next = model.chatPrompt([...CONVERSATION, { role: 'assistant', content: first.text }, { role: 'user', content: 'Thanks!' }]).ids;
    let common = 0;
    while (common < first.promptIds.length && first.promptIds[common] === next[common]) common++;
    // Everything up to "<|im_start|>assistant\n": Qwen3's template drops the empty think block of
    // earlier replies, so only those 4 tokens and the reply itself are evaluated again.
    expect(common).toBe(first.promptIds.length - 4);
  });

  it('generates the requested number of tokens when end-of-generation is ignored', async () => {
    const r = await model.generate({ promptIds: [151644], maxTokens: 5, ignoreEog: true, sampling: { temperature: 0 } });
    expect(r.ids).toHaveLength(5);
    expect(r.finishReason).toBe('length');
  });
});

describe.skipIf(!HAVE_FIXTURES)('thinking on real generations (synthetic Qwen3 shape whose template opens <think>)', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-think-'));
  const file = path.join(tmp, 'thinking.gguf');
  const ASK: ChatMessage[] = [{ role: 'user', content: 'Why is the sky blue?' }];
  const greedy = { maxTokens: 24, sampling: { temperature: 0 } };
  let model: Model;
  beforeAll(async () => {
    await synthesizeThinkingModel(file);
    model = await Model.load(file, { threads: 2, contextSize: 256 });
  }, 120_000);
  afterAll(() => {
    model?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** The same prompt's tokens generated and decoded without any splitting. */
  const unsplit = (enableThinking: boolean) => model.generate({ promptIds: model.chatPrompt(ASK, enableThinking).ids, ...greedy });

  it('the template opens the reasoning when thinking is on and closes it empty when off', () => {
    expect(model.chatPrompt(ASK, true).text.endsWith('<|im_start|>assistant\n<think>\n')).toBe(true);
    expect(model.chatPrompt(ASK, false).text.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
  });

  it('thinking on: the reasoning streams through onThinking and comes back in thinking, never in text', async () => {
    const thoughts: string[] = [];
    const answer: string[] = [];
    const r = await model.generate({ messages: ASK, enableThinking: true, ...greedy }, { onThinking: (t) => thoughts.push(t), onText: (t) => answer.push(t) });
    const raw = await unsplit(true);
    expect(r.ids).toEqual(raw.ids);
    const expected = splitWholeOutput(raw.text);
    expect(expected.thinking.length).toBeGreaterThan(10);
    expect(r.thinking).toBe(expected.thinking);
    expect(r.text).toBe(expected.answer);
    expect(thoughts.length).toBeGreaterThan(1);
    expect(thoughts.join('')).toBe(r.thinking);
    expect(answer.join('')).toBe(r.text);
    expect(r.text).not.toContain('<think>');
  });

  it('thinking off: everything generated is the answer and no reasoning is reported', async () => {
    const thoughts: string[] = [];
    const r = await model.generate({ messages: ASK, ...greedy }, { onThinking: (t) => thoughts.push(t) });
    const raw = await unsplit(false);
    expect(r.ids).toEqual(raw.ids);
    expect(raw.text.trimStart().startsWith('<think>')).toBe(false);
    expect(r.text).toBe(raw.text.trimStart());
    expect(r.text).not.toBe('');
    expect(r.thinking).toBeUndefined();
    expect(thoughts).toEqual([]);
  });
});

describe.skipIf(!HAVE_FIXTURES)('bonsai run --chat and bonsai chat (synthetic 1.7B shape, 1 layer)', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bonsai-chat-cli-'));
  const file = path.join(tmp, 'bonsai-1.7b-1layer.gguf');
  beforeAll(() => synthesize(file, { shape: '1.7b', layers: 1, vocabFrom: VOCAB, seed: 7 }), 120_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("bonsai run --system renders the chat and prompts with llama.cpp's ids", async () => {
    const args = ['run', '-m', file, '-c', '128', '-t', '1', '--temp', '0', '-n', '2', '--json'];
    const r = await runCli([...args, '--system', CONVERSATION[0]!.content, '-p', CONVERSATION[1]!.content]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { prompt_tokens: number[]; tokens: number[] };
    expect(out.prompt_tokens).toEqual(qwen3Turn().ids.slice(0, 29));
    expect(out.tokens).toHaveLength(2);
    // --chat alone: the user turn without a system message.
    const plain = JSON.parse((await runCli([...args, '--chat', '-p', 'Hi'])).stdout) as { prompt_tokens: number[] };
    expect(plain.prompt_tokens.slice(0, 3)).toEqual([151644, 872, 198]); // <|im_start|>user\n
  });

  it('bonsai chat answers each piped line, and /reset and /exit work', async () => {
    const r = await chatCli(['chat', '-m', file, '-c', '256', '-t', '1', '--temp', '0', '-n', '3'], 'Hello\n/reset\nAgain\n/exit\nnot read\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').length).toBeGreaterThanOrEqual(3);
  });
});

/** Runs the CLI with text on stdin. */
function chatCli(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(input);
  });
}
