// The compile step of the config store: a config becomes the rules sessions
// use. Compiling reads the catalog (compileRules), so a reload whose mapping
// does not match the database is refused before any session sees it.
//
// A reload that only flips switches (killSwitch, dualWrite, reads,
// onUnmirrorable) keeps the catalog facts of the previous compile: the flip
// takes effect at once, even when the database is slow or overloaded, which
// is exactly when an operator reaches for the kill switch.
import { ConfigError } from '../config/load.ts';
import { type Config, readsNewPercent } from '../config/schema.ts';
import { defaultPathFor } from '../rules/path-defaults.ts';
import { Planner, parseSearchPath, roleChanges, searchPathChange } from '../rules/planner.ts';
import { compileRules, type RuleSet, withReads } from '../rules/ruleset.ts';
import { registerMirrorTargets } from './mirror-errors.ts';
import { NO_RULES, type SessionRules, type ShadowSink } from './rules-port.ts';

export interface CompiledRules {
  session: SessionRules;
  ruleset?: RuleSet;
}

/** What the catalog check depends on: switches are left out. */
function definitionKey(config: Config): string {
  return JSON.stringify([
    config.upstream,
    config.mappings.map((m) => [m.name, m.old, m.new, m.key, m.up, m.down, m.oldKey]),
  ]);
}

/** The same catalog facts under the new config's switches. */
function withSwitches(prev: RuleSet, config: Config): RuleSet {
  const mappings = prev.mappings.map((m, i) => {
    const mc = config.mappings[i];
    if (readsNewPercent(mc.reads) > 0 && !m.sameTable) {
      const missing = m.oldColumns.filter((c) => !(m.down ?? []).some((d) => d.column === c.name));
      if (missing.length > 0) {
        throw new ConfigError(
          `mapping ${mc.name}: reads: new needs a down expression for every old column; missing ${missing.map((c) => c.name).join(', ')}`,
        );
      }
    }
    return { ...m, config: mc };
  });
  return { ...prev, mappings };
}

/**
 * Shadow reads: a sampled read that the session served from old (a simple
 * Query, or an extended-protocol statement with its values) is planned again
 * with the mapping's reads switched to new, and both texts go to the sink,
 * which runs them on a connection of its own.
 */
function shadowReads(ruleset: RuleSet, sink: ShadowSink | undefined): SessionRules['shadow'] {
  const shadowed = ruleset.mappings.filter((m) => m.config.shadowReads && m.config.shadowReads.sample > 0);
  if (!sink || shadowed.length === 0) return undefined;
  const switched = new Planner(withReads(ruleset, 'new', (m) => m.config.shadowReads !== undefined));
  const byName = new Map(shadowed.map((m) => [m.name, m.config.shadowReads!]));
  return (sql, plan, ctx, params) => {
    const s = plan.route === 'read_old' ? byName.get(plan.mapping) : undefined;
    if (!s || plan.statements.length !== 1 || Math.random() >= s.sample) return;
    // Values are read only for a read that was sampled; binary ones cannot be re-sent as text.
    const values = params?.();
    if (params && !values) return;
    const sw = switched.plan(sql, { ...ctx, simpleQuery: !params, prepared: undefined });
    if (sw.route !== 'read_new' || sw.statements.length !== 1 || !sw.rewritten) return;
    sink.offer({
      mapping: plan.mapping,
      oldSql: sql,
      newSql: sw.sql,
      searchPath: ctx.searchPath,
      maxConcurrent: s.maxConcurrent,
      ...(values ? { params: values } : {}),
    });
  };
}

function sessionRules(ruleset: RuleSet, config: Config, sink?: ShadowSink): CompiledRules {
  // No mappings: a transparent proxy, DDL guardrails included (they guard the migrations it serves).
  if (ruleset.mappings.length === 0) return { session: NO_RULES, ruleset };
  const planner = new Planner(ruleset, { ddl: config.ddl });
  const session: SessionRules = {
    database: ruleset.database,
    active: true,
    plan: (sql, ctx) => planner.plan(sql, ctx),
    searchPathChange,
    roleChanges,
    parseSearchPath,
    defaultSearchPath: (role) => {
      const d = defaultPathFor(ruleset.searchPathDefaults, role);
      return d === undefined ? undefined : parseSearchPath(d);
    },
    shadow: shadowReads(ruleset, sink),
  };
  registerMirrorTargets(
    session,
    new Map(ruleset.mappings.map((m) => [m.name, { forward: m.new, reverse: m.old }])),
  );
  return { ruleset, session };
}

/** A compile function for one config store; it remembers the last catalog check it made. */
export function rulesCompiler(sink?: ShadowSink): (config: Config) => Promise<CompiledRules> {
  let last: { key: string; ruleset: RuleSet } | undefined;
  return async (config) => {
    const key = definitionKey(config);
    // Mirroring into old (dualWrite: both) needs the old key and checks the
    // last compile did not make: a flip to both reads the catalog; a flip back is instant.
    const reverseReady = (rs: RuleSet) =>
      config.mappings.every(
        (m, i) =>
          m.dualWrite !== 'both' || rs.mappings[i]?.reverse !== undefined || rs.mappings[i]?.sameTable,
      );
    if (last && last.key === key && reverseReady(last.ruleset)) {
      return sessionRules(withSwitches(last.ruleset, config), config, sink);
    }
    const ruleset = await compileRules(config);
    last = { key, ruleset };
    return sessionRules(ruleset, config, sink);
  };
}

/** One-off compile (no memory of earlier checks). */
export async function compileSessionRules(config: Config): Promise<CompiledRules> {
  return sessionRules(await compileRules(config), config);
}
