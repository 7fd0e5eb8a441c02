// Generates config/switchyard.schema.json from the zod schema the proxy
// validates with (src/config/schema.ts), so editors check configs by the same
// rules. `npm run gen:schema` writes it; `--check` fails when it is stale
// (a test does the same comparison).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { configSchema, mappingSchema, upstreamSchema } from '../src/config/schema.ts';

export const SCHEMA_PATH = fileURLToPath(new URL('../config/switchyard.schema.json', import.meta.url));

/**
 * The JSON Schema of a config file as written (zod's input side, so keys with
 * defaults are optional). Draft-07: the draft editors' YAML language servers
 * support best.
 */
export function buildJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, {
    target: 'draft-07',
    io: 'input',
    // Refinements are code and zod cannot export them; those JSON Schema can
    // say are restated here so an editor flags them too. (Duplicate mapping
    // names and key columns without an up expression stay loader-only.)
    // test/unit/schema-config.test.ts checks both sides reject the same files.
    override: ({ zodSchema, jsonSchema }) => {
      const js = jsonSchema as Record<string, unknown>;
      // The config's only records are the up/down column maps, refined to be non-empty.
      if (zodSchema._zod.def.type === 'record') js.minProperties = 1;
      if (zodSchema === upstreamSchema) {
        js.anyOf = [{ required: ['url'] }, { required: ['host'] }];
      }
      if (zodSchema === mappingSchema) {
        // Reading new (reads: new) and mirroring into old (dualWrite: both) both need down.
        const needsDown = (when: Record<string, unknown>) => ({
          if: when,
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable
          then: { required: ['down'] },
        });
        js.allOf = [
          needsDown({ properties: { reads: { const: 'new' } }, required: ['reads'] }),
          needsDown({ properties: { dualWrite: { const: 'both' } }, required: ['dualWrite'] }),
        ];
      }
    },
  }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return {
    $schema,
    title: 'switchyard config',
    description:
      'Config of the switchyard Postgres sidecar. Generated from src/config/schema.ts by npm run gen:schema.',
    ...rest,
  };
}

export function renderJsonSchema(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}

function main(argv: string[]): number {
  const text = renderJsonSchema();
  if (argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(SCHEMA_PATH, 'utf8');
    } catch {
      // A missing file is stale too.
    }
    if (current !== text) {
      process.stderr.write(`${SCHEMA_PATH} is out of date: run npm run gen:schema\n`);
      return 1;
    }
    return 0;
  }
  writeFileSync(SCHEMA_PATH, text);
  process.stdout.write(`wrote ${SCHEMA_PATH}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
