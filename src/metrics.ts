// Every switchyard metric, defined once. The Grafana dashboard and the README
// reference are checked against this registry by a test.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export type Route = 'passthrough' | 'mirrored_write' | 'read_old' | 'read_new';

export const metrics = {
  // connections
  clientConnections: new Gauge({
    name: 'switchyard_client_connections',
    help: 'Client connections currently open',
    registers: [registry],
  }),
  clientConnectionsTotal: new Counter({
    name: 'switchyard_client_connections_total',
    help: 'Client connections accepted',
    registers: [registry],
  }),
  connectionsRejected: new Counter({
    name: 'switchyard_connections_rejected_total',
    help: 'Client connections refused, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  }),
  upstreamConnectErrors: new Counter({
    name: 'switchyard_upstream_connect_errors_total',
    help: 'Failed connection attempts to the upstream, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  }),
  protocolErrors: new Counter({
    name: 'switchyard_protocol_errors_total',
    help: 'Client connections closed for malformed or oversized messages, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  }),
  bytes: new Counter({
    name: 'switchyard_bytes_total',
    help: 'Bytes relayed, by direction',
    labelNames: ['direction'] as const,
    registers: [registry],
  }),
  // statements
  statements: new Counter({
    name: 'switchyard_statements_total',
    help: 'Statements relayed, by route and mapping',
    labelNames: ['route', 'mapping'] as const,
    registers: [registry],
  }),
  statementErrors: new Counter({
    name: 'switchyard_statement_errors_total',
    help: 'Statements that ended in an ErrorResponse, by route and mapping',
    labelNames: ['route', 'mapping'] as const,
    registers: [registry],
  }),
  statementLatency: new Histogram({
    name: 'switchyard_statement_duration_seconds',
    help: 'Time from the statement leaving the client to its completion, by route and mapping',
    labelNames: ['route', 'mapping'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  }),
  mirrorFailures: new Counter({
    name: 'switchyard_mirror_failures_total',
    help: 'Mirrored writes whose mirror part failed (the new table or the helper schema refused the row); the statement failed as a whole',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  mirroredStatementErrors: new Counter({
    name: 'switchyard_mirrored_statement_errors_total',
    help: "The application's own errors on mirrored writes (not caused by the mirror), by SQLSTATE class",
    labelNames: ['mapping', 'class'] as const,
    registers: [registry],
  }),
  unmirroredWrites: new Counter({
    name: 'switchyard_unmirrored_writes_total',
    help: 'Writes to a mapped old table that could not be mirrored, by mapping and reason',
    labelNames: ['mapping', 'reason'] as const,
    registers: [registry],
  }),
  planCache: new Counter({
    name: 'switchyard_plan_cache_total',
    help: 'Plan cache lookups, by result (hit or miss), route, and key (shape: literals normalized; text: exact text)',
    labelNames: ['result', 'route', 'key'] as const,
    registers: [registry],
  }),
  // switches and config
  killSwitch: new Gauge({
    name: 'switchyard_kill_switch',
    help: '1 when the kill switch is on (config file, fleet control table or runtime override)',
    registers: [registry],
  }),
  killSwitchOverride: new Gauge({
    name: 'switchyard_kill_switch_override',
    help: 'Runtime kill switch override: -1 none, 0 forced off, 1 forced on',
    registers: [registry],
  }),
  dualWrite: new Gauge({
    name: 'switchyard_mapping_dual_write',
    help: '1 when the mapping mirrors writes (dualWrite on and kill switch off)',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  ddlGuard: new Counter({
    name: 'switchyard_ddl_guard_total',
    help: 'DDL statements that met a guardrail rule, by rule and mode (warn: sent with a notice or a lock_timeout; enforce: refused, or checked in the database where the catalog decides)',
    labelNames: ['rule', 'mode'] as const,
    registers: [registry],
  }),
  shadowReads: new Counter({
    name: 'switchyard_shadow_reads_total',
    help: 'Sampled reads served from old and run again switched to new, off the client path, by outcome (match, mismatch, error, skipped)',
    labelNames: ['mapping', 'result'] as const,
    registers: [registry],
  }),
  shadowReadMismatches: new Counter({
    name: 'switchyard_shadow_read_mismatches_total',
    help: 'Shadow reads whose switched result differed from the one served from old, twice (the second time in a fresh snapshot)',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  roundTripLossy: new Gauge({
    name: 'switchyard_mapping_round_trip_lossy_columns',
    help: 'Columns that do not survive a round trip through the other table (side old: down(up(old)) = old fails; side new: up(down(new)) = new fails), found by the check the proxy runs for dualWrite: both',
    labelNames: ['mapping', 'side'] as const,
    registers: [registry],
  }),
  readsNew: new Gauge({
    name: 'switchyard_mapping_reads_new',
    help: 'Share of client sessions whose reads the mapping serves from the new table: 1 for reads: new, 0 for old, N/100 for a canary { new: N }',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  configVersion: new Gauge({
    name: 'switchyard_config_version',
    help: 'Version of the config in force (increments on each accepted reload)',
    registers: [registry],
  }),
  configReloads: new Counter({
    name: 'switchyard_config_reloads_total',
    help: 'Config reload attempts, by result (ok or error)',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  // the fleet's control table
  fleetVersion: new Gauge({
    name: 'switchyard_fleet_version',
    help: 'Control-table switch version this sidecar applies (0: none read, the file alone)',
    registers: [registry],
  }),
  fleetMappingVersion: new Gauge({
    name: 'switchyard_fleet_mapping_version',
    help: "Control-table version of the latest change applied to the mapping's switches, the fleet-wide kill switch included",
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  fleetControlConnected: new Gauge({
    name: 'switchyard_fleet_control_connected',
    help: '1 while the control connection is up and reading the control table',
    registers: [registry],
  }),
  fleetControlErrors: new Counter({
    name: 'switchyard_fleet_control_errors_total',
    help: 'Failed control connections or control-table reads (each one retried with backoff)',
    registers: [registry],
  }),
  fleetLastSync: new Gauge({
    name: 'switchyard_fleet_last_sync_timestamp_seconds',
    help: 'Unix time of the last successful read of the control table',
    registers: [registry],
  }),
  ready: new Gauge({
    name: 'switchyard_ready',
    help: '1 when the proxy reports ready (config valid, upstream reachable, not draining)',
    registers: [registry],
  }),
  // backfill and verify
  backfillRows: new Counter({
    name: 'switchyard_backfill_rows_total',
    help: 'Rows copied by backfill',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  backfillBatches: new Counter({
    name: 'switchyard_backfill_batches_total',
    help: 'Backfill batches committed',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  backfillRate: new Gauge({
    name: 'switchyard_backfill_rows_per_second',
    help: 'Backfill copy rate over the last batches',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  backfillLag: new Gauge({
    name: 'switchyard_backfill_replica_lag_seconds',
    help: 'Replica lag last measured by the backfill throttle',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  backfillThrottled: new Counter({
    name: 'switchyard_backfill_throttled_seconds_total',
    help: 'Time the backfill spent waiting for replicas to catch up',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  backfillProgress: new Gauge({
    name: 'switchyard_backfill_progress_ratio',
    help: 'Fraction of the backfill key range done (0..1)',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
  verifyChunks: new Counter({
    name: 'switchyard_verify_chunks_total',
    help: 'Chunks compared by verify, by result (match or differ)',
    labelNames: ['mapping', 'result'] as const,
    registers: [registry],
  }),
  verifyDrift: new Counter({
    name: 'switchyard_verify_drift_rows_total',
    help: 'Rows found drifted by verify, by kind (missing, extra, different)',
    labelNames: ['mapping', 'kind'] as const,
    registers: [registry],
  }),
  verifyRepaired: new Counter({
    name: 'switchyard_verify_repaired_rows_total',
    help: 'Rows repaired by verify --repair',
    labelNames: ['mapping'] as const,
    registers: [registry],
  }),
};

export const PASSTHROUGH_LABELS = { route: 'passthrough', mapping: '' } as const;
