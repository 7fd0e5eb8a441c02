#!/usr/bin/env node
// Starts the CLI from dist/ (compiled by `npm install`'s prepare step), or
// from the TypeScript sources through tsx when dist/ is missing or older than
// any source file: an edited checkout always runs what it holds.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function builtIsCurrent() {
  let built;
  try {
    built = statSync(path.join(root, 'dist/main.js')).mtimeMs;
  } catch {
    return false;
  }
  const src = path.join(root, 'src');
  for (const f of readdirSync(src, { recursive: true })) {
    if (statSync(path.join(src, f)).mtimeMs > built) return false;
  }
  return statSync(path.join(root, 'package.json')).mtimeMs <= built;
}

let main;
if (builtIsCurrent()) {
  ({ main } = await import('../dist/main.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
