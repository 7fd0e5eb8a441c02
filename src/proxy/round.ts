// The config a session works under. Taken at the first message of a round
// while the session is idle (outside a transaction, nothing in flight), and
// kept until the transaction ends, so one transaction never reads old and
// then new or mirrors half of its writes. Plans statements under it.
import type { Logger } from 'pino';
import type { ConfigStore, Snapshot } from '../config/store.ts';
import { metrics } from '../metrics.ts';
import type { Observer } from './reply-queue.ts';
import type { Plan, PlanContext, SessionRules } from './rules-port.ts';
import type { SessionSqlState } from './sql-state.ts';
import type { StatementRegistry } from './statements.ts';

const PT_LABELS = { route: 'passthrough', mapping: '' } as const;

export class Round {
  /** Sync/Query entries in flight: the session is idle only at zero. */
  inFlight = 0;
  snap!: Snapshot<{ session: SessionRules }>;
  private killSwitch = false;
  /** The rules apply to this session's database and there are mappings. */
  rulesApply = false;
  /**
   * This client session's place in a canary (reads: { new: N }): its reads are
   * served from new when bucket < N, for the whole session (sticky).
   */
  readonly bucket = Math.floor(Math.random() * 100);
  readonly passthrough: Observer = {
    latency: metrics.statementLatency.labels('passthrough', ''),
    route: 'passthrough',
    mapping: '',
  };

  constructor(
    private readonly store: ConfigStore<{ session: SessionRules }>,
    private readonly sql: SessionSqlState,
    private readonly statements: StatementRegistry,
    private readonly database: string,
    private readonly logger: Logger,
    private readonly remote: string,
  ) {}

  /** At the first message of a round while idle, the session takes the config in force. */
  begin(): void {
    if (this.inFlight > 0 || !this.sql.idle) return;
    const snap = this.store.current;
    if (snap === this.snap) return;
    this.snap = snap;
    const rules = snap.rules.session;
    this.killSwitch = this.store.killSwitch;
    this.rulesApply = rules.active && (rules.database === undefined || rules.database === this.database);
  }

  /** After authentication: the first round takes the config afresh. */
  reset(): void {
    this.snap = undefined as unknown as Snapshot<{ session: SessionRules }>;
    this.begin();
  }

  get rules(): SessionRules {
    return this.snap.rules.session;
  }

  get version(): number {
    return this.snap.version;
  }

  /** The plan for a text (`simpleQuery`: a Query message) under this round's config; undefined when no rules apply. */
  plan(sql: string, simpleQuery = false): Plan | undefined {
    if (!this.rulesApply) return undefined;
    const plan = this.snap.rules.session.plan(sql, {
      ...this.context(),
      prepared: this.statements.sqlPrepared,
      simpleQuery,
    });
    this.statements.planned(plan);
    for (const d of plan.ddl ?? []) metrics.ddlGuard.inc({ rule: d.rule, mode: d.mode });
    if (plan.unmirrored) {
      metrics.unmirroredWrites.inc({ mapping: plan.unmirrored.mapping, reason: plan.unmirrored.reason });
      this.logger.warn(
        {
          client: this.remote,
          mapping: plan.unmirrored.mapping,
          reason: plan.unmirrored.reason,
          rejected: !!plan.reject,
        },
        'write to a mapped table cannot be mirrored',
      );
    }
    return plan;
  }

  /** A read served from old: offered for a shadow read against new (sampled, off the client's path). */
  shadow(sql: string, plan: Plan | undefined, params?: () => (string | null)[] | undefined): void {
    const shadow = this.snap.rules.session.shadow;
    if (!plan || !shadow || plan.route !== 'read_old') return;
    shadow(sql, plan, this.context(), params);
  }

  /** What a plan depends on in this session, under this round's config. */
  private context(): PlanContext {
    return {
      searchPath: this.sql.searchPath,
      user: this.sql.role,
      killSwitch: this.killSwitch,
      onUnmirrorable: this.snap.config.onUnmirrorable,
      version: this.snap.version,
      defaultSearchPath: this.sql.defaultSearchPath,
      bucket: this.bucket,
    };
  }

  /** Follows what a statement does to the session's SQL state (only where rules apply). */
  follow(sql: string): void {
    if (this.rulesApply) this.sql.follow(sql, this.snap.rules.session);
  }

  observerFor(plan: Plan | undefined, sql?: string, params?: () => (string | null)[] | undefined): Observer {
    if (!plan || (plan.route === 'passthrough' && plan.mapping === '')) return this.passthrough;
    const read = plan.route === 'read_old' || plan.route === 'read_new';
    const values = read && params ? params() : undefined;
    return {
      latency: metrics.statementLatency.labels(plan.route, plan.mapping),
      route: plan.route,
      mapping: plan.mapping,
      ...(sql !== undefined && plan.route !== 'passthrough' ? { sql } : {}),
      ...(values ? { params: values } : {}),
    };
  }

  countPassthrough(): void {
    metrics.statements.inc(PT_LABELS);
  }
}
