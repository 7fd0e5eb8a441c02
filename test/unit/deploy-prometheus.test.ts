// The alerting rules in deploy/prometheus: promtool accepts them, their unit
// tests (deploy/prometheus/tests, synthetic series) pass and cover every alert
// both ways, the PrometheusRule carries the same groups, and every metric and
// label the rules use exists. promtool comes from Debian's prometheus package
// (scripts/setup-test-deps.sh installs it); without it these tests fail.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROMETHEUS_RULE_PATH, renderPrometheusRule } from '../../scripts/gen-prometheusrule.ts';
import { registry } from '../../src/metrics.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIR = path.join(ROOT, 'deploy/prometheus');
const TESTS = path.join(DIR, 'tests');
const PROMTOOL = process.env.SWITCHYARD_PROMTOOL || 'promtool';

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Groups {
  groups: Array<{ name: string; rules: Rule[] }>;
}
interface UnitTests {
  rule_files: string[];
  tests: Array<{
    name: string;
    alert_rule_test: Array<{ alertname: string; eval_time: string; exp_alerts: unknown[] | null }>;
  }>;
}

const alertsText = readFileSync(path.join(DIR, 'alerts.yaml'), 'utf8');
const rules = (parse(alertsText) as Groups).groups.flatMap((g) => g.rules);
const testFiles = readdirSync(TESTS)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

function promtool(args: string[], cwd = DIR): { status: number; out: string } {
  const r = spawnSync(PROMTOOL, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.error) {
    throw new Error(
      `cannot run ${PROMTOOL} (${r.error.message}): install Debian's prometheus package ` +
        '(bash scripts/setup-test-deps.sh does) or set SWITCHYARD_PROMTOOL',
    );
  }
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A copy of deploy/prometheus whose alerts.yaml has one edit, for checking the unit tests catch it. */
function mutated(from: string, to: string): string {
  expect(alertsText, 'the text to change').toContain(from);
  const dir = mkdtempSync(path.join(tmpdir(), 'switchyard-rules-'));
  scratch.push(dir);
  cpSync(DIR, dir, { recursive: true });
  writeFileSync(path.join(dir, 'alerts.yaml'), alertsText.replace(from, to));
  return dir;
}

describe('deploy/prometheus/alerts.yaml', () => {
  it('promtool check rules accepts every rule', () => {
    const r = promtool(['check', 'rules', 'alerts.yaml']);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
    expect(rules.length).toBeGreaterThanOrEqual(13);
  });

  it('alerts on what the migration checklist and the fleet need', () => {
    const exprs = new Map(rules.map((r) => [r.alert, r.expr]));
    const expect_ = (alert: string, ...needles: string[]) => {
      const e = exprs.get(alert);
      expect(e, alert).toBeDefined();
      for (const n of needles) expect(e, alert).toContain(n);
    };
    expect_(
      'SwitchyardMirroredWriteLatencyHigh',
      'histogram_quantile(0.99',
      'switchyard_statement_duration_seconds_bucket{route="mirrored_write"}',
      'mapping',
    );
    expect_('SwitchyardMirrorFailures', 'switchyard_mirror_failures_total');
    expect_(
      'SwitchyardMirroredWriteErrorRate',
      'switchyard_statement_errors_total{route="mirrored_write"}',
      'switchyard_statements_total{route="mirrored_write"}',
    );
    expect_('SwitchyardStatementErrorRate', 'switchyard_statement_errors_total', 'route, mapping');
    expect_('SwitchyardVerifyDrift', 'switchyard_verify_drift_rows_total');
    expect_('SwitchyardUnmirroredWrites', 'switchyard_unmirrored_writes_total');
    expect_('SwitchyardRoundTripLossy', 'switchyard_mapping_round_trip_lossy_columns');
    expect_('SwitchyardFleetSwitchesBehind', 'switchyard_fleet_mapping_version');
    expect_('SwitchyardFleetControlTableUnreachable', 'switchyard_fleet_control_connected');
    expect_('SwitchyardFleetSyncStale', 'switchyard_fleet_last_sync_timestamp_seconds');
    expect_('SwitchyardConfigReloadFailed', 'switchyard_config_reloads_total{result="error"}');
  });

  it('every alert has a severity, a summary, a description and a runbook that exists', () => {
    for (const r of rules) {
      expect(['warning', 'critical'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toMatch(/\S/);
      expect(r.annotations?.description?.length ?? 0, r.alert).toBeGreaterThan(60);
      const runbook = r.annotations?.runbook ?? '';
      expect(() => readFileSync(path.join(ROOT, runbook)), `${r.alert}: ${runbook}`).not.toThrow();
    }
    // The alerts that call for the kill switch say how to turn it on.
    for (const name of ['SwitchyardMirroredWriteLatencyHigh', 'SwitchyardMirrorFailures']) {
      const d = rules.find((r) => r.alert === name)?.annotations?.description ?? '';
      expect(d, name).toContain('switchyard switch --config switchyard.yaml --kill-switch on --reason');
      expect(d, name).toContain('POST /kill-switch');
    }
  });

  it('uses only metrics of the registry and labels they carry (or the scrape adds)', async () => {
    const labelsOf = new Map<string, string[]>();
    for (const metric of registry.getMetricsAsArray()) {
      const m = metric as unknown as { name: string; labelNames: string[]; get(): Promise<{ type: string }> };
      const histogram = String((await m.get()).type) === 'histogram';
      for (const name of histogram ? ['_bucket', '_sum', '_count'].map((s) => m.name + s) : [m.name]) {
        labelsOf.set(name, histogram && name.endsWith('_bucket') ? [...m.labelNames, 'le'] : m.labelNames);
      }
    }
    // Target labels from the scrape config, which the metrics do not carry themselves.
    const targetLabels = ['job', 'instance', 'namespace'];
    const values: Record<string, string[]> = {
      route: ['passthrough', 'mirrored_write', 'read_old', 'read_new'],
      result: ['ok', 'error'],
    };
    for (const r of rules) {
      const names = [...new Set(r.expr.match(/\bswitchyard_[a-z0-9_]+/g) ?? [])];
      expect(names.length, r.alert).toBeGreaterThan(0);
      for (const n of names) expect(labelsOf.has(n), `${r.alert}: ${n}`).toBe(true);
      const allowed = new Set([...targetLabels, ...names.flatMap((n) => labelsOf.get(n) ?? [])]);
      const used = new Set<string>();
      for (const [, inner] of r.expr.matchAll(/\{([^}]*)\}/g)) {
        for (const [, label, value] of inner.matchAll(/([a-z_]+)\s*(?:!=|=~|!~|=)\s*"([^"]*)"/g)) {
          used.add(label);
          if (values[label]) expect(values[label], `${r.alert}: ${label}="${value}"`).toContain(value);
        }
      }
      for (const [, list] of r.expr.matchAll(
        /\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
      )) {
        for (const l of list.split(',').map((s) => s.trim())) if (l) used.add(l);
      }
      for (const l of used) expect(allowed.has(l), `${r.alert}: label ${l}`).toBe(true);
    }
  });
});

describe('deploy/prometheus/tests (promtool test rules)', () => {
  const suites = testFiles.map((f) => ({
    file: f,
    doc: parse(readFileSync(path.join(TESTS, f), 'utf8')) as UnitTests,
  }));

  it('pass', () => {
    expect(testFiles.length).toBeGreaterThanOrEqual(4);
    const r = promtool(['test', 'rules', ...testFiles], TESTS);
    expect(r.out).not.toContain('FAILED');
    expect(r.out.match(/SUCCESS/g)?.length).toBe(testFiles.length);
    expect(r.status).toBe(0);
  });

  it('test the rules file itself, and every alert both firing and not firing', () => {
    const positive = new Set<string>();
    const negative = new Set<string>();
    for (const { file, doc } of suites) {
      expect(doc.rule_files, file).toEqual(['../alerts.yaml']);
      for (const t of doc.tests) {
        for (const c of t.alert_rule_test) {
          expect(
            rules.map((r) => r.alert),
            `${file}: ${c.alertname}`,
          ).toContain(c.alertname);
          ((c.exp_alerts ?? []).length > 0 ? positive : negative).add(c.alertname);
        }
      }
    }
    for (const r of rules) {
      expect(positive.has(r.alert), `${r.alert} has no case where it fires`).toBe(true);
      expect(negative.has(r.alert), `${r.alert} has no case where it must not fire`).toBe(true);
    }
  });

  it('fail when a threshold or a guard of the rules is broken', () => {
    const broken: Array<[from: string, to: string, alert: string]> = [
      [') > 0.25', ') > 1', 'SwitchyardMirroredWriteLatencyHigh'],
      // Without the new-series branch the first failure of a mapping goes unseen.
      [
        'sum by (job, mapping) (switchyard_mirror_failures_total unless switchyard_mirror_failures_total offset 5m) > 0',
        'sum by (job, mapping) (switchyard_mirror_failures_total unless switchyard_mirror_failures_total offset 5m) > 1e9',
        'SwitchyardMirrorFailures',
      ],
      // Without the errors guard every sidecar without fleet.enabled fires.
      [
        'and increase(switchyard_fleet_control_errors_total[5m]) > 0',
        '',
        'SwitchyardFleetControlTableUnreachable',
      ],
      ['for: 30m', 'for: 10m', 'SwitchyardKillSwitchOn'],
    ];
    for (const [from, to, alert] of broken) {
      const dir = mutated(from, to);
      const r = promtool(['test', 'rules', ...testFiles], path.join(dir, 'tests'));
      expect(r.status, `${alert}: ${from} -> ${to}`).not.toBe(0);
      expect(r.out, `${alert}: ${from} -> ${to}`).toContain(`alertname: ${alert},`);
    }
  });
});

describe('deploy/prometheus/prometheusrule.yaml', () => {
  const text = readFileSync(PROMETHEUS_RULE_PATH, 'utf8');
  const obj = parse(text) as { apiVersion: string; kind: string; metadata: { name: string }; spec: Groups };

  it('is the Prometheus Operator object with the groups of alerts.yaml', () => {
    expect(obj.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(obj.kind).toBe('PrometheusRule');
    expect(obj.metadata.name).toBe('switchyard');
    expect(obj.spec.groups).toEqual((parse(alertsText) as Groups).groups);
  });

  it('is what npm run gen:prometheusrule writes', () => {
    expect(text).toBe(renderPrometheusRule(alertsText));
  });

  it('promtool check rules accepts its spec', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'switchyard-rules-'));
    scratch.push(dir);
    writeFileSync(path.join(dir, 'spec.yaml'), JSON.stringify(obj.spec));
    const r = promtool(['check', 'rules', path.join(dir, 'spec.yaml')]);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
  });
});

describe('docs/alerts.md', () => {
  const doc = readFileSync(path.join(ROOT, 'docs/alerts.md'), 'utf8');

  it('lists every alert with its threshold and what to do', () => {
    for (const r of rules) expect(doc, r.alert).toMatch(new RegExp(`\\b${r.alert}\\b`));
    expect(doc).toContain('switchyard switch --config switchyard.yaml --kill-switch on --reason');
  });

  it('alerts on shadow-read mismatches, a metric the proxy exports', () => {
    expect(doc).toContain('SwitchyardShadowReadMismatch');
    expect(alertsText).toContain('switchyard_shadow_read_mismatches_total');
  });
});
