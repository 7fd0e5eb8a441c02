// The guardrails as the planner applies them to one DDL statement: which rules
// it meets under the config's modes, which mapped tables it names (resolved
// through the session's search_path like any reference), and what to send:
// a DO block in front of it (a simple Query, where the statement may run in a
// transaction block) or, where nothing may go in front, a refusal of what the
// text alone decides.
import { type Config, readsNewPercent } from '../config/schema.ts';
import type { ParsedStatement } from '../sql/parse.ts';
import {
  type DdlFinding,
  type DdlRule,
  guardBlock,
  lintDdl,
  type MappedTable,
  mappingBreaks,
  runsInTransactionBlock,
} from './ddl-guard.ts';
import type { CompiledMapping } from './mapping.ts';
import { columnsRead } from './mapping-runtime.ts';
import type { PlanContext } from './plan-types.ts';
import { type RuleSet, relationKey } from './ruleset.ts';

export type DdlConfig = Config['ddl'];

export interface DdlFlag {
  rule: DdlRule;
  mode: 'warn' | 'enforce';
}

interface Watched extends MappedTable {
  m: CompiledMapping;
}

/** Columns of each side that the mapping's expressions and keys use. */
function usedColumns(m: CompiledMapping): { old: Set<string>; new: Set<string> } {
  const down = m.down ?? [];
  const old = new Set([...columnsRead(m.up.map((u) => u.expr)), ...down.map((d) => d.column)]);
  const nw = new Set([...m.up.map((u) => u.column), ...columnsRead(down.map((d) => d.expr)), ...m.key]);
  for (const k of m.reverse?.key ?? []) old.add(k);
  if (m.sameTable) for (const k of m.key) old.add(k);
  return { old, new: nw };
}

export class DdlGuard {
  private readonly watched = new Map<string, Watched[]>();

  constructor(
    private readonly cfg: DdlConfig,
    private readonly rules: RuleSet,
  ) {
    for (const m of rules.mappings) {
      const used = usedColumns(m);
      const watch = (t: CompiledMapping['old'], side: 'old' | 'new', cols: Set<string>) => {
        const k = relationKey(t.schema, t.name);
        this.watched.set(k, [...(this.watched.get(k) ?? []), { mapping: m.name, side, used: cols, m }]);
      };
      // One table (a column migration): its columns on either side count.
      if (m.sameTable) watch(m.old, 'old', new Set([...used.old, ...used.new]));
      else {
        watch(m.old, 'old', used.old);
        watch(m.new, 'new', used.new);
      }
    }
  }

  check(
    stmt: ParsedStatement,
    ctx: PlanContext,
    schemas: () => string[],
    simpleQuery: boolean,
  ): { reject?: { mapping: string; message: string }; prefix?: string; flagged: DdlFlag[] } {
    const modes = this.cfg.rules;
    // A mapping is broken by DDL while it mirrors its writes or serves reads from new.
    const live = (m: CompiledMapping) =>
      (m.config.dualWrite !== false && !ctx.killSwitch) || readsNewPercent(m.config.reads) > 0;
    const resolve = (schema: string | undefined, name: string): MappedTable | undefined => {
      const pick = (k: string) => this.watched.get(k)?.find((w) => live(w.m));
      if (schema !== undefined) return pick(relationKey(schema, name));
      for (const s of schemas()) {
        const k = relationKey(s, name);
        if (this.rules.relations.has(k)) return pick(k);
      }
      return undefined;
    };
    const findings: (DdlFinding & { mode: 'warn' | 'enforce' })[] = [];
    for (const f of [...mappingBreaks(stmt, resolve), ...lintDdl(stmt)]) {
      const mode = modes[f.rule];
      if (mode !== 'off') findings.push({ ...f, mode });
    }
    const lt = modes.lockTimeout !== 'off' ? modes.lockTimeout : undefined;
    const flagged: DdlFlag[] = findings.map((f) => ({ rule: f.rule, mode: f.mode }));
    if (simpleQuery && runsInTransactionBlock(stmt)) {
      const prefix = guardBlock({
        findings,
        ...(lt ? { lockTimeout: { mode: lt, ms: this.cfg.lockTimeoutMs } } : {}),
      });
      if (lt) flagged.push({ rule: 'lockTimeout', mode: lt });
      return { ...(prefix ? { prefix } : {}), flagged };
    }
    // Nothing can go in front (a Parse, CREATE INDEX CONCURRENTLY): refuse what the text decides.
    const refuse = findings.find((f) => f.mode === 'enforce' && f.when === undefined);
    if (refuse) {
      return {
        reject: { mapping: refuse.mapping ?? '', message: `${refuse.message} (instead: ${refuse.hint})` },
        flagged,
      };
    }
    return { flagged };
  }
}
