// The sampling defaults: the one place they are written. The engine fills a request's missing
// fields from here, the daemon's config schema and the CLI options take their defaults from here,
// and the native addon has none of its own (it requires every field).
import type { SamplingParams } from '../native.js';

export type { SamplingParams } from '../native.js';

export const SAMPLING_DEFAULTS: Readonly<SamplingParams> = Object.freeze({
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1.0,
  repeatLastN: 64,
  seed: 0,
});
