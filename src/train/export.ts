// A trained student as a standard llama GGUF: Q1_0 matrices and F32 norms (or everything F32, the
// dequantized reference), llama.cpp's metadata keys, and the teacher's tokenizer as it is.
import { copyTokenizer } from '../gguf/synth.js';
import { quantizeQ1_0 } from '../gguf/quantize.js';
import { GGML_TYPE, writeGguf, type GgufKv, type GgufTensorSource, type WriteResult } from '../gguf/writer.js';
import type { TrainerShape } from '../native.js';

export interface StudentExport {
  shape: TrainerShape;
  /** The context the student was trained at, written as llama.context_length. */
  contextLength: number;
  /** Tensor table in parameter order (the trainer's `tensors()`). */
  tensors: { name: string; cols: number; rows: number; offset: number }[];
  /** Weights in that order: latent weights are quantized as the forward pass did. */
  weights: Float32Array;
  type: 'q1_0' | 'f32';
  /** The GGUF whose tokenizer.* keys are copied (the teacher). */
  tokenizerFrom: string;
  name: string;
  description: string;
}

/**
 * A student is a text model without roles: its chat template joins the messages' text, so a chat
 * request (`bonsai chat`, Home Assistant) continues that text as `bonsai run` would.
 */
export const PLAIN_TEXT_TEMPLATE = "{% for message in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}{{ message['content'] }}{% endfor %}";

export async function writeStudent(file: string, e: StudentExport): Promise<WriteResult> {
  const s = e.shape;
  const u32 = (key: string, value: number): GgufKv => ({ key, type: 'u32', value });
  const f32 = (key: string, value: number): GgufKv => ({ key, type: 'f32', value });
  const str = (key: string, value: string): GgufKv => ({ key, type: 'string', value });
  const kvs: GgufKv[] = [
    str('general.architecture', 'llama'),
    str('general.name', e.name),
    str('general.description', e.description),
    // llama.cpp's file types: 0 = all F32; 41 is what 1-bit Bonsai files say for Q1_0
    u32('general.file_type', e.type === 'q1_0' ? 41 : 0),
    u32('general.quantization_version', 2),
    u32('general.alignment', 32),
    u32('llama.context_length', e.contextLength),
    u32('llama.embedding_length', s.dim),
    u32('llama.block_count', s.layers),
    u32('llama.feed_forward_length', s.hidden),
    u32('llama.attention.head_count', s.heads),
    u32('llama.attention.head_count_kv', s.kvHeads),
    u32('llama.rope.dimension_count', s.headDim),
    f32('llama.rope.freq_base', s.ropeBase),
    f32('llama.attention.layer_norm_rms_epsilon', s.normEps),
    u32('llama.vocab_size', s.vocab),
    ...copyTokenizer(e.tokenizerFrom).filter((kv) => kv.key !== 'tokenizer.chat_template'),
    str('tokenizer.chat_template', PLAIN_TEXT_TEMPLATE),
  ];
  const tensors: GgufTensorSource[] = e.tensors.map((t) => {
    const values = e.weights.subarray(t.offset, t.offset + t.cols * t.rows);
    const matrix = t.rows > 1;
    const quantized = matrix && e.type === 'q1_0';
    return {
      name: t.name,
      type: quantized ? GGML_TYPE.Q1_0 : GGML_TYPE.F32,
      dims: matrix ? [t.cols, t.rows] : [t.cols],
      *data() {
        yield quantized ? quantizeQ1_0(values) : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      },
    };
  });
  return writeGguf(file, kvs, tensors);
}
