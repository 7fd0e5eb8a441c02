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
import { compileRules, type RuleSet } from '../rules/ruleset.ts';
import { registerMirrorTargets } from './mirror-errors.ts';
import { NO_RULES, type SessionRules } from './rules-port.ts';

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

function sessionRules(ruleset: RuleSet, config: Config): CompiledRules {
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
  };
  registerMirrorTargets(
    session,
    new Map(ruleset.mappings.map((m) => [m.name, { forward: m.new, reverse: m.old }])),
  );
  return { ruleset, session };
}

/** A compile function for one config store; it remembers the last catalog check it made. */
export function rulesCompiler(): (config: Config) => Promise<CompiledRules> {
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
      return sessionRules(withSwitches(last.ruleset, config), config);
    }
    const ruleset = await compileRules(config);
    last = { key, ruleset };
    return sessionRules(ruleset, config);
  };
}

/** One-off compile (no memory of earlier checks). */
export async function compileSessionRules(config: Config): Promise<CompiledRules> {
  return sessionRules(await compileRules(config), config);
}
