// search_path from a startup packet's `options` (`-c search_path=...` or `--search_path=...`).

export function searchPathFromOptions(options: string | undefined): string | undefined {
  if (!options) return undefined;
  const m = /(?:-c\s*|--)search_path=((?:\\ |[^ ])+)/.exec(options);
  return m ? m[1].replaceAll('\\ ', ' ') : undefined;
}
