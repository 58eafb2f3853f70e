// `bonsai inspect`: a GGUF file's metadata, tensor table and a summary.
import type { Command } from 'commander';
import { describeValue, jsonValue, readGguf, summarize } from '../gguf/reader.js';
import { native } from '../native.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description("show a GGUF file's metadata, tensors and summary")
    .argument('<file>', 'GGUF file')
    .option('--json', 'print JSON (arrays summarised)')
    .action((file: string, opts: { json?: boolean }) => {
      const info = readGguf(file);
      const facts = summarize(info);
      const summary = { ...facts, kernels: kernelsFor(facts.matrixType) };
      if (opts.json) {
        const metadata = Object.fromEntries(
          Object.entries(info.metadata).map(([k, v]) => [k, jsonValue(v, info.metadataTypes[k] ?? '')]),
        );
        const { version, alignment, dataOffset, fileSize, tensors, pack } = info;
        process.stdout.write(`${JSON.stringify({ file, version, alignment, dataOffset, fileSize, ...(pack ? { pack } : {}), metadata, tensors, summary })}\n`);
        return;
      }
      const out: string[] = [];
      out.push(`file: ${file}`, `GGUF v${info.version}, ${info.fileSize} bytes, alignment ${info.alignment}, data at ${info.dataOffset}`);
      if (info.pack) out.push(`packed: ${info.pack.bytes} bytes (${((100 * info.pack.bytes) / info.fileSize).toFixed(1)}%) in ${info.pack.chunks} chunks, identity ${info.pack.identity.toString(16).padStart(8, '0')}`);
      out.push('', `metadata (${Object.keys(info.metadata).length} keys):`);
      for (const [key, value] of Object.entries(info.metadata)) {
        const type = info.metadataTypes[key] ?? '';
        out.push(`  ${key} (${type}) = ${describeValue(value, type)}`);
      }
      out.push('', `tensors (${info.tensors.length}):`);
      const width = Math.max(4, ...info.tensors.map((t) => t.name.length));
      for (const t of info.tensors) {
        out.push(`  ${t.name.padEnd(width)}  ${t.typeName.padEnd(5)}  [${t.dims.join(', ')}]  ${t.bytes} bytes`);
      }
      out.push(
        '',
        'summary:',
        `  architecture: ${summary.architecture ?? '(none)'}`,
        `  parameters: ${summary.parameters.toLocaleString('en-US')}`,
        `  tensor bytes: ${summary.tensorBytes.toLocaleString('en-US')}`,
        `  bits per weight: ${summary.bitsPerWeight.toFixed(4)}`,
        `  tensor types: ${Object.entries(summary.tensorTypes).map(([k, n]) => `${k} x${n}`).join(', ')}`,
        `  kernels here: ${summary.kernels}${summary.matrixType ? ` for its ${summary.matrixType} matrices` : ''}`,
      );
      process.stdout.write(`${out.join('\n')}\n`);
    });
}

/** The kernel path this machine would run the matrices on, and whose kernels those are. */
function kernelsFor(matrixType: string | undefined): string {
  try {
    return native.kernelPaths(matrixType).selectedLabel;
  } catch {
    return `none (no kernels for ${matrixType})`;
  }
}
