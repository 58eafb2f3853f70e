// Measures the distilled students against their teacher with the fixtures' perplexity protocol
// and writes models/quality.json (the figures of the model card) and models/quality.svg (the
// size/quality curve). Run after scripts/distill-models.sh:
//
//   npx vite-node scripts/evaluate-students.ts
//
// Reads the runs from $BONSAI_DISTILL_DIR (default build/distill) and the fixtures from
// ../shared/fixtures (or $BONSAI_FIXTURES). Every model runs through the engine, as users run it.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Model } from '../src/engine/engine.js';
import { perplexity } from '../src/engine/perplexity.js';
import { readGguf } from '../src/gguf/reader.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const FIXTURES = process.env.BONSAI_FIXTURES ?? path.resolve(ROOT, '..', 'shared', 'fixtures');
const RUNS = process.env.BONSAI_DISTILL_DIR ?? path.join(ROOT, 'build', 'distill');
const TEACHER = path.join(FIXTURES, 'stories260K', 'stories260K.gguf');

const MODELS: { id: string; file: string; what: string }[] = [
  { id: 'teacher', file: TEACHER, what: 'stories260K, F32 (the teacher)' },
  { id: 'bundled', file: path.join(ROOT, 'models', 'tinystories-xs-q1_0.gguf'), what: 'xs, 1,000 float steps then 3,000 quantization-aware steps (the bundled model)' },
  { id: 'scratch', file: path.join(RUNS, 'scratch.gguf'), what: 'xs, 6,000 quantization-aware steps from random weights' },
  { id: 'ptq-float', file: path.join(RUNS, 'ptq-float.gguf'), what: 'xs, 500 float steps, F32 file' },
  { id: 'ptq-rounded', file: path.join(RUNS, 'ptq-rounded.gguf'), what: 'xs, 500 float steps, sign-rounded to Q1_0 (post-training quantization)' },
  { id: 'curve-xs', file: path.join(RUNS, 'curve-xs.gguf'), what: 'xs, 500 quantization-aware steps' },
  { id: 'curve-s', file: path.join(RUNS, 'curve-s.gguf'), what: 's, 500 quantization-aware steps' },
  { id: 'curve-m', file: path.join(RUNS, 'curve-m.gguf'), what: 'm, 500 quantization-aware steps' },
];

function paragraphs(n: number): string {
  const text = readFileSync(path.join(FIXTURES, 'tinystories', 'tinystories_val_head.txt'), 'utf8');
  const pieces = text.split('\n\n').map((p) => p.replace(/^\n+|\n+$/g, '')).filter((p) => p.length > 0);
  return pieces.slice(0, n).join('\n\n');
}

async function measure(file: string) {
  const info = readGguf(file);
  const model = await Model.load(file, { threads: 2 });
  try {
    const val = await perplexity(model, paragraphs(100), '\n\n');
    const stories = await perplexity(model, readFileSync(path.join(FIXTURES, 'tinystories', 'tinystories_sample.txt'), 'utf8'), '<|endoftext|>');
    const greedy = await model.generate({ prompt: 'Once upon a time', maxTokens: 64, sampling: { temperature: 0 } });
    const weights = info.tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * Number(b), 1), 0);
    return {
      bytes: statSync(file).size,
      weights,
      types: [...new Set(info.tensors.map((t) => t.typeName))].sort(),
      valHead100: { ppl: val.ppl, meanNll: val.mean_nll, tokens: val.tokens_scored },
      storySample: { ppl: stories.ppl, meanNll: stories.mean_nll, tokens: stories.tokens_scored },
      greedy: `Once upon a time${greedy.text}`,
    };
  } finally {
    model.close();
  }
}

const results: Record<string, unknown>[] = [];
for (const m of MODELS) {
  if (!existsSync(m.file)) {
    console.error(`skipping ${m.id}: ${m.file} is not there (run scripts/distill-models.sh)`);
    continue;
  }
  const r = { id: m.id, what: m.what, file: path.basename(m.file), ...(await measure(m.file)) };
  results.push(r);
  console.error(`${m.id}: PPL ${r.valHead100.ppl.toFixed(3)} (stories ${r.storySample.ppl.toFixed(3)}), ${r.bytes} bytes`);
}
const teacher = results.find((r) => r.id === 'teacher') as { bytes: number; valHead100: { ppl: number } } | undefined;
for (const r of results as { bytes: number; valHead100: { ppl: number }; vsTeacher?: unknown }[]) {
  if (teacher) r.vsTeacher = { pplRatio: r.valHead100.ppl / teacher.valHead100.ppl, sizeRatio: teacher.bytes / r.bytes };
}
writeFileSync(path.join(ROOT, 'models', 'quality.json'), `${JSON.stringify({ protocol: 'fixtures MANIFEST: one fresh sequence per piece, BOS, exp(mean NLL)', results }, null, 2)}\n`);
writeFileSync(path.join(ROOT, 'models', 'quality.svg'), curveSvg(results as Parameters<typeof curveSvg>[0]));
console.error('wrote models/quality.json and models/quality.svg');

/** Perplexity against file size (log scale), one point per model, the teacher as a reference line. */
function curveSvg(rows: { id: string; bytes: number; valHead100: { ppl: number } }[]): string {
  const W = 640, H = 400, L = 70, R = 20, T = 40, B = 60;
  const xs = rows.map((r) => Math.log10(r.bytes));
  const ys = rows.map((r) => r.valHead100.ppl);
  const x0 = Math.floor(Math.min(...xs) * 2) / 2, x1 = Math.ceil(Math.max(...xs) * 2) / 2;
  // perplexity on a log scale too: a sign-rounded model sits two orders above the rest
  const ly0 = Math.log10(Math.min(...ys) * 0.8), ly1 = Math.log10(Math.max(...ys) * 1.25);
  const px = (v: number) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const py = (v: number) => H - B - ((Math.log10(v) - ly0) / (ly1 - ly0)) * (H - T - B);
  const parts: string[] = [];
  for (let e = Math.ceil(x0 * 2) / 2; e <= x1 + 1e-9; e += 0.5) {
    const kb = 10 ** e / 1000;
    parts.push(`<line x1="${px(e)}" y1="${H - B}" x2="${px(e)}" y2="${T}" stroke="#ddd"/><text x="${px(e)}" y="${H - B + 18}" text-anchor="middle">${kb >= 1000 ? `${(kb / 1000).toFixed(1)} MB` : `${Math.round(kb)} KB`}</text>`);
  }
  for (const v of [2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100, 200, 500].filter((t) => Math.log10(t) >= ly0 && Math.log10(t) <= ly1)) parts.push(`<line x1="${L}" y1="${py(v)}" x2="${W - R}" y2="${py(v)}" stroke="#eee"/><text x="${L - 8}" y="${py(v) + 4}" text-anchor="end">${v}</text>`);
  const teacherRow = rows.find((r) => r.id === 'teacher');
  if (teacherRow) {
    const y = py(teacherRow.valHead100.ppl);
    parts.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#888" stroke-dasharray="4 4"/><line x1="${L}" y1="${py(teacherRow.valHead100.ppl * 1.25)}" x2="${W - R}" y2="${py(teacherRow.valHead100.ppl * 1.25)}" stroke="#c33" stroke-dasharray="2 4"/>`);
    parts.push(`<text x="${W - R}" y="${py(teacherRow.valHead100.ppl * 1.25) - 4}" text-anchor="end" fill="#c33">1.25 x teacher</text>`);
  }
  const curve = rows.filter((r) => r.id.startsWith('curve-')).sort((a, b) => a.bytes - b.bytes);
  if (curve.length > 1) parts.push(`<polyline fill="none" stroke="#2a6" stroke-width="2" points="${curve.map((r) => `${px(Math.log10(r.bytes))},${py(r.valHead100.ppl)}`).join(' ')}"/>`);
  for (const r of rows) {
    const color = r.id === 'teacher' ? '#555' : r.id === 'bundled' ? '#06c' : r.id === 'scratch' ? '#83c' : r.id.startsWith('ptq') ? '#c60' : '#2a6';
    const x = px(Math.log10(r.bytes)), y = py(r.valHead100.ppl);
    parts.push(`<circle cx="${x}" cy="${y}" r="5" fill="${color}"/><text x="${x + 8}" y="${y - 8}" fill="${color}">${r.id} ${r.valHead100.ppl.toFixed(2)}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">Perplexity (first 100 TinyStories validation paragraphs) vs. file size</text>
${parts.join('\n')}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
<text x="${(L + W - R) / 2}" y="${H - 15}" text-anchor="middle">GGUF file size (log scale)</text>
<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">perplexity (log scale)</text>
</svg>
`;
}
