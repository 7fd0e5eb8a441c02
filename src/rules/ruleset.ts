// Compiles the config's mappings against the live catalog: resolves schemas,
// loads column lists, checks the key and every up/down expression without
// touching data. The result is what the planner, backfill and verify use.
import pg from 'pg';
import { ConfigError } from '../config/load.ts';
import { type Config, type MappingConfig, readsNewPercent } from '../config/schema.ts';
import { upstreamClientConfig } from '../pg/connect.ts';
import { parseQualifiedName, quoteIdent, quoteQualified } from '../pg/ident.ts';
import { loadParser } from '../sql/parse.ts';
import { explain, isUniqueKey } from './catalog-checks.ts';
import { compileColumns } from './columns-compile.ts';
import { expressionProblem } from './expr-check.ts';
import {
  type ColumnExpr,
  type ColumnInfo,
  type ColumnOrigin,
  type CompiledMapping,
  type ResolvedTable,
  reversed,
} from './mapping.ts';
import { readSearchPathDefaults, type SearchPathDefaults } from './path-defaults.ts';
import {
  createDeleteKeysFunctionSql,
  deleteKeysFunction,
  deleteKeysFunctionBody,
  deleteKeysFunctionName,
  HELPER_SCHEMA,
  OLD_ROW_ALIAS,
  qualified,
  upsertSql,
} from './rowsql.ts';

export interface RuleSet {
  mappings: CompiledMapping[];
  /** The database the catalog was read from; rules apply only to sessions on it ('' when no mappings). */
  database: string;
  /** Server major version (e.g. 15, 18); 0 when no mappings (never connected). */
  serverVersion: number;
  /**
   * Every relation in the catalog whose name equals a mapped old or new table's
   * name, as "schema\u0000name": resolving an unqualified name through a
   * session's search_path needs to know which schemas hold a table of that name.
   */
  relations: Set<string>;
  /** search_path defaults of roles and of this database (ALTER ROLE/DATABASE ... SET search_path). */
  searchPathDefaults?: SearchPathDefaults;
}

export function relationKey(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

/** The same rules with `reads` set on the mappings `which` picks (all by default): a plan as if switched. */
export function withReads(
  rules: RuleSet,
  reads: 'old' | 'new',
  which: (m: CompiledMapping) => boolean = () => true,
): RuleSet {
  return {
    ...rules,
    mappings: rules.mappings.map((m) => (which(m) ? { ...m, config: { ...m.config, reads } } : m)),
  };
}

export interface CompileOptions {
  /** Overrides the connection settings derived from the config (tests). */
  connect?: pg.ClientConfig;
  /**
   * Install the helper functions mirrored writes call (default true). Commands
   * that never send mirrored writes (backfill, verify) pass false so that they
   * create nothing they do not use (a backfill --dry-run touches nothing).
   */
  installHelpers?: boolean;
}

export async function compileRules(config: Config, opts: CompileOptions = {}): Promise<RuleSet> {
  await loadParser();
  if (config.mappings.length === 0) {
    return { mappings: [], database: '', serverVersion: 0, relations: new Set() };
  }
  const client = new pg.Client(upstreamClientConfig(config, opts.connect));
  try {
    await client.connect();
  } catch (e) {
    throw new ConfigError(`cannot connect to the upstream to check mappings: ${(e as Error).message}`);
  }
  try {
    const info = await client.query<{ db: string; v: string }>(
      "SELECT current_database() AS db, current_setting('server_version_num') AS v",
    );
    const mappings: CompiledMapping[] = [];
    for (const m of config.mappings) mappings.push(await compileMapping(client, m));
    // A column migration needs no helper: its writes never touch another table.
    const twoTable = mappings.filter((m) => !m.sameTable);
    if (opts.installHelpers !== false && twoTable.length > 0) await installHelpers(client, twoTable);
    const names = [...new Set(mappings.flatMap((m) => [m.old.name, m.new.name]))];
    const rel = await client.query<{ nspname: string; relname: string }>(
      `SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = ANY($1::text[]) AND c.relkind IN ('r','p','v','m','f')`,
      [names],
    );
    return {
      mappings,
      database: info.rows[0].db,
      serverVersion: Math.floor(Number(info.rows[0].v) / 10000),
      relations: new Set(rel.rows.map((r) => relationKey(r.nspname, r.relname))),
      searchPathDefaults: await readSearchPathDefaults(client),
    };
  } finally {
    await client.end().catch(() => {});
  }
}

async function resolveTable(
  client: pg.Client,
  mapping: string,
  role: 'old' | 'new',
  text: string,
): Promise<{ table: ResolvedTable; oid: number }> {
  const q = parseQualifiedName(text);
  // to_regclass resolves an unqualified name through this connection's (the role's default) search_path.
  const r = await client.query<{ oid: number; nspname: string; relname: string }>(
    `SELECT c.oid::int8::float8 AS oid, n.nspname, c.relname FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r','p')`,
    [quoteQualified(q)],
  );
  if (r.rowCount === 0) {
    throw new ConfigError(`mapping ${mapping}: ${role} table ${text} does not exist`);
  }
  return { table: { schema: r.rows[0].nspname, name: r.rows[0].relname }, oid: r.rows[0].oid };
}

async function columnsOf(client: pg.Client, oid: number): Promise<ColumnInfo[]> {
  const r = await client.query<ColumnInfo>(
    `SELECT attname AS name, pg_catalog.format_type(atttypid, atttypmod) AS type
       FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  return r.rows;
}

async function originsOf(client: pg.Client, oid: number): Promise<ColumnOrigin[]> {
  const r = await client.query<{ attnum: number; typ: number; typmod: number }>(
    `SELECT attnum, atttypid::int8::float8 AS typ, atttypmod AS typmod
       FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  return r.rows.map((x) => ({ table: oid, attnum: x.attnum, typeOid: x.typ, typmod: x.typmod }));
}

async function compileMapping(client: pg.Client, m: MappingConfig): Promise<CompiledMapping> {
  const where = `mapping ${m.name}`;
  const oldT = await resolveTable(client, m.name, 'old', m.old);
  const newT = await resolveTable(client, m.name, 'new', m.new);
  const oldColumns = await columnsOf(client, oldT.oid);
  const oldOrigins = await originsOf(client, oldT.oid);
  // old and new the same table: a column migration inside it (columns-compile.ts).
  if (oldT.oid === newT.oid) return compileColumns(client, m, oldT.table, oldT.oid, oldColumns, oldOrigins);
  const newColumns = await columnsOf(client, newT.oid);
  const oldNames = new Set(oldColumns.map((c) => c.name));
  const newNames = new Set(newColumns.map((c) => c.name));
  const up: ColumnExpr[] = Object.entries(m.up).map(([column, expr]) => ({ column, expr }));
  const down: ColumnExpr[] | undefined = m.down
    ? Object.entries(m.down).map(([column, expr]) => ({ column, expr }))
    : undefined;
  // Before any SQL of ours is built around them (see expr-check.ts).
  const sides = { up, down: down ?? [] };
  for (const [side, list] of Object.entries(sides)) {
    for (const x of list) {
      const problem = expressionProblem(x.expr);
      if (problem) {
        throw new ConfigError(
          `${where}: ${side} expression ${JSON.stringify(x.expr)} for column ${x.column} ${problem}`,
        );
      }
    }
  }

  for (const u of up) {
    if (!newNames.has(u.column)) {
      throw new ConfigError(`${where}: up column ${u.column} does not exist in ${qualified(newT.table)}`);
    }
  }
  for (const d of down ?? []) {
    if (!oldNames.has(d.column)) {
      throw new ConfigError(`${where}: down column ${d.column} does not exist in ${qualified(oldT.table)}`);
    }
  }
  if (readsNewPercent(m.reads) > 0) {
    const missing = oldColumns.filter((c) => !(down ?? []).some((d) => d.column === c.name));
    if (missing.length > 0) {
      throw new ConfigError(
        `${where}: reads: new needs a down expression for every old column; missing ${missing.map((c) => c.name).join(', ')}`,
      );
    }
  }
  for (const k of m.key) {
    if (!newNames.has(k)) {
      throw new ConfigError(`${where}: key column ${k} does not exist in ${qualified(newT.table)}`);
    }
    if (!up.some((u) => u.column === k))
      throw new ConfigError(`${where}: key column ${k} has no up expression`);
  }
  if (!(await isUniqueKey(client, newT.oid, m.key))) {
    throw new ConfigError(
      `${where}: key (${m.key.join(', ')}) is not the primary key or a unique index of ${qualified(newT.table)}`,
    );
  }

  const compiled: CompiledMapping = {
    name: m.name,
    config: m,
    old: oldT.table,
    new: newT.table,
    key: [...m.key],
    up,
    down,
    oldColumns,
    oldOrigins,
    newColumns,
  };

  // Expressions are checked by planning, never executing, inside a transaction that is rolled back.
  await client.query('BEGIN');
  try {
    const newType = new Map(newColumns.map((c) => [c.name, c.type]));
    const oldType = new Map(oldColumns.map((c) => [c.name, c.type]));
    for (const u of up) {
      await explain(
        client,
        `SELECT (${u.expr})::${newType.get(u.column)} FROM ${qualified(oldT.table)} AS ${OLD_ROW_ALIAS}`,
        `${where}: up expression ${JSON.stringify(u.expr)} for column ${u.column}`,
      );
    }
    for (const d of down ?? []) {
      await explain(
        client,
        `SELECT (${d.expr})::${oldType.get(d.column)} FROM ${qualified(newT.table)}`,
        `${where}: down expression ${JSON.stringify(d.expr)} for column ${d.column}`,
      );
    }
    // The mirror's own upsert: assignment casts, the ON CONFLICT arbiter, privileges.
    await explain(
      client,
      upsertSql(compiled, `SELECT * FROM ${qualified(oldT.table)}`),
      `${where}: upsert into ${qualified(newT.table)}`,
    );
    if (m.dualWrite === 'both') compiled.reverse = await compileReverse(client, compiled, oldT.oid);
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
  return compiled;
}

/**
 * The mapping from the new table's side (dualWrite: both): writes on new are
 * upserted into old by down, keyed by the old table's key (oldKey, or its
 * primary key). Checked like the forward direction: the key is unique on old,
 * every key column and every old column that an insert could not leave to a
 * default has a down expression, and the upsert plans (casts, privileges).
 * Runs inside compileMapping's rolled-back transaction.
 */
async function compileReverse(
  client: pg.Client,
  m: CompiledMapping,
  oldOid: number,
): Promise<CompiledMapping> {
  const where = `mapping ${m.name}`;
  const old = qualified(m.old);
  let oldKey = m.config.oldKey;
  if (!oldKey) {
    const pk = await client.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      [oldOid],
    );
    if (pk.rowCount === 0) {
      throw new ConfigError(
        `${where}: dualWrite: both mirrors writes on new into old by the old table's key, and ${old} has no primary key; name the columns of a unique index in oldKey`,
      );
    }
    oldKey = pk.rows.map((r) => r.name);
  } else if (!(await isUniqueKey(client, oldOid, oldKey))) {
    throw new ConfigError(
      `${where}: oldKey (${oldKey.join(', ')}) is not the primary key or a unique index of ${old}`,
    );
  }
  const down = new Set((m.down ?? []).map((d) => d.column));
  const noDown = oldKey.filter((k) => !down.has(k));
  if (noDown.length > 0) {
    throw new ConfigError(
      `${where}: dualWrite: both needs a down expression for the old key column ${noDown.join(', ')}`,
    );
  }
  // An insert into old leaves columns without down to their defaults: NOT NULL needs one.
  const required = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_catalog.pg_attribute
      WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attnotnull
        AND NOT atthasdef AND attidentity = '' AND attgenerated = '' ORDER BY attnum`,
    [oldOid],
  );
  const uncovered = required.rows.map((r) => r.name).filter((c) => !down.has(c));
  if (uncovered.length > 0) {
    throw new ConfigError(
      `${where}: dualWrite: both inserts rows written on new into ${old}, whose column ${uncovered.join(', ')} is NOT NULL with no default and has no down expression`,
    );
  }
  const reverse = reversed(m, oldKey);
  await explain(
    client,
    upsertSql(reverse, `SELECT * FROM ${qualified(m.new)}`),
    `${where}: dualWrite: both upsert into ${old}`,
  );
  return reverse;
}

/**
 * Installs, for each mapping, the function a mirrored DELETE (and a key move)
 * calls to delete from the new table by key with a fresh snapshot (see
 * deleteKeysFunctionBody). An identical existing function is left alone, so a
 * role without CREATE can run once someone who has it has installed them.
 */
async function installHelpers(client: pg.Client, mappings: CompiledMapping[]): Promise<void> {
  await client.query('BEGIN');
  try {
    // The same lock the backfill takes to create the schema: concurrent CREATEs can collide in the catalog.
    await client.query(`SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('switchyard.schema'))`);
    // format_type then qualifies every type outside pg_catalog: the body must not depend on the caller's path.
    await client.query('SET LOCAL search_path = pg_catalog, pg_temp');
    const done = new Set<string>();
    // dualWrite: both deletes from old by the old key too: the reverse direction has its own function.
    for (const m of mappings.flatMap((x) => (x.reverse ? [x, x.reverse] : [x]))) {
      const name = deleteKeysFunctionName(m);
      if (done.has(name)) continue;
      done.add(name);
      const types = await client.query<{ name: string; type: string }>(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
           FROM pg_attribute a
          WHERE a.attrelid = to_regclass($1) AND a.attname = ANY($2::text[])`,
        [qualified(m.new), m.key],
      );
      const byName = new Map(types.rows.map((r) => [r.name, r.type]));
      const body = deleteKeysFunctionBody(
        m,
        m.key.map((k) => byName.get(k) ?? 'text'),
      );
      const existing = await client.query(
        `SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND p.proname = $2 AND p.proargtypes = '3802'::oidvector
            AND p.prosrc = $3 AND p.prorettype = 'int8'::regtype AND p.provolatile = 'v'
            AND p.proisstrict AND NOT p.prosecdef AND p.proconfig IS NULL
            AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')`,
        [HELPER_SCHEMA, name, body],
      );
      if (existing.rowCount === 0) {
        await client.query('SAVEPOINT sy_install');
        try {
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(HELPER_SCHEMA)}`);
          await client.query(createDeleteKeysFunctionSql(m, body));
          await client.query('RELEASE SAVEPOINT sy_install');
        } catch (e) {
          await client.query('ROLLBACK TO SAVEPOINT sy_install').catch(() => {});
          throw new ConfigError(
            `mapping ${m.name}: cannot install ${deleteKeysFunction(m)}(jsonb), which mirrored deletes call: ` +
              `${(e as Error).message}. The catalog connection's role needs CREATE on the database ` +
              `(to create schema ${HELPER_SCHEMA}) or on schema ${HELPER_SCHEMA}, and must own the function ` +
              'if it already exists; or install it once with such a role',
          );
        }
      }
    }
    // Mirrored writes run as the client's role: it needs USAGE on the schema (EXECUTE is PUBLIC's by default).
    const usage = await client.query<{ ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                       WHERE n.nspname = $1 AND a.grantee = 0 AND a.privilege_type = 'USAGE') AS ok`,
      [HELPER_SCHEMA],
    );
    if (!usage.rows[0].ok) {
      await client.query('SAVEPOINT sy_install');
      try {
        await client.query(`GRANT USAGE ON SCHEMA ${quoteIdent(HELPER_SCHEMA)} TO PUBLIC`);
        await client.query('RELEASE SAVEPOINT sy_install');
      } catch (e) {
        await client.query('ROLLBACK TO SAVEPOINT sy_install').catch(() => {});
        throw new ConfigError(
          `mapping ${mappings[0].name}: schema ${HELPER_SCHEMA} lacks USAGE for PUBLIC, which mirrored deletes ` +
            `need, and it cannot be granted: ${(e as Error).message}. ` +
            `Run GRANT USAGE ON SCHEMA ${HELPER_SCHEMA} TO PUBLIC as its owner`,
        );
      }
      const again = await client.query<{ ok: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                         WHERE n.nspname = $1 AND a.grantee = 0 AND a.privilege_type = 'USAGE') AS ok`,
        [HELPER_SCHEMA],
      );
      if (!again.rows[0].ok) {
        throw new ConfigError(
          `mapping ${mappings[0].name}: schema ${HELPER_SCHEMA} lacks USAGE for PUBLIC, which mirrored deletes ` +
            `need, and this role may not grant it. Run GRANT USAGE ON SCHEMA ${HELPER_SCHEMA} TO PUBLIC as its owner`,
        );
      }
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
