// A distillation run: the teacher (through the engine, for its tokenizer and its samples, and
// inside the native trainer, for its logits), the training text, the step loop with periodic
// validation and checkpoints, and the export of the student as a GGUF.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Model } from '../engine/engine.js';
import { splitPieces } from '../engine/perplexity.js';
import { metaNumber, readGguf } from '../gguf/reader.js';
import { native, type NativeTrainer, type TrainerConfig, type TrainStepMetrics } from '../native.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointHeader, type HistoryEntry } from './checkpoint.js';
import { batchAt, corpusOf, joinCorpora, type Corpus } from './corpus.js';
import { writeStudent } from './export.js';
import { studentShape, type StudentDims, type TrainingSettings } from './student.js';

export interface DistillOptions {
  teacher: string;
  out: string;
  dims: StudentDims;
  settings: TrainingSettings;
  /** Text files, split into pieces on `separator`. */
  data: string[];
  separator: string;
  /** Pieces at the start of every data file never trained on (the test set). */
  skipPieces: number;
  /** Pieces after those, not trained on, scored every evalEvery steps. */
  valPieces: number;
  /** Sequences sampled from the teacher and trained on (kept in OUT.samples.bin for resumes). */
  generate: number;
  steps: number;
  batch: number;
  threads: number;
  seed: number;
  checkpoint: string;
  resume: boolean;
  /**
   * Another run's checkpoint whose weights start this one (same shape; its optimizer state and
   * step count are not taken): e.g. a float run, then quantization-aware training from it.
   */
  initFrom?: string;
  saveEvery: number;
  evalEvery: number;
  type: 'q1_0' | 'f32';
  signal?: AbortSignal;
  /** Called after every step. */
  onStep?: (m: TrainStepMetrics, run: RunState) => void;
  /** One line of news (data ready, validation, checkpoint written). */
  onLog?: (line: string) => void;
}

export interface RunState {
  steps: number;
  totalSteps: number;
  elapsedMs: number;
  tokensSeen: number;
  /** Tokens per second over this sitting. */
  tokensPerS: number;
  /** Time the remaining steps take at this sitting's pace. */
  etaMs: number;
}

export interface DistillResult {
  file: string;
  bytes: number;
  steps: number;
  finished: boolean;
  elapsedMs: number;
  tokensSeen: number;
  valNll?: number;
  teacherValNll?: number;
  history: HistoryEntry[];
}

export async function distill(o: DistillOptions): Promise<DistillResult> {
  const log = o.onLog ?? (() => undefined);
  const info = readGguf(o.teacher);
  const vocab = Number(info.tensors.find((t) => t.name === 'token_embd.weight')?.dims[1] ?? 0);
  const shape = studentShape(o.dims, vocab, metaNumber(info, 'llama.rope.freq_base') ?? 10000, metaNumber(info, 'llama.attention.layer_norm_rms_epsilon') ?? 1e-5);
  const config: TrainerConfig = { ...o.settings, shape, threads: o.threads, totalSteps: o.steps, seed: o.seed };
  const trainer = new native.Trainer(config, o.teacher);
  try {
    const { train, validation } = await prepareData(o, log);
    log(`data: ${train.starts.length} training pieces, ${train.stream.length} tokens; ${validation.length} validation pieces`);
    let header: CheckpointHeader = { config: withoutThreads(config), steps: 0, elapsedMs: 0, tokensSeen: 0, history: [] };
    if (o.resume && existsSync(o.checkpoint)) {
      const nParams = trainer.getState().params.length;
      const loaded = loadCheckpoint(o.checkpoint, nParams);
      assertSameRun(loaded.header.config, header.config, o.checkpoint);
      trainer.setState(loaded.state);
      header = loaded.header;
      log(`resumed from ${o.checkpoint} at step ${header.steps}`);
    } else if (o.initFrom) {
      const state = trainer.getState();
      const init = loadCheckpoint(o.initFrom, state.params.length);
      trainer.setState({ ...state, params: init.state.params });
      header.initFrom = { file: path.basename(o.initFrom), steps: init.header.steps, quantize: init.header.config.quantize, tokensSeen: init.header.tokensSeen, elapsedMs: init.header.elapsedMs };
      log(`weights from ${o.initFrom} (step ${init.header.steps}${init.header.config.quantize ? '' : ', float'})`);
    }
    const teacherValNll = validation.length ? await scoreAll(trainer, validation, true) : undefined;
    if (teacherValNll !== undefined) log(`teacher validation NLL ${teacherValNll.toFixed(4)} (PPL ${Math.exp(teacherValNll).toFixed(3)})`);

    const sittingStart = performance.now();
    const baseElapsed = header.elapsedMs;
    let sittingTokens = 0;
    const save = () => {
      header.elapsedMs = baseElapsed + (performance.now() - sittingStart);
      saveCheckpoint(o.checkpoint, header, trainer.getState());
    };
    while (header.steps < o.steps && !o.signal?.aborted) {
      const tokens = batchAt(train, o.settings.seqLen, o.batch, o.seed, header.steps);
      const m = await trainer.step(tokens, o.batch);
      header.steps = m.step;
      header.tokensSeen += o.batch * o.settings.seqLen;
      sittingTokens += o.batch * o.settings.seqLen;
      const elapsed = performance.now() - sittingStart;
      const entry: HistoryEntry = { step: m.step, elapsedMs: Math.round(baseElapsed + elapsed), trainLoss: m.loss, trainKl: m.kl, trainNll: m.nll };
      const last = header.steps === o.steps;
      if (validation.length && (header.steps % o.evalEvery === 0 || last)) {
        entry.valNll = await scoreAll(trainer, validation, false);
        log(`step ${header.steps}: validation NLL ${entry.valNll.toFixed(4)} (PPL ${Math.exp(entry.valNll).toFixed(3)})`);
      }
      if (entry.valNll !== undefined || header.steps % 50 === 0) header.history.push(entry);
      o.onStep?.(m, { steps: header.steps, totalSteps: o.steps, elapsedMs: baseElapsed + elapsed, tokensSeen: header.tokensSeen, tokensPerS: sittingTokens / (elapsed / 1000), etaMs: ((o.steps - header.steps) * o.batch * o.settings.seqLen) / (sittingTokens / elapsed) });
      if (header.steps % o.saveEvery === 0 && !last) save();
    }
    save();
    const finished = header.steps >= o.steps;
    if (!finished) {
      log(`stopped at step ${header.steps}: resume with --resume`);
      return { file: o.out, bytes: 0, steps: header.steps, finished, elapsedMs: header.elapsedMs, tokensSeen: header.tokensSeen, history: header.history, teacherValNll };
    }
    const written = await writeStudent(o.out, {
      shape,
      contextLength: o.settings.seqLen,
      tensors: trainer.tensors(),
      weights: trainer.weights(),
      type: o.type,
      tokenizerFrom: o.teacher,
      name: `bonsai-edge student ${o.dims.dim}x${o.dims.layers} (${o.settings.quantize ? '1-bit QAT' : 'float'}, distilled)`,
      description: `Distilled from ${info.metadata['general.name'] ?? 'the teacher'} by bonsai distill: ${header.steps} steps, ${header.tokensSeen} tokens.`,
    });
    const valNll = [...header.history].reverse().find((h) => h.valNll !== undefined)?.valNll;
    return { file: o.out, bytes: written.bytes, steps: header.steps, finished, elapsedMs: header.elapsedMs, tokensSeen: header.tokensSeen, valNll, teacherValNll, history: header.history };
  } finally {
    trainer.close();
  }
}

function withoutThreads(c: TrainerConfig): Omit<TrainerConfig, 'threads'> {
  const { threads: _threads, ...rest } = c;
  return rest;
}

function assertSameRun(saved: Omit<TrainerConfig, 'threads'>, now: Omit<TrainerConfig, 'threads'>, file: string): void {
  const a = JSON.stringify(saved);
  const b = JSON.stringify(now);
  if (a !== b) throw new Error(`${file} was made with other settings (${a}); resume with the same shape, steps and hyperparameters, or start afresh without --resume`);
}

/** Mean NLL per scored token over pieces, each a fresh sequence (the perplexity protocol). */
async function scoreAll(trainer: NativeTrainer, pieces: Int32Array[], teacher: boolean): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const p of pieces) {
    if (p.length < 2) continue;
    sum += await trainer.score(p, teacher);
    count += p.length - 1;
  }
  return sum / count;
}

async function prepareData(o: DistillOptions, log: (line: string) => void): Promise<{ train: Corpus; validation: Int32Array[] }> {
  const teacher = await Model.load(o.teacher, { threads: o.threads, contextSize: o.settings.seqLen + 1 });
  try {
    const width = o.settings.seqLen + 1;
    const encode = (piece: string) => Int32Array.from(teacher.tokenizer.encode(piece, { addSpecial: true }).slice(0, width));
    const trainPieces: Int32Array[] = [];
    const validation: Int32Array[] = [];
    for (const file of o.data) {
      const pieces = splitPieces(readFileSync(file, 'utf8'), o.separator);
      if (pieces.length <= o.skipPieces + o.valPieces) throw new Error(`${file} has ${pieces.length} pieces: none left after skipping ${o.skipPieces} and holding out ${o.valPieces}`);
      pieces.slice(o.skipPieces, o.skipPieces + o.valPieces).forEach((p) => validation.push(encode(p)));
      pieces.slice(o.skipPieces + o.valPieces).forEach((p) => trainPieces.push(encode(p)));
    }
    const parts = [corpusOf(trainPieces)];
    if (o.generate > 0) parts.push(await teacherSamples(teacher, o, log));
    const train = joinCorpora(parts);
    if (train.stream.length < width) throw new Error(`no training data: give --data FILE and/or --generate N`);
    return { train, validation };
  } finally {
    teacher.close();
  }
}

/** o.generate sequences sampled from the teacher at temperature 1, cached next to the output. */
async function teacherSamples(teacher: Model, o: DistillOptions, log: (line: string) => void): Promise<Corpus> {
  const bos = teacher.tokenizer.bos;
  if (bos === undefined) throw new Error(`${o.teacher} has no BOS token: its samples cannot be split into sequences`);
  const cache = `${o.out}.samples.bin`;
  const header = `${o.generate}:${o.seed}:${o.settings.seqLen}:${statSync(o.teacher).size}`;
  if (existsSync(cache)) {
    const data = readFileSync(cache);
    const headerLen = data.indexOf(0x0a);
    if (headerLen > 0 && data.subarray(0, headerLen).toString() === header) {
      const ids = new Int32Array(data.buffer.slice(data.byteOffset + headerLen + 1, data.byteOffset + data.length));
      return splitAtBos(ids, bos);
    }
  }
  const pieces: number[][] = [];
  const started = performance.now();
  for (let i = 0; i < o.generate && !o.signal?.aborted; i++) {
    const r = await teacher.generate({
      promptIds: [bos],
      maxTokens: o.settings.seqLen,
      sampling: { temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, seed: o.seed * 1_000_003 + i },
    });
    // a story ends at EOS (or the BOS that starts the next one); the stop token is not kept
    const ids = r.ids.filter((t) => !teacher.tokenizer.isEog(t) && t !== bos);
    pieces.push([bos, ...ids]);
    if ((i + 1) % 500 === 0) log(`teacher samples: ${i + 1}/${o.generate} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  const corpus = corpusOf(pieces);
  if (!o.signal?.aborted) {
    writeFileSync(cache, Buffer.concat([Buffer.from(`${header}\n`), Buffer.from(corpus.stream.buffer)]));
  }
  log(`teacher samples: ${pieces.length} sequences, ${corpus.stream.length} tokens`);
  return corpus;
}

function splitAtBos(ids: Int32Array, bos: number): Corpus {
  const starts: number[] = [];
  ids.forEach((t, i) => {
    if (t === bos) starts.push(i);
  });
  return { stream: ids, starts: Int32Array.from(starts) };
}
