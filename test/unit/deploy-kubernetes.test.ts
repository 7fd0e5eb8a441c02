// The Kubernetes example: every document parses, and the sidecar, its probes,
// ports, config mount and shutdown timing agree with switchyard's own config.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfigText } from '../../src/config/load.ts';

const DIR = fileURLToPath(new URL('../../deploy/kubernetes', import.meta.url));

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are checked field by field below
type K8s = any;

function documents(): Array<{ file: string; obj: K8s }> {
  const out: Array<{ file: string; obj: K8s }> = [];
  for (const file of readdirSync(DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      const obj = doc.toJS();
      if (obj !== null) out.push({ file, obj });
    }
  }
  return out;
}

const docs = documents();
const byKind = (kind: string) => docs.filter((d) => d.obj.kind === kind).map((d) => d.obj);
const deployment = byKind('Deployment')[0];
const pod = deployment?.spec?.template?.spec;
const configMap = byKind('ConfigMap')[0];
const sidecar = pod?.initContainers?.find((c: K8s) => c.name === 'switchyard');
const app = pod?.containers?.find((c: K8s) => c.name === 'app');
const config = parseConfigText(configMap.data['switchyard.yaml'], {});

function port(container: K8s, name: string): number {
  const p = container.ports.find((x: K8s) => x.name === name);
  expect(p, `${container.name} port ${name}`).toBeDefined();
  return p.containerPort;
}

describe('deploy/kubernetes', () => {
  it('every document has apiVersion, kind and a name', () => {
    expect(docs.length).toBeGreaterThanOrEqual(4);
    for (const { file, obj } of docs) {
      expect(obj.apiVersion, file).toMatch(/\S/);
      expect(obj.kind, file).toMatch(/\S/);
      if (obj.kind !== 'Kustomization')
        expect(obj.metadata?.name ?? obj.metadata?.generateName, file).toMatch(/\S/);
    }
  });

  it('the kustomization lists files that exist', () => {
    const k = byKind('Kustomization')[0];
    for (const r of k.resources) expect(readdirSync(DIR)).toContain(r);
  });

  it('switchyard runs as a native sidecar of the app with the proxy command', () => {
    expect(sidecar).toBeDefined();
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.image).toMatch(/switchyard/);
    expect(sidecar.args).toEqual(['proxy', '--config', '/etc/switchyard/switchyard.yaml']);
    expect(app).toBeDefined();
  });

  it('container ports match the listen and admin ports of the ConfigMap', () => {
    expect(port(sidecar, 'postgres')).toBe(config.listen.port);
    expect(port(sidecar, 'admin')).toBe(config.admin.port);
    // Loopback for the app's connections, the pod IP for probes and scrapes.
    expect(config.listen.host).toBe('127.0.0.1');
    expect(config.admin.host).toBe('0.0.0.0');
  });

  it('the app connects through the sidecar on 127.0.0.1', () => {
    const url = app.env.find((e: K8s) => e.name === 'DATABASE_URL').value as string;
    expect(url).toContain(`@127.0.0.1:${config.listen.port}/`);
  });

  it('readiness probes /readyz and liveness /healthz on the admin port', () => {
    expect(sidecar.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(sidecar.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    // The readiness check itself waits at most ~0.9 s for the upstream.
    expect(sidecar.readinessProbe.timeoutSeconds).toBeGreaterThanOrEqual(1);
  });

  it('Prometheus scrape annotations point at the admin port', () => {
    const a = deployment.spec.template.metadata.annotations;
    expect(a['prometheus.io/scrape']).toBe('true');
    expect(a['prometheus.io/port']).toBe(String(config.admin.port));
    expect(a['prometheus.io/path']).toBe('/metrics');
  });

  it('the termination grace period outlasts the drain timeout', () => {
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(config.shutdown.drainTimeoutMs / 1000);
  });

  it('the config is mounted as a directory from the ConfigMap, never with subPath', () => {
    const mount = sidecar.volumeMounts.find((m: K8s) => m.mountPath === '/etc/switchyard');
    expect(mount).toBeDefined();
    expect(mount.subPath).toBeUndefined();
    const volume = pod.volumes.find((v: K8s) => v.name === mount.name);
    expect(volume.configMap.name).toBe(configMap.metadata.name);
    expect(Object.keys(configMap.data)).toContain('switchyard.yaml');
  });

  it('the sidecar runs unprivileged with a writable /tmp for tsx', () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(sidecar.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(sidecar.securityContext.readOnlyRootFilesystem).toBe(true);
    const tmp = sidecar.volumeMounts.find((m: K8s) => m.mountPath === '/tmp');
    expect(pod.volumes.find((v: K8s) => v.name === tmp.name).emptyDir).toBeDefined();
  });

  it('the admin token comes from a Secret under the name the config reads', () => {
    const env = sidecar.env.find((e: K8s) => e.name === config.admin.tokenEnv);
    expect(env.valueFrom.secretKeyRef.name).toBe('switchyard-admin');
  });

  it('the backfill Job uses the same image, ConfigMap and a mapping from it', () => {
    const job = byKind('Job')[0];
    const c = job.spec.template.spec.containers[0];
    expect(c.image).toBe(sidecar.image);
    expect(c.args.slice(0, 3)).toEqual(['backfill', '--config', '/etc/switchyard/switchyard.yaml']);
    const mapping = c.args[c.args.indexOf('--mapping') + 1];
    expect(config.mappings.map((m) => m.name)).toContain(mapping);
    const vol = job.spec.template.spec.volumes.find((v: K8s) => v.configMap);
    expect(vol.configMap.name).toBe(configMap.metadata.name);
  });
});
