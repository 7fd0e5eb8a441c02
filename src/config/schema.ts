// The one definition of switchyard's config: the proxy validates with it, and
// config/switchyard.schema.json is generated from it, so editors and the proxy
// can never disagree about what a valid file is.
import { z } from 'zod';

const host = z.string().min(1).describe('Host name or IP address');
const port = z.number().int().min(0).max(65535).describe('TCP port');

/** A table name, optionally schema-qualified: users, public.users, "My Schema"."Users". */
const tableName = z
  .string()
  .min(1)
  .regex(/^(?:"(?:[^"]|"")+"|[^."\s]+)(?:\.(?:"(?:[^"]|"")+"|[^."\s]+))?$/, 'must be table or schema.table')
  .describe('Table name, optionally schema-qualified; quote mixed-case names as in SQL');

const exprMap = z
  .record(z.string().min(1), z.string().min(1))
  .refine((m) => Object.keys(m).length > 0, 'must map at least one column');

export const tlsListenSchema = z
  .object({
    cert: z.string().min(1).describe('PEM certificate file'),
    key: z.string().min(1).describe('PEM private key file'),
  })
  .strict();

export const listenSchema = z
  .object({
    host: host.default('0.0.0.0'),
    port: port.default(6432),
    tls: tlsListenSchema.optional().describe('Terminate TLS from clients (answer SSLRequest with S)'),
  })
  .strict();

export const upstreamSchema = z
  .object({
    host: host.optional(),
    port: port.optional(),
    url: z
      .string()
      .regex(/^postgres(?:ql)?:\/\//, 'must be a postgres:// URL')
      .refine((u) => URL.canParse(u) && new URL(u).hostname !== '', 'is not a valid URL with a host')
      .optional()
      .describe('postgres://host:port; host and port are taken from it'),
    sslmode: z.enum(['disable', 'require', 'verify-full']).default('disable'),
    ca: z.string().optional().describe('CA certificate file for sslmode verify-full'),
    connectTimeoutMs: z.number().int().positive().default(5000),
  })
  .strict()
  .refine((u) => u.url !== undefined || u.host !== undefined, 'needs host (and port) or url');

export const adminSchema = z
  .object({
    host: host.default('127.0.0.1'),
    port: port.default(9187),
    tokenEnv: z
      .string()
      .default('SWITCHYARD_ADMIN_TOKEN')
      .describe('Environment variable holding the bearer token for mutating endpoints'),
  })
  .strict();

export const limitsSchema = z
  .object({
    maxClientConnections: z.number().int().positive().default(1000),
    startupTimeoutMs: z.number().int().positive().default(10000),
    maxMessageBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
  })
  .strict();

/** The same table name as written (case-insensitive outside quotes, public. optional). */
function sameName(a: string, b: string): boolean {
  const norm = (s: string) =>
    s
      .replace(/"((?:[^"]|"")*)"|([^".]+)/g, (_, q: string | undefined, u: string | undefined) =>
        q !== undefined ? q.replaceAll('""', '"') : (u ?? '').toLowerCase(),
      )
      .replace(/^public\./, '');
  return norm(a) === norm(b);
}

export const fleetSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('Follow the switches in the control table (switchyard.switch_changes) over the file'),
    pollMs: z.number().int().positive().default(30000).describe('Re-read the control table this often'),
    heartbeatMs: z.number().int().positive().default(5000).describe('Heartbeat row refresh interval'),
    staleAfterMs: z
      .number()
      .int()
      .positive()
      .default(30000)
      .describe('A sidecar whose heartbeat is older than this counts as gone'),
  })
  .strict();

export const mappingSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, _ . - only')
      .describe('Unique mapping name'),
    old: tableName.describe('The table the application writes today'),
    new: tableName.describe('The table being migrated to'),
    key: z.array(z.string().min(1)).min(1).describe('Key columns of the new table (primary key or unique)'),
    dualWrite: z
      .union([z.boolean(), z.literal('both')])
      .default(true)
      .describe(
        'true: mirror writes on old into new (by up); both: also mirror writes on new into old (by down); false: mirror nothing',
      ),
    oldKey: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        "Key columns of the old table that writes on new are mirrored by (dualWrite: both); default: the old table's primary key",
      ),
    reads: z
      .union([
        z.enum(['old', 'new']),
        z
          .object({
            new: z
              .number()
              .int()
              .min(0)
              .max(100)
              .describe('Percent of client sessions whose reads new serves'),
          })
          .strict(),
      ])
      .default('old')
      .describe(
        'Which table serves reads of old: old, new, or { new: N } for N percent of client sessions (canary)',
      ),
    shadowReads: z
      .object({
        sample: z
          .number()
          .min(0)
          .max(1)
          .describe('Share of reads served from old that are also run against new'),
        maxConcurrent: z
          .number()
          .int()
          .positive()
          .default(2)
          .describe('Shadow reads running at once; a sampled read beyond that is skipped'),
      })
      .strict()
      .optional()
      .describe('Compare reads served from old with the same read switched to new, off the client path'),
    up: exprMap.describe('new column -> SQL expression over the old row'),
    down: exprMap
      .optional()
      .describe('old column -> SQL expression over the new row (needed for reads: new)'),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.shadowReads && !m.down) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: 'missing required key down: shadowReads runs reads against the new table through down',
      });
    }
    if (readsNewPercent(m.reads) > 0 && !m.down) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          'missing required key down: reads: new serves reads from the new table, so every old column needs an SQL expression over the new row',
      });
    }
    if (m.dualWrite === 'both' && !m.down) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          'missing required key down: dualWrite: both mirrors writes on new into old, so old columns need SQL expressions over the new row',
      });
    }
    for (const k of m.oldKey ?? []) {
      if (m.down && !(k in m.down)) {
        ctx.addIssue({ code: 'custom', path: ['oldKey'], message: `column ${k} has no down expression` });
      }
    }
    // A column migration inside one table keys by the table's own key, which has no up expression.
    const sameTable = sameName(m.old, m.new);
    for (const k of m.key) {
      if (!sameTable && !(k in m.up)) {
        ctx.addIssue({ code: 'custom', path: ['key'], message: `column ${k} has no up expression` });
      }
    }
  });

const ddlMode = z.enum(['warn', 'enforce', 'off']);

/** Every rule warns but one: DDL that would break a live mapping is refused. */
const DDL_RULE_DEFAULTS = {
  lockTimeout: 'warn',
  createIndex: 'warn',
  constraintNotValid: 'warn',
  setNotNull: 'warn',
  typeRewrite: 'warn',
  volatileDefault: 'warn',
  mappingBreak: 'enforce',
} as const;

/** DDL guardrails: `warn` sends a notice naming the safe alternative, `enforce` refuses with 0A000, `off` lets it be. */
export const ddlSchema = z
  .object({
    lockTimeoutMs: z
      .number()
      .int()
      .positive()
      .default(3000)
      .describe('lock_timeout a DDL statement runs with when its session has none'),
    rules: z
      .object({
        lockTimeout: ddlMode
          .default('warn')
          .describe('DDL from a session without lock_timeout: warn sets it for the statement'),
        createIndex: ddlMode.default('warn').describe('CREATE INDEX without CONCURRENTLY'),
        constraintNotValid: ddlMode
          .default('warn')
          .describe('ADD CONSTRAINT CHECK / FOREIGN KEY without NOT VALID'),
        setNotNull: ddlMode
          .default('warn')
          .describe('SET NOT NULL without a validated CHECK (col IS NOT NULL)'),
        typeRewrite: ddlMode.default('warn').describe('ALTER COLUMN TYPE that rewrites the table'),
        volatileDefault: ddlMode.default('warn').describe('ADD COLUMN with a volatile default'),
        mappingBreak: ddlMode
          .default('enforce')
          .describe('DDL that would break a mapping that mirrors or reads its tables'),
      })
      .strict()
      .default(DDL_RULE_DEFAULTS),
  })
  .strict();

export const configSchema = z
  .object({
    listen: listenSchema.default({ host: '0.0.0.0', port: 6432 }),
    upstream: upstreamSchema,
    admin: adminSchema.default({ host: '127.0.0.1', port: 9187, tokenEnv: 'SWITCHYARD_ADMIN_TOKEN' }),
    killSwitch: z.boolean().default(false).describe('true: mirror nothing, on every mapping, now'),
    onUnmirrorable: z.enum(['passthrough', 'reject']).default('passthrough'),
    limits: limitsSchema.default({
      maxClientConnections: 1000,
      startupTimeoutMs: 10000,
      maxMessageBytes: 64 * 1024 * 1024,
    }),
    shutdown: z
      .object({ drainTimeoutMs: z.number().int().nonnegative().default(30000) })
      .strict()
      .default({ drainTimeoutMs: 30000 }),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') })
      .strict()
      .default({ level: 'info' }),
    fleet: fleetSchema.default({ enabled: false, pollMs: 30000, heartbeatMs: 5000, staleAfterMs: 30000 }),
    ddl: ddlSchema.default({ lockTimeoutMs: 3000, rules: DDL_RULE_DEFAULTS }),
    mappings: z.array(mappingSchema).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.mappings.forEach((m, i) => {
      if (seen.has(m.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['mappings', i, 'name'],
          message: 'another mapping has the same name',
        });
      }
      seen.add(m.name);
    });
  });

export type Config = z.infer<typeof configSchema>;
export type ReadsSetting = 'old' | 'new' | { new: number };

/** The share of client sessions (0..100) whose reads a mapping serves from new. */
export function readsNewPercent(reads: ReadsSetting): number {
  return reads === 'new' ? 100 : reads === 'old' ? 0 : reads.new;
}

/** reads as an operator writes it: old, new, or "new 10%". */
export function readsText(reads: ReadsSetting): string {
  return typeof reads === 'string' ? reads : `new ${reads.new}%`;
}
export type MappingConfig = z.infer<typeof mappingSchema>;
