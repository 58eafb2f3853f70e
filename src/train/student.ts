// Student shapes and the training defaults of `bonsai distill`. Widths are multiples of 128 so
// every matrix is whole Q1_0 blocks; heads are 32 wide, grouped two queries per KV head.
import type { TrainerConfig, TrainerShape } from '../native.js';

/** A student's widths and depth: the trainer's shape less what comes from the teacher. */
export type StudentDims = Pick<TrainerShape, 'dim' | 'hidden' | 'layers' | 'heads' | 'kvHeads' | 'headDim'>;

/** xs is the bundled model's shape; s and m are the larger points of the size/quality curve. */
export const STUDENT_SHAPES = {
  xs: { dim: 128, hidden: 128, layers: 2, heads: 4, kvHeads: 2, headDim: 32 },
  s: { dim: 128, hidden: 256, layers: 4, heads: 4, kvHeads: 2, headDim: 32 },
  m: { dim: 256, hidden: 512, layers: 2, heads: 8, kvHeads: 4, headDim: 32 },
} as const satisfies Record<string, StudentDims>;

export type StudentShapeName = keyof typeof STUDENT_SHAPES;

/** Parses "xs" or "dim=128,hidden=256,layers=4,heads=4,kv=2,head=32" (missing keys from xs). */
export function parseStudentShape(spec: string): StudentDims {
  if (spec in STUDENT_SHAPES) return { ...STUDENT_SHAPES[spec as StudentShapeName] };
  const dims: StudentDims = { ...STUDENT_SHAPES.xs };
  const keys: Record<string, keyof StudentDims> = { dim: 'dim', hidden: 'hidden', layers: 'layers', heads: 'heads', kv: 'kvHeads', head: 'headDim' };
  for (const part of spec.split(',')) {
    const [k, v] = part.split('=');
    const key = keys[k?.trim() ?? ''];
    const n = Number(v);
    if (!key || !Number.isInteger(n) || n < 1) {
      throw new Error(`bad --shape '${spec}': use ${Object.keys(STUDENT_SHAPES).join(', ')} or dim=,hidden=,layers=,heads=,kv=,head= (positive integers)`);
    }
    dims[key] = n;
  }
  return dims;
}

/** The student's full shape: its dims plus the teacher's vocabulary, RoPE base and norm epsilon. */
export function studentShape(dims: StudentDims, vocab: number, ropeBase: number, normEps: number): TrainerShape {
  return { ...dims, vocab, tied: true, ropeBase, normEps };
}

/** Weights in the student's matrices and norms. */
export function parameterCount(s: TrainerShape): { matrices: number; norms: number } {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const perLayer = s.dim * (q + 2 * kv) + q * s.dim + 3 * s.dim * s.hidden;
  const matrices = s.vocab * s.dim * (s.tied ? 1 : 2) + s.layers * perLayer;
  return { matrices, norms: s.dim * (2 * s.layers + 1) };
}

export type TrainingSettings = Omit<TrainerConfig, 'shape' | 'threads' | 'totalSteps' | 'seed'>;

/** AdamW with warm-up and cosine decay; KL to the teacher only, which trains best here. */
export const TRAINING_DEFAULTS: TrainingSettings = {
  seqLen: 256,
  quantize: true,
  lr: 3e-3,
  lrMin: 3e-4,
  warmupSteps: 100,
  beta1: 0.9,
  beta2: 0.99,
  adamEps: 1e-8,
  weightDecay: 0.05,
  clip: 1,
  klWeight: 1,
  ceWeight: 0,
  initStd: 0.02,
};
