// The compile step of the config store: a config becomes the rules sessions
// use. Compiling reads the catalog (compileRules), so a reload whose mapping
// does not match the database is refused before any session sees it.
import type { Config } from '../config/schema.ts';
import { Planner, parseSearchPath, searchPathChange } from '../rules/planner.ts';
import { compileRules, type RuleSet } from '../rules/ruleset.ts';
import { NO_RULES, type SessionRules } from './rules-port.ts';

export interface CompiledRules {
  session: SessionRules;
  ruleset?: RuleSet;
}

export async function compileSessionRules(config: Config): Promise<CompiledRules> {
  const ruleset = await compileRules(config);
  if (ruleset.mappings.length === 0) return { session: NO_RULES, ruleset };
  const planner = new Planner(ruleset);
  return {
    ruleset,
    session: {
      database: ruleset.database,
      active: true,
      plan: (sql, ctx) => planner.plan(sql, ctx),
      searchPathChange,
      parseSearchPath,
    },
  };
}
