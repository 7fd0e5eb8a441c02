// Generates deploy/prometheus/prometheusrule.yaml (the Prometheus Operator's
// PrometheusRule) from deploy/prometheus/alerts.yaml, so the operator and a
// plain Prometheus load the same rules. `npm run gen:prometheusrule` writes it;
// `--check` fails when it is stale (test/unit/deploy-prometheus.test.ts does
// the same comparison).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse, stringify } from 'yaml';

export const ALERTS_PATH = fileURLToPath(new URL('../deploy/prometheus/alerts.yaml', import.meta.url));
export const PROMETHEUS_RULE_PATH = fileURLToPath(
  new URL('../deploy/prometheus/prometheusrule.yaml', import.meta.url),
);

const HEADER = `# Generated from alerts.yaml by scripts/gen-prometheusrule.ts (npm run gen:prometheusrule):
# edit alerts.yaml, then regenerate. The Prometheus Operator loads the
# PrometheusRule objects its ruleSelector matches: add the label yours selects
# (kube-prometheus-stack selects release: <its release name>).
`;

export function renderPrometheusRule(alertsText: string = readFileSync(ALERTS_PATH, 'utf8')): string {
  const rules = parse(alertsText) as { groups: unknown[] };
  const object = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'switchyard',
      labels: { 'app.kubernetes.io/name': 'switchyard', 'app.kubernetes.io/component': 'alerts' },
    },
    spec: { groups: rules.groups },
  };
  // lineWidth 0: PromQL and templates stay on the lines they were written on.
  return HEADER + stringify(object, { lineWidth: 0 });
}

function main(argv: string[]): number {
  const text = renderPrometheusRule();
  if (argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(PROMETHEUS_RULE_PATH, 'utf8');
    } catch {
      // A missing file is stale too.
    }
    if (current !== text) {
      process.stderr.write(`${PROMETHEUS_RULE_PATH} is out of date: run npm run gen:prometheusrule\n`);
      return 1;
    }
    return 0;
  }
  writeFileSync(PROMETHEUS_RULE_PATH, text);
  process.stdout.write(`wrote ${PROMETHEUS_RULE_PATH}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
