// Byte-level BPE pre-tokenizers: llama.cpp's regex lists per tokenizer.ggml.pre, applied the way
// unicode_regex_split does it. Each regex splits every piece produced by the previous one into its
// matches and the unmatched gaps between them; lookaheads and `$` see only the current piece.

// llama.cpp's whitespace (Unicode White_Space). JS `\s` differs: it adds U+FEFF and lacks U+0085.
const WS = '\\t-\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3_LIKE = (digits: string) =>
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" +
  digits +
  '| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
const CJK = '[一-龥ࠀ-一가-퟿]+';
const BLOOM = ' ?[^(\\s|.,!?…。，、।۔،)]+';

const DEEPSEEK_LLM = [
  '[\\r\\n]',
  '\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌῐ-\u1FD3ῖ-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+',
  '\\s?[!-/:-~！-／：-～‘-‟　-。]+',
  '\\s+$',
  CJK,
  '\\p{N}+',
];

interface PreTokenizer {
  regexes: string[];
  /** llama.cpp's clean_spaces: decode() removes spaces before punctuation and contractions. */
  cleanSpaces: boolean;
  /** A whole pre-token found in the vocab is used as is, without merges (llama.cpp's ignore_merges). */
  ignoreMerges: boolean;
  addBos: boolean;
}

const table: [names: string[], regexes: string[], flags?: Partial<PreTokenizer>][] = [
  [['default'], ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]']],
  [['llama3', 'llama-v3', 'llama-bpe', 'falcon3'], [LLAMA3_LIKE('{1,3}')], { ignoreMerges: true, addBos: true }],
  [['dbrx', 'smaug-bpe'], [LLAMA3_LIKE('{1,3}')]],
  [['deepseek-llm'], DEEPSEEK_LLM, { cleanSpaces: false }],
  [['deepseek-coder'], ['[\\r\\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', CJK, '\\p{N}'], { cleanSpaces: false }],
  [['falcon'], ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]']],
  [['gpt-2', 'phi-2', 'mpt', 'olmo', 'jais', 'roberta-bpe'], [GPT2]],
  [['starcoder', 'refact', 'codeshell', 'exaone', 'minerva-7b'], ['\\p{N}', GPT2]],
  [['command-r', 'smollm'], ['\\p{N}', GPT2], { cleanSpaces: false }],
  [['qwen2', 'deepseek-r1-qwen'], [LLAMA3_LIKE('')], { cleanSpaces: false }],
  [['stablelm2', 'megrez'], [LLAMA3_LIKE('')]],
  [['bloom', 'gpt3-finnish'], [BLOOM]],
  [['poro-chat'], [BLOOM], { cleanSpaces: false }],
  [['viking'], [BLOOM, '\\p{N}'], { cleanSpaces: false }],
];

export interface CompiledPreTokenizer extends PreTokenizer {
  split(text: string): string[];
}

export function preTokenizer(pre: string | undefined): CompiledPreTokenizer {
  // A BPE vocab without tokenizer.ggml.pre gets llama.cpp's 'default' (with its quality warning).
  const name = pre ?? 'default';
  const entry = table.find(([names]) => names.includes(name));
  if (!entry) throw new Error(`unsupported BPE pre-tokenizer '${name}' (tokenizer.ggml.pre)`);
  const [, sources, flags] = entry;
  const regexes = sources.map(toJsRegex);
  return {
    regexes: sources,
    cleanSpaces: true,
    ignoreMerges: false,
    addBos: false,
    ...flags,
    split: (text) => regexes.reduce((pieces, re) => pieces.flatMap((p) => splitPiece(p, re)), [text]),
  };
}

/** Rewrites \s and \S to llama.cpp's whitespace set, inside and outside character classes. */
function toJsRegex(source: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      const next = source[i + 1]!;
      i++;
      if (next === 's') out += inClass ? WS : `[${WS}]`;
      else if (next === 'S' && !inClass) out += `[^${WS}]`;
      else out += c + next;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out += c;
  }
  return new RegExp(out, 'gu');
}

function splitPiece(piece: string, re: RegExp): string[] {
  const out: string[] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
    if (m.index > last) out.push(piece.slice(last, m.index));
    out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < piece.length) out.push(piece.slice(last));
  return out;
}
