// The plan for a write on a mapped table that cannot be mirrored: forwarded
// and counted under onUnmirrorable: passthrough, refused (SQLSTATE 0A000, the
// mapping named) under reject.
import type { Plan, PlanContext, StatementShape, UnmirroredReason } from './plan-types.ts';

export function unmirrorablePlan(
  sql: string,
  ctx: PlanContext,
  mapping: string,
  reason: UnmirroredReason,
  detail: string | undefined,
  statements: StatementShape[],
): Plan {
  const plan: Plan = {
    sql,
    rewritten: false,
    route: 'passthrough',
    mapping,
    statements,
    unmirrored: { mapping, reason, ...(detail ? { detail } : {}) },
  };
  if (ctx.onUnmirrorable === 'reject') {
    const why: Record<UnmirroredReason, string> = {
      copy: 'COPY into a mapped table',
      truncate: 'TRUNCATE of a mapped table',
      where_current_of: 'WHERE CURRENT OF on a mapped table',
      volatile_predicate: detail ?? 'a key-moving UPDATE whose WHERE calls a function',
      parse_error: 'SQL switchyard cannot parse',
      unsupported: detail ?? 'this statement form',
      function_body: detail ?? 'a write in a function body',
      dynamic_sql: detail ?? 'dynamic SQL in a function body',
    };
    plan.reject = {
      mapping,
      message: `switchyard: mapping ${mapping} cannot mirror ${reason === 'unsupported' ? detail || 'this statement' : why[reason]} (onUnmirrorable: reject)${reason === 'parse_error' && detail ? `: ${detail}` : ''}`,
    };
  }
  return plan;
}
