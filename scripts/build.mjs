// Compiles the TypeScript sources into dist/ (one ES module per command,
// loaded only when used), so the CLI starts without transpiling anything.
// Runs by itself as npm's `prepare` step on every `npm install` / `npm ci`;
// bin/switchyard.js falls back to the sources whenever dist/ is older than them.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const outdir = path.join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: ['src/cli/main.ts'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
