/**
 * The Kubernetes manifests in k8s/: every kustomize overlay builds, its output
 * and every raw resource file validate strictly against the Kubernetes API
 * schemas (kubeconform), and what the manifests say agrees with the code:
 * env vars, probe routes and ports, grace period, the controller's URL
 * template, the invoker id derivation with downward API values.
 * The tools come from scripts/k8s-tools.sh (scripts/test.sh runs it).
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { controllerVariables, expandInvokerUrl } from '../../../controller-lb/config.js';
import { INVOKER_SETTINGS, loadInvokerConfig } from '../../../invoker/config/config.js';
import { shutdownBoundMs } from '../../../invoker/invoker.js';
import { manifestImages } from '../../../invoker/prepull.js';
import { parseRuntimeManifest } from '../../../invoker/runtime-manifest.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const K8S = join(ROOT, 'k8s');
const KUSTOMIZE = join(ROOT, '.cache/bin/kustomize');
const KUBECONFORM = join(ROOT, '.cache/bin/kubeconform');
/** The oldest supported Kubernetes (k8s/README.md) and the newest schemas scripts/k8s-tools.sh installs. */
const SCHEMA_DIRS = ['v1.28.0-strict', 'v1.37.0-strict'].map((dir) => join(ROOT, '.cache/k8s-schemas', dir));
const NAMESPACE = 'openwhisk';
/** HTTP server close, Kafka disconnect and process exit, on top of the bounded steps. */
const SHUTDOWN_SLACK_SECONDS = 10;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: unknown;
  data?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    configMapKeyRef?: { name: string; key: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
  };
}
interface Probe {
  httpGet?: { path: string; port: string | number; scheme?: string };
  tcpSocket?: { port: string | number };
}
interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  hostNetwork?: boolean;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  tolerations?: { key: string; operator?: string; value?: string; effect?: string }[];
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string }; hostPath?: { path: string } }[];
}
interface Workload extends Resource {
  spec: { serviceName?: string; replicas?: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

function missingTools(): string[] {
  const missing = [KUSTOMIZE, KUBECONFORM, ...SCHEMA_DIRS].filter((path) => !existsSync(path));
  return missing.map((path) => relative(ROOT, path));
}

const overlays = readdirSync(join(K8S, 'overlays')).filter((name) => statSync(join(K8S, 'overlays', name)).isDirectory());

function build(overlay: string): string {
  return execFileSync(KUSTOMIZE, ['build', join(K8S, 'overlays', overlay)], { encoding: 'utf8' });
}

interface Verdict {
  filename: string;
  kind: string;
  name: string;
  status: string;
  msg: string;
}

/** One kubeconform run over all files (it compiles each kind's schema once per run): a verdict per resource. */
function kubeconform(files: string[], schemaDir: string): Verdict[] {
  const result = spawnSync(
    KUBECONFORM,
    ['-strict', '-output', 'json', '-verbose', '-schema-location', `${schemaDir}/{{ .ResourceKind }}{{ .KindSuffix }}.json`, ...files],
    { encoding: 'utf8' },
  );
  if (result.error) throw new Error(`running kubeconform failed: ${result.error.message}`);
  try {
    return (JSON.parse(result.stdout) as { resources: Verdict[] }).resources;
  } catch {
    throw new Error(`kubeconform printed no JSON report (exit ${result.status}): ${result.stdout}${result.stderr}`);
  }
}

function documents(text: string): Resource[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Resource | null)
    .filter((doc): doc is Resource => doc !== null);
}

/** The files every kustomization lists under `resources` (folders are other kustomizations). */
function resourceFiles(): string[] {
  const files = new Set<string>();
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) visit(path);
      else if (entry === 'kustomization.yaml') {
        const kustomization = parseYaml(readFileSync(path, 'utf8')) as { resources?: string[] };
        for (const resource of kustomization.resources ?? []) {
          const target = join(dir, resource);
          if (statSync(target).isFile()) files.add(target);
        }
      }
    }
  };
  visit(K8S);
  return [...files].sort();
}

const tools = missingTools();
if (tools.length > 0) {
  t.fail(
    `the Kubernetes manifest tools are not installed (missing: ${tools.join(', ')}); ` +
      'run `bash scripts/k8s-tools.sh` (scripts/test.sh does, from the Go module proxy and PyPI) and look at its errors',
  );
} else {
  const built = new Map(overlays.map((overlay) => [overlay, build(overlay)] as const));
  const scratch = mkdtempSync(join(tmpdir(), 'k8s-manifests-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

  t.test('the overlays are the ones k8s/README.md walks through', async (t) => {
    t.same([...overlays].sort(), ['daemonset', 'statefulset', 'statefulset-tls']);
    const readme = readFileSync(join(K8S, 'README.md'), 'utf8');
    for (const overlay of overlays) t.match(readme, `kubectl apply -k k8s/overlays/${overlay}`, overlay);
  });

  t.test('every overlay output and every raw resource file validate strictly against the API schemas', async (t) => {
    const overlayFiles = [...built].map(([overlay, output]) => {
      const file = join(scratch, `${overlay}.yaml`);
      writeFileSync(file, output);
      return { file, count: documents(output).length };
    });
    const rawFiles = resourceFiles();
    t.ok(rawFiles.length >= 9, `resource files: ${rawFiles.map((f) => relative(ROOT, f)).join(', ')}`);

    // Negative controls, in the same run: a misspelt field, and a string where an integer belongs.
    const output = built.get('statefulset')!;
    t.ok(output.includes('periodSeconds: 10') && /terminationGracePeriodSeconds: \d+/.test(output));
    const misspelt = join(scratch, 'misspelt.yaml');
    writeFileSync(misspelt, output.replace('periodSeconds: 10', 'periodSecond: 10'));
    const wrongType = join(scratch, 'wrong-type.yaml');
    writeFileSync(wrongType, output.replace(/terminationGracePeriodSeconds: (\d+)/, 'terminationGracePeriodSeconds: "$1s"'));

    for (const schemas of SCHEMA_DIRS) {
      const version = relative(ROOT, schemas);
      const verdicts = kubeconform([...overlayFiles.map((o) => o.file), ...rawFiles, misspelt, wrongType], schemas);
      const of = (file: string) => verdicts.filter((v) => v.filename === file);
      for (const { file, count } of overlayFiles) {
        t.equal(of(file).length, count, `${version}: every resource of ${relative(scratch, file)} was checked`);
        for (const v of of(file)) t.equal(v.status, 'statusValid', `${version}: overlay ${relative(scratch, file)} ${v.kind}/${v.name} ${v.msg}`);
      }
      for (const file of rawFiles) {
        t.ok(of(file).length > 0, `${version}: ${relative(ROOT, file)} was checked`);
        for (const v of of(file)) t.equal(v.status, 'statusValid', `${version}: ${relative(ROOT, file)} ${v.kind}/${v.name} ${v.msg}`);
      }
      const broken = of(misspelt).filter((v) => v.status !== 'statusValid');
      t.equal(broken.length, 1, `${version}: the resource with the misspelt field fails, and only it`);
      t.equal(broken[0]?.status, 'statusInvalid');
      t.match(broken[0]?.msg, /additional properties 'periodSecond' not allowed/);
      t.ok(of(wrongType).some((v) => v.status === 'statusInvalid' && /terminationGracePeriodSeconds/.test(v.msg)), `${version}: the wrong type fails`);
    }
  });

  // kubectl is not one of the tools the suite installs; kustomize above is the same builder.
  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  const noKubectl = kubectl.error !== undefined || kubectl.status !== 0 ? 'kubectl is not installed on this machine' : false;
  t.test("kubectl's own kustomize (kubectl apply -k) builds the same objects", { skip: noKubectl }, async (t) => {
    for (const [overlay, output] of built) {
      const viaKubectl = execFileSync('kubectl', ['kustomize', join(K8S, 'overlays', overlay)], { encoding: 'utf8' });
      t.same(documents(viaKubectl), documents(output), overlay);
    }
  });

  t.test('what the manifests say agrees with the code', async (t) => {
    const invokerVariables = new Set(Object.values(INVOKER_SETTINGS).map((setting) => setting.variable));
    const controllerReads = new Set(controllerVariables());
    const routes = invokerRoutes();
    for (const [overlay, output] of built) {
      t.test(overlay, async (t) => {
        const resources = documents(output);
        const byKind = (kind: string) => resources.filter((r) => r.kind === kind);
        const configMap = (name: string) => {
          const found = byKind('ConfigMap').find((r) => r.metadata.name === name);
          if (!found) throw new Error(`${overlay}: no ConfigMap ${name}`);
          return found.data ?? {};
        };
        const invoker = [...byKind('StatefulSet'), ...byKind('DaemonSet')] as Workload[];
        t.equal(invoker.length, 1, 'one invoker workload');
        const workload = invoker[0]!;
        const pod = workload.spec.template.spec;
        const invokerContainer = pod.containers.find((c) => c.name === 'invoker')!;
        const controller = byKind('Deployment').find((r) => r.metadata.name === 'controller') as Workload;
        const controllerContainer = controller.spec.template.spec.containers[0]!;

        t.test('no Secret values, only references', async (t) => {
          t.same(byKind('Secret'), [], 'no Secret objects');
          t.notMatch(output, /stringData|CHANGE_ME/);
        });

        t.test('namespace: privileged Pod Security, everything in it', async (t) => {
          const namespace = byKind('Namespace')[0]!;
          t.equal(namespace.metadata.name, NAMESPACE);
          t.equal(namespace.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
          for (const r of resources.filter((r) => r.kind !== 'Namespace')) t.equal(r.metadata.namespace, NAMESPACE, `${r.kind}/${r.metadata.name}`);
          t.ok(pod.hostNetwork, 'the invoker uses the host network');
          t.ok(pod.volumes?.some((v) => v.hostPath?.path === '/var/run/docker.sock'), 'and the node Docker socket');
        });

        t.test('pods: no API token, resources, toleration, PDB', async (t) => {
          for (const spec of [pod, controller.spec.template.spec]) {
            t.equal(spec.automountServiceAccountToken, false);
            for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
              t.ok(c.resources?.requests?.['memory'] && c.resources?.limits?.['memory'], `${c.name}: memory request and limit`);
            }
          }
          t.ok(pod.tolerations?.some((x) => x.key === 'openwhisk-role' && x.value === 'invoker' && x.effect === 'NoSchedule'));
          const pdb = byKind('PodDisruptionBudget')[0]!;
          t.equal(pdb.apiVersion, 'policy/v1');
          t.same((pdb.spec as { selector: Json }).selector, { matchLabels: workload.spec.template.metadata.labels });
        });

        t.test('every env var set is one the invoker or the controller reads', async (t) => {
          const names = (c: Container): string[] => [
            ...(c.env ?? []).map((e) => e.name),
            ...(c.envFrom ?? []).flatMap((from) => {
              t.notOk(from.secretRef, `${c.name}: secrets by key only (secretKeyRef), so each one is named`);
              return from.configMapRef ? Object.keys(configMap(from.configMapRef.name)) : [];
            }),
          ];
          for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
            for (const name of names(c)) t.ok(invokerVariables.has(name), `${c.name}: ${name} is an invoker setting`);
          }
          for (const name of names(controllerContainer)) t.ok(controllerReads.has(name), `controller: ${name} is read by controller-lb/config.ts`);
        });

        t.test('one bearer token for both sides', async (t) => {
          const ref = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
          const invokerSide = ref(invokerContainer, 'INVOKER_INVOKE_TOKEN');
          t.ok(invokerSide, 'the invoker reads it from a Secret');
          t.same(ref(controllerContainer, 'CONTROLLER_INVOKE_TOKEN'), invokerSide, 'the controller reads the same Secret key');
        });

        t.test('probes: existing routes on the invoker port, HTTPS exactly when TLS is on', async (t) => {
          const tls = invokerContainer.env?.some((e) => e.name === 'INVOKER_TLS_CERT_FILE') ?? false;
          const port = INVOKER_SETTINGS.httpPort.parse(configMap('invoker-config')['INVOKER_HTTP_PORT']);
          for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
            const probe = invokerContainer[kind]?.httpGet;
            if (!probe) {
              t.fail(`${kind}: an httpGet probe`);
              continue;
            }
            t.ok(routes.has(`GET ${probe.path}`), `${kind}: GET ${probe.path} is a route of invoker/http/`);
            const number = typeof probe.port === 'number' ? probe.port : invokerContainer.ports?.find((p) => p.name === probe.port)?.containerPort;
            t.equal(number, port, `${kind}: the port INVOKER_HTTP_PORT`);
            t.equal(probe.scheme ?? 'HTTP', tls ? 'HTTPS' : 'HTTP', `${kind}: scheme`);
          }
          t.ok(routes.has('GET /health/ready') && invokerContainer.readinessProbe?.httpGet?.path === '/health/ready', 'readiness is /health/ready');
          if (tls) {
            const mounts = invokerContainer.volumeMounts ?? [];
            for (const variable of ['INVOKER_TLS_CERT_FILE', 'INVOKER_TLS_KEY_FILE', 'INVOKER_TLS_CLIENT_CA_FILE']) {
              const path = invokerContainer.env?.find((e) => e.name === variable)?.value ?? '';
              const mount = mounts.find((m) => path.startsWith(`${m.mountPath}/`));
              const volume = pod.volumes?.find((v) => v.name === mount?.name);
              t.ok(volume?.secret?.secretName, `${variable} (${path}) is a file of a Secret volume`);
            }
            t.match(configMap('controller-config')['INVOKER_URL_TEMPLATE'], /^https:/, 'the controller pushes over HTTPS');
          }
        });

        t.test('the grace period covers the shutdown bound: drain, ending what is left, flush and container removal', async (t) => {
          const drainMs = INVOKER_SETTINGS.drainTimeoutMs.parse(configMap('invoker-config')['INVOKER_DRAIN_TIMEOUT_MS']);
          const needed = shutdownBoundMs(drainMs) / 1000 + SHUTDOWN_SLACK_SECONDS;
          t.ok((pod.terminationGracePeriodSeconds ?? 30) > needed, `${pod.terminationGracePeriodSeconds} s > ${needed} s`);
        });

        t.test('the pre-pull init container pulls the ConfigMap runtime manifest', async (t) => {
          const init = pod.initContainers?.find((c) => c.name === 'docker-pull-runtimes');
          t.same(init?.args, ['/usr/bin/node', '/app/dist/invoker/prepull.js']);
          t.equal(init?.command, undefined, "the image's entrypoint (tini) is kept");
          t.same(init?.env?.find((e) => e.name === 'RUNTIMES_MANIFEST')?.valueFrom?.configMapKeyRef, { name: 'invoker-config', key: 'RUNTIMES_MANIFEST' });
          const manifest = parseRuntimeManifest(configMap('invoker-config')['RUNTIMES_MANIFEST']!, 'RUNTIMES_MANIFEST');
          t.ok(manifestImages(manifest).length > 0);
        });

        const controllerConfig = configMap('controller-config');
        if (workload.kind === 'StatefulSet') {
          t.test('the controller URL template names the StatefulSet pods behind the headless Service', async (t) => {
            const template = controllerConfig['INVOKER_URL_TEMPLATE'];
            t.ok(template, 'INVOKER_URL_TEMPLATE is set');
            t.notOk(controllerConfig['INVOKER_URLS'], 'not together with INVOKER_URLS');
            t.equal(Number(controllerConfig['INVOKER_COUNT']), workload.spec.replicas, 'INVOKER_COUNT registers the replicas at startup');
            const service = byKind('Service').find((s) => s.metadata.name === workload.spec.serviceName)!;
            const serviceSpec = service.spec as { clusterIP: string; selector: Record<string, string>; ports: { port: number; targetPort: string }[] };
            t.equal(serviceSpec.clusterIP, 'None', 'the StatefulSet service is headless');
            t.match(workload.spec.template.metadata.labels, serviceSpec.selector, 'and selects the invoker pods');
            for (const id of [0, 1, 7]) {
              const url = new URL(expandInvokerUrl(template!, id));
              t.equal(url.hostname, `${workload.metadata.name}-${id}.${service.metadata.name}.${NAMESPACE}.svc.cluster.local`, `id ${id}`);
              t.equal(Number(url.port), serviceSpec.ports[0]!.port);
              t.equal(url.pathname, '/', 'a base URL: the controller appends /invoke');
            }
          });

          t.test('each pod derives its ordinal as id from the downward API', async (t) => {
            for (let ordinal = 0; ordinal < (workload.spec.replicas ?? 1); ordinal++) {
              const podName = `${workload.metadata.name}-${ordinal}`;
              for (const labelled of [true, false]) {
                const env = podEnvironment(invokerContainer, configMap, {
                  name: podName,
                  nodeName: 'worker-2',
                  // Kubernetes >= 1.28 adds the pod-index label; older ones do not.
                  labels: labelled ? { ...workload.spec.template.metadata.labels, 'apps.kubernetes.io/pod-index': String(ordinal) } : {},
                });
                env['HOSTNAME'] = 'worker-2';
                const config = loadInvokerConfig({ env, readFile: () => 'pem' });
                t.equal(config.invokerId, ordinal, `${podName} on node worker-2 (${labelled ? 'with' : 'without'} the pod-index label)`);
              }
            }
          });
        } else {
          t.test('each node has one id, and the controller a URL for each', async (t) => {
            const table = JSON.parse(configMap('invoker-config')['INVOKER_ID_BY_NODE']!) as Record<string, number>;
            const ids = Object.entries(table).map(([node]) => {
              const env = podEnvironment(invokerContainer, configMap, { name: 'invoker-24567', nodeName: node, labels: {} });
              return loadInvokerConfig({ env, readFile: () => 'pem' }).invokerId;
            });
            t.same([...ids].sort((a, b) => a - b), ids.map((_id, index) => index), 'ids 0..N-1 from the node names');
            const urls = controllerConfig['INVOKER_URLS']!.split(',');
            t.equal(urls.length, ids.length, 'INVOKER_URLS has one URL per id');
            t.notOk(controllerConfig['INVOKER_URL_TEMPLATE']);
            const unknown = podEnvironment(invokerContainer, configMap, { name: 'invoker-x', nodeName: 'worker-new', labels: {} });
            t.throws(() => loadInvokerConfig({ env: unknown }), /INVOKER_ID_BY_NODE has no id for node "worker-new"/, 'an unlisted node fails at startup');
          });
        }
      });
    }
  });
}

/** `GET /path` for every route registered in invoker/http/. */
function invokerRoutes(): Set<string> {
  const dir = join(ROOT, 'invoker/http');
  const routes = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(join(dir, file), 'utf8');
    for (const match of source.matchAll(/\bapp\.(get|post|put|delete)\(\s*'([^']+)'/g)) routes.add(`${match[1]!.toUpperCase()} ${match[2]}`);
  }
  if (routes.size === 0) throw new Error('no routes found in invoker/http/');
  return routes;
}

/** The environment the kubelet would give the container: ConfigMaps, downward API, Secrets (placeholders). */
function podEnvironment(
  container: Container,
  configMap: (name: string) => Record<string, string>,
  pod: { name: string; nodeName: string; labels: Record<string, string> },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) if (from.configMapRef) Object.assign(env, configMap(from.configMapRef.name));
  for (const variable of container.env ?? []) {
    const source = variable.valueFrom;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (source?.configMapKeyRef) env[variable.name] = configMap(source.configMapKeyRef.name)[source.configMapKeyRef.key] ?? '';
    else if (source?.secretKeyRef) env[variable.name] = variable.name === 'INVOKER_LOCKED_ARGS_KEYS' ? '{}' : 'from-a-secret';
    else if (source?.fieldRef) env[variable.name] = fieldValue(source.fieldRef.fieldPath, pod);
  }
  return env;
}

/** The downward API as the kubelet resolves it: a missing label is the empty string. */
function fieldValue(path: string, pod: { name: string; nodeName: string; labels: Record<string, string> }): string {
  if (path === 'metadata.name') return pod.name;
  if (path === 'spec.nodeName') return pod.nodeName;
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (label) return pod.labels[label[1]!] ?? '';
  throw new Error(`unexpected fieldPath ${path}`);
}
