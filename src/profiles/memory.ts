// Does a model fit a board? The estimate is what the process holds with the model loaded: the
// tensors (the repacked copy replaces the file's pages, so they count once), the KV cache at its
// full context (allocated whole; filled as positions are used), and the runtime around them.
// Read from the GGUF's metadata and tensor table alone: nothing is loaded.
import { modelName } from '../engine/engine.js';
import { GgufError, metaNumber, metaString, readGguf } from '../gguf/reader.js';
import { SHAPES, type ModelShape } from '../gguf/synth.js';
import { ramLabel, type BoardProfile, type BonsaiName, type KvType, type RamVariant } from './catalog.js';

export interface ModelFacts {
  name: string;
  /** Bytes of every tensor. */
  weightsBytes: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  trainedContext: number;
}

const MIB = 2 ** 20;

/**
 * Node.js, the tokenizer's vocabulary, the daemon's modules and the engine's buffers. Measured:
 * `bonsai serve` with a Bonsai-1.7B-shaped model (x86-64, Node 20, 512-token context) held
 * 425 MiB, of which 279 MiB weights and ~4 MiB KV rows in use: 142 MiB besides.
 */
export const RUNTIME_BYTES = 144 * MIB;

/** The engine's context when none is configured: engine.ts, Model.load. */
const ENGINE_DEFAULT_CONTEXT = 4096;

function shapeFacts(name: BonsaiName, shape: ModelShape, ggufBytes: number): ModelFacts {
  return { name, weightsBytes: ggufBytes, layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim, trainedContext: shape.context };
}

/** PrismML's Bonsai models, smallest first: GGUF sizes from their model cards, shapes from synth.ts. */
export const BONSAI_MODELS: ModelFacts[] = [
  shapeFacts('Bonsai-1.7B', SHAPES['1.7b'], 242e6),
  shapeFacts('Bonsai-4B', SHAPES['4b'], 566e6),
  shapeFacts('Bonsai-8B', SHAPES['8b'], 1.15e9),
];

/** Hyperparameters as the engine reads them (native/model/model.c, read_hparams), with its defaults. */
export function readModelFacts(file: string): ModelFacts {
  const info = readGguf(file);
  const arch = metaString(info, 'general.architecture');
  if (!arch) throw new GgufError(`${file}: general.architecture is missing`);
  const count = (key: string, fallback?: number): number => {
    const value = metaNumber(info, `${arch}.${key}`) ?? fallback;
    if (value === undefined || !Number.isInteger(value) || value < 1 || value > 1 << 24) throw new GgufError(`${file}: ${arch}.${key} is missing or out of range`);
    return value;
  };
  const heads = count('attention.head_count');
  return {
    name: modelName(file, info.metadata),
    weightsBytes: info.tensors.reduce((sum, t) => sum + t.bytes, 0),
    layers: count('block_count'),
    kvHeads: count('attention.head_count_kv', heads),
    headDim: count('attention.key_length', Math.floor(count('embedding_length') / heads)),
    trainedContext: count('context_length', 2048),
  };
}

/** Bytes of one position's keys and values over all layers. */
function kvBytesPerToken(model: ModelFacts, kvType: KvType): number {
  return model.layers * 2 * model.kvHeads * model.headDim * (kvType === 'f16' ? 2 : 4);
}

export interface MemoryEstimate {
  weightsBytes: number;
  kvBytes: number;
  runtimeBytes: number;
  totalBytes: number;
}

export function estimateMemory(model: ModelFacts, contextSize: number, kvType: KvType): MemoryEstimate {
  const kvBytes = kvBytesPerToken(model, kvType) * contextSize;
  return { weightsBytes: model.weightsBytes, kvBytes, runtimeBytes: RUNTIME_BYTES, totalBytes: model.weightsBytes + kvBytes + RUNTIME_BYTES };
}

/**
 * How many contexts (KV caches of contextSize tokens, one per generation decoded at once) fit the
 * budget beside the weights and the runtime; 0 when not even one does.
 */
export function contextsThatFit(model: ModelFacts, contextSize: number, kvType: KvType, budgetBytes: number): number {
  const one = estimateMemory(model, contextSize, kvType);
  return Math.max(0, Math.floor((budgetBytes - one.weightsBytes - one.runtimeBytes) / one.kvBytes));
}

/** The largest Bonsai model that fits the variant at its own context size and KV type; null when none does. */
export function largestBonsai(variant: RamVariant): BonsaiName | null {
  const budget = variant.memory_budget_mb * MIB;
  const fitting = BONSAI_MODELS.filter((m) => estimateMemory(m, variant.context_size, variant.kv_type).totalBytes <= budget);
  return (fitting[fitting.length - 1]?.name as BonsaiName | undefined) ?? null;
}

export interface FitResult {
  fits: boolean;
  needBytes: number;
  budgetBytes: number;
  contextSize: number;
  kvType: KvType;
  /** What it needs and what the profile allows; when it does not fit, what would. */
  message: string;
  /** Smaller Bonsai models that fit with this context and KV type. */
  smallerModels: string[];
  /** The largest context (a multiple of 256) with which this model fits with an f16 KV cache. */
  largestF16Context?: number;
}

/** "1.4 GiB", "380 MiB". */
function formatBytes(bytes: number): string {
  return bytes >= 1024 * MIB ? `${(bytes / (1024 * MIB)).toFixed(1)} GiB` : `${Math.round(bytes / MIB)} MiB`;
}

/**
 * Whether a model file (or its facts) fits the memory budget of a board's RAM variant with this
 * context size (undefined: the engine's default, min(training context, 4096)) and KV cache type.
 */
export function modelFits(profile: BoardProfile, variant: RamVariant, model: string | ModelFacts, contextSize: number | undefined, kvType: KvType): FitResult {
  const facts = typeof model === 'string' ? readModelFacts(model) : model;
  const context = contextSize ?? Math.min(facts.trainedContext, ENGINE_DEFAULT_CONTEXT);
  const need = estimateMemory(facts, context, kvType);
  const budgetBytes = variant.memory_budget_mb * MIB;
  const fits = need.totalBytes <= budgetBytes;
  const smallerModels = BONSAI_MODELS.filter((m) => m.weightsBytes < facts.weightsBytes && estimateMemory(m, context, kvType).totalBytes <= budgetBytes).map((m) => m.name);
  const room = budgetBytes - need.weightsBytes - need.runtimeBytes;
  const f16Context = Math.min(Math.floor(room / kvBytesPerToken(facts, 'f16') / 256) * 256, facts.trainedContext);
  const needs =
    `${facts.name} needs ~${formatBytes(need.totalBytes)} with a ${context}-token ${kvType} KV cache ` +
    `(${formatBytes(need.weightsBytes)} weights, ${formatBytes(need.kvBytes)} KV cache, ${formatBytes(need.runtimeBytes)} runtime); ` +
    `the ${profile.id} profile (${ramLabel(variant.ram_mb)}) allows ${formatBytes(budgetBytes)}`;
  const fixes = [
    smallerModels.length ? `use ${smallerModels.join(' or ')}` : undefined,
    f16Context >= 256 ? `a context of at most ${f16Context} tokens${kvType === 'f16' ? '' : ' with an f16 KV cache'}` : undefined,
  ].filter((f): f is string => f !== undefined);
  const result: FitResult = {
    fits,
    needBytes: need.totalBytes,
    budgetBytes,
    contextSize: context,
    kvType,
    message: fits ? needs : `${needs}: ${fixes.length ? fixes.join(', or ') : 'nothing smaller fits this board'}`,
    smallerModels,
  };
  if (f16Context >= 256) result.largestF16Context = f16Context;
  return result;
}
