// The engine's JavaScript boundary on a real model (stories260K): streaming, cancellation,
// stop strings, errors, and inference off the main thread. Expected text comes from run.c.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type GenerateResult } from '../src/engine/engine.js';
import { EngineError } from '../src/errors.js';
import { HAVE_FIXTURES, fixture, readJson } from './helpers/fixtures.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BUNDLED_MODEL } from '../src/bundled.js';
import { synthesize } from '../src/gguf/synth.js';

interface Golden {
  prompt: string;
  text: string;
  tokens: number[];
}

describe.skipIf(!HAVE_FIXTURES)('Model on stories260K', () => {
  let model: Model;
  const golden = () => readJson<Golden>('stories260K/golden/greedy_once_upon_a_time_n64.json');
  const greedy = { temperature: 0 };

  beforeAll(async () => {
    model = await Model.load(fixture('stories260K/stories260K.gguf'), { threads: 1, contextSize: 512 });
  });
  afterAll(() => model?.close());

  it('streams text pieces before the generation resolves, adding up to the result', async () => {
    const pieces: string[] = [];
    let resolved = false;
    const pending = model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: greedy }, { onText: (t) => pieces.push(t) });
    pending.then(() => (resolved = true), () => undefined);
    const result = await pending;
    expect(resolved).toBe(true);
    expect(pieces.length).toBeGreaterThan(10);
    expect(pieces.join('')).toBe(result.text);
    expect(result.text).toBe(golden().text.slice(golden().prompt.length));
    expect([...result.promptIds, ...result.ids]).toEqual(golden().tokens);
  });

  it('keeps the event loop free while a generation runs on a worker thread', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      for (let i = 0; i < 3; i++) await model.generate({ prompt: '', maxTokens: 500, sampling: greedy });
    } finally {
      clearInterval(timer);
    }
    // Blocking inference would let the timer fire only between the three calls.
    expect(ticks).toBeGreaterThan(20);
  });

  it('stops between tokens when the signal aborts, and reports cancelled', async () => {
    const controller = new AbortController();
    let pieces = 0;
    const result = await model.generate(
      { prompt: 'Once upon a time', maxTokens: 400, sampling: greedy },
      {
        signal: controller.signal,
        onText: () => {
          if (++pieces === 5) controller.abort();
        },
      },
    );
    expect(result.finishReason).toBe('cancelled');
    expect(result.ids.length).toBeLessThan(400);
    expect(result.ids.length).toBeGreaterThanOrEqual(5);
    // The next request is unaffected by the earlier cancel.
    const next = await model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: greedy });
    expect(next.finishReason).toBe('length');
    expect(next.text).toBe(golden().text.slice(golden().prompt.length));
  });

  it('does not start when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const result = await model.generate({ prompt: 'Once upon a time', maxTokens: 50, sampling: greedy }, { signal: controller.signal });
    expect(result.finishReason).toBe('cancelled');
    expect(result.ids.length).toBeLessThanOrEqual(1);
  });

  it('ends at a stop string and leaves it out of the text', async () => {
    const pieces: string[] = [];
    const result = await model.generate(
      { prompt: 'Once upon a time', maxTokens: 60, sampling: greedy, stop: ['Lily'] },
      { onText: (t) => pieces.push(t) },
    );
    const expected = golden().text.slice(golden().prompt.length);
    expect(result.finishReason).toBe('stop');
    expect(result.text).toBe(expected.slice(0, expected.indexOf('Lily')));
    expect(pieces.join('')).toBe(result.text);
  });

  it('refuses a second generation while one runs (busy), then works again', async () => {
    const first = model.generate({ prompt: '', maxTokens: 200, sampling: greedy });
    await expect(model.generate({ prompt: 'x', maxTokens: 5 })).rejects.toMatchObject({ code: 'busy' });
    await first;
    const after = await model.generate({ prompt: 'Once upon a time', maxTokens: 3, sampling: greedy });
    expect(after.ids).toEqual(golden().tokens.slice(5, 8));
  });

  it('refuses a prompt longer than the context with too_large', async () => {
    const long = 'Once upon a time '.repeat(200);
    await expect(model.generate({ prompt: long, maxTokens: 1 })).rejects.toBeInstanceOf(EngineError);
    await expect(model.generate({ prompt: long, maxTokens: 1 })).rejects.toMatchObject({ code: 'too_large' });
  });

  it('gives the same greedy tokens after the thread count changes', async () => {
    model.setThreads(2);
    const result = await model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: greedy });
    model.setThreads(1);
    expect([...result.promptIds, ...result.ids]).toEqual(golden().tokens);
  });

  it('gives the same greedy text with speculative decoding, and counts its drafts', async () => {
    const result = await model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: greedy, draft: 8 });
    expect([...result.promptIds, ...result.ids]).toEqual(golden().tokens);
    expect(result.timings.acceptedTokens).toBeLessThanOrEqual(result.timings.draftedTokens);
    await expect(model.generate({ prompt: 'x', maxTokens: 2, draft: 300 })).rejects.toThrow(/draft length 300/);
  });

  it('samples reproducibly for a seed', async () => {
    const request = { prompt: 'Once upon a time', maxTokens: 40, sampling: { temperature: 1, seed: 7 } };
    const a = await model.generate(request);
    const b = await model.generate(request);
    const c = await model.generate({ ...request, sampling: { temperature: 1, seed: 8 } });
    expect(b.ids).toEqual(a.ids);
    expect(c.ids).not.toEqual(a.ids);
  });
});

describe.skipIf(!HAVE_FIXTURES)('Model decoding several generations together', () => {
  let model: Model;
  const golden = () => readJson<Golden>('stories260K/golden/greedy_once_upon_a_time_n64.json');

  beforeAll(async () => {
    model = await Model.load(fixture('stories260K/stories260K.gguf'), { threads: 2, contextSize: 256, parallel: 3 });
  });
  afterAll(() => model?.close());

  it('gives each generation running at once the tokens it gets alone, and refuses one more (busy)', async () => {
    const requests = [
      { prompt: 'Once upon a time', maxTokens: 60, sampling: { temperature: 0 } },
      { prompt: 'Lily and Ben went to the park', maxTokens: 40, sampling: { temperature: 0.8, seed: 3 } },
      { prompt: 'The cat', maxTokens: 7, sampling: { temperature: 1, seed: 11 } },
    ];
    const alone: GenerateResult[] = [];
    for (const r of requests) alone.push(await model.generate(r));
    expect([...alone[0]!.promptIds, ...alone[0]!.ids]).toEqual(golden().tokens);
    const together = requests.map((r) => model.generate(r));
    await expect(model.generate({ prompt: 'x', maxTokens: 2 })).rejects.toMatchObject({ code: 'busy' });
    const results = await Promise.all(together);
    results.forEach((r, i) => {
      expect(r.ids).toEqual(alone[i]!.ids);
      expect(r.text).toBe(alone[i]!.text);
    });
  });

  it('starts a generation while others run, and cancels one without stopping the rest', async () => {
    const reference = await model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: { temperature: 0 } });
    const controller = new AbortController();
    const long = model.generate({ prompt: 'Once upon a time', maxTokens: 60, sampling: { temperature: 0 } });
    const cancelled = model.generate({ prompt: 'One day', maxTokens: 200, sampling: { temperature: 0 } }, { signal: controller.signal });
    let pieces = 0;
    const late = model.generate(
      { prompt: 'Once upon a time', maxTokens: 60, sampling: { temperature: 0 } },
      { onText: () => ++pieces === 3 && controller.abort() },
    );
    const [a, b, c] = await Promise.all([long, cancelled, late]);
    expect(b.finishReason).toBe('cancelled');
    expect(a.ids).toEqual(reference.ids);
    expect(c.ids).toEqual(reference.ids);
  });
});

describe.skipIf(!HAVE_FIXTURES)('Model with a draft model', () => {
  it('keeps greedy output when the bundled model drafts for its stories260K teacher, and accepts some drafts', async () => {
    const plain = await Model.load(fixture('stories260K/stories260K.gguf'), { threads: 1, contextSize: 256 });
    const drafted = await Model.load(fixture('stories260K/stories260K.gguf'), { threads: 1, contextSize: 256, draftModel: BUNDLED_MODEL });
    try {
      let drafts = 0;
      let accepted = 0;
      for (const prompt of ['Once upon a time', 'Lily and Ben', 'The little dog']) {
        const request = { prompt, maxTokens: 120, sampling: { temperature: 0 } };
        const a = await plain.generate(request);
        const b = await drafted.generate({ ...request, draft: 6 });
        expect(b.ids).toEqual(a.ids);
        drafts += b.timings.draftedTokens;
        accepted += b.timings.acceptedTokens;
      }
      expect(drafts).toBeGreaterThan(0);
      expect(accepted).toBeGreaterThan(0);
    } finally {
      plain.close();
      drafted.close();
    }
  });

  it('refuses a draft model of another vocabulary, saying so', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bonsai-draft-'));
    try {
      const other = path.join(dir, 'qwen-vocab.gguf');
      await synthesize(other, { shape: 'tiny', layers: 1, seed: 3 });
      await expect(Model.load(fixture('stories260K/stories260K.gguf'), { threads: 1, draftModel: other })).rejects.toThrow(/draft model .*same vocabulary/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

