// A real model whose replies are reasoning when thinking is on: a synthetic Qwen3 shape (random
// weights, real Qwen3 vocabulary) with Qwen3's own chat template changed to open the <think> block
// itself when thinking is on, as Qwen3-Thinking-2507's template does. Random weights never write
// <think> on their own; with the block opened by the prompt, everything the model generates is
// reasoning (up to a "</think>"), so the engine's split can be checked on real generations.
import { readGguf } from '../../src/gguf/reader.js';
import { synthesize } from '../../src/gguf/synth.js';
import { fixture } from './fixtures.js';

export const QWEN3_VOCAB = fixture('qwen3-vocab/ggml-vocab-qwen3.gguf');

const NO_THINKING = "{{- '<think>\\n\\n</think>\\n\\n' }}";

/** Qwen3's template, writing "<think>\n" after the assistant opening when thinking is on. */
export function thinkingTemplate(): string {
  const qwen3 = readGguf(QWEN3_VOCAB).metadata['tokenizer.chat_template'] as string;
  if (!qwen3.includes(NO_THINKING)) throw new Error("the Qwen3 template no longer has the expected thinking switch");
  return qwen3.replace(NO_THINKING, `${NO_THINKING}\n    {%- else %}\n        {{- '<think>\\n' }}`);
}

/** Writes the model (the 'tiny' shape, one layer: it loads in well under a second). */
export async function synthesizeThinkingModel(file: string): Promise<void> {
  await synthesize(file, { shape: 'tiny', layers: 1, vocabFrom: QWEN3_VOCAB, chatTemplate: thinkingTemplate(), seed: 11 });
}

/**
 * The oracle of the split for a whole output generated after "<think>\n": the reasoning is the text
 * before the first "</think>" without the newlines around it; the answer is what follows, without
 * its leading whitespace (Qwen3's own formatting of a reply).
 */
export function splitWholeOutput(raw: string): { thinking: string; answer: string } {
  const close = raw.indexOf('</think>');
  const reasoning = close < 0 ? raw : raw.slice(0, close);
  return {
    thinking: reasoning.replace(/^\n+/, '').replace(/\n+$/, ''),
    answer: close < 0 ? '' : raw.slice(close + '</think>'.length).trimStart(),
  };
}
