import { readFileSync } from 'node:fs';
import {
  boolean,
  ConfigError,
  integer,
  list,
  oneOf,
  optionalInteger,
  optionalText,
  readSettings,
  text,
  type SettingsValues,
} from './env-schema.js';
import { topicPrefixProblem } from '../kafka/topics.js';

/**
 * Every setting of the invoker. The README's configuration table is printed
 * from this list (`npm run config:table`), so the two cannot drift apart.
 */
export const INVOKER_SETTINGS = {
  invokerId: optionalInteger(
    'INVOKER_ID',
    'Invoker instance number (consumes `invoker<N>`). In Kubernetes, the pod-index label through the downward API; see `INVOKER_POD_NAME` and `INVOKER_NODE_NAME` for the other ways to derive it.',
    { min: 0 },
  ),
  podName: optionalText(
    'INVOKER_POD_NAME',
    'StatefulSet pod name (downward API `metadata.name`, e.g. `invoker-3`); when `INVOKER_ID` is unset the id is its `-<ordinal>` suffix, and when both are set they must agree.',
  ),
  nodeName: optionalText(
    'INVOKER_NODE_NAME',
    'Node name (downward API `spec.nodeName`) looked up in `INVOKER_ID_BY_NODE` when `INVOKER_ID` and `INVOKER_POD_NAME` are unset (DaemonSet).',
  ),
  idByNode: optionalText(
    'INVOKER_ID_BY_NODE',
    'JSON object from node name to invoker id, e.g. `{"worker-a":0,"worker-b":1}`; ids must be distinct. Used with `INVOKER_NODE_NAME`.',
  ),
  userMemoryMb: integer('INVOKER_USER_MEMORY_MB', 'Memory (MiB) the invoker shares among action containers, stem cells included.', 2048, { min: 128 }),
  logLevel: oneOf('LOG_LEVEL', 'Log level of the JSON log on stdout.', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),

  httpHost: text('INVOKER_HTTP_HOST', 'Address the HTTP server binds.', '0.0.0.0'),
  httpPort: integer('INVOKER_HTTP_PORT', 'Port of `POST /invoke` and the operations routes.', 8080, { min: 0, max: 65535 }),
  tlsCertFile: optionalText('INVOKER_TLS_CERT_FILE', 'PEM certificate; with the key, the server speaks HTTPS.'),
  tlsKeyFile: optionalText('INVOKER_TLS_KEY_FILE', 'PEM private key for the certificate.'),
  tlsClientCaFile: optionalText('INVOKER_TLS_CLIENT_CA_FILE', 'PEM CA bundle; when set, `/invoke`, `/enable`, `/disable`, `/isEnabled` and `/pool` need a client certificate it signed (mTLS: 401 without one, 403 for another); probes and `/metrics` do not.'),
  invokeToken: optionalText('INVOKER_INVOKE_TOKEN', 'Shared bearer token required on `POST /invoke` when set.', { secret: true }),
  adminUser: optionalText('INVOKER_ADMIN_USER', 'Basic-auth user for `/enable`, `/disable`, `/isEnabled`; unset: those routes refuse everyone.'),
  adminPassword: optionalText('INVOKER_ADMIN_PASSWORD', 'Basic-auth password for the admin routes.', { secret: true }),
  httpHeadersTimeoutMs: integer('INVOKER_HTTP_HEADERS_TIMEOUT_MS', 'A request\'s headers must arrive within this, or the connection gets 408 and is closed.', 10_000, { min: 100 }),
  httpRequestTimeoutMs: integer('INVOKER_HTTP_REQUEST_TIMEOUT_MS', 'A whole request, body included, must arrive within this (a stalled upload gets 408); the response may take as long as the activation runs.', 30_000, { min: 100 }),
  invokeBodyLimitBytes: optionalInteger('INVOKER_INVOKE_BODY_LIMIT_BYTES', 'Largest accepted `/invoke` body; default: the payload limit plus 64 KiB for the message envelope.', { min: 1024 }),

  kafkaBrokers: list('KAFKA_BROKERS', 'Kafka bootstrap brokers, comma-separated; empty: HTTP only, no health pings.', ''),
  kafkaClientId: text('KAFKA_CLIENT_ID', 'Kafka client id prefix.', 'invoker'),
  kafkaTopicPrefix: text(
    'KAFKA_TOPIC_PREFIX',
    "Prefix of every Kafka topic and consumer group (`<prefix>invoker<N>`, `<prefix>health`, `<prefix>completed<C>`), upstream's `whisk.kafka.topics.prefix`; must equal the controllers'.",
    '',
  ),
  readinessKafka: oneOf('INVOKER_READINESS_KAFKA', '`degraded`: ready for HTTP push as soon as pool and store are up, Kafka joins in the background and a Kafka problem shows as `degraded` in `/health/ready`; `required`: not ready without Kafka.', 'degraded', ['degraded', 'required']),
  healthPingIntervalMs: integer('INVOKER_HEALTH_PING_INTERVAL_MS', 'How often a PingMessage goes to the `health` topic.', 1000, { min: 100 }),

  couchdbUrl: text('COUCHDB_URL', 'CouchDB (or compatible) server, credentials in the URL.', 'http://127.0.0.1:5984'),
  whisksDb: text('COUCHDB_WHISKS_DB', 'Database the actions are read from.', 'whisks'),
  activationsDb: text('COUCHDB_ACTIVATIONS_DB', 'Database the activation records are written to.', 'activations'),
  actionCacheSize: integer('INVOKER_ACTION_CACHE_SIZE', 'Actions kept in the LRU cache (keyed by id and revision).', 128, { min: 0 }),
  journalDir: text('INVOKER_JOURNAL_DIR', 'Directory of the activation-record journal (records wait here until CouchDB confirms them).', './.invoker-journal'),

  containerOwner: optionalText('INVOKER_CONTAINER_OWNER', 'What action containers are labelled (`whisk.invoker`) and named (`wsk<owner>_...`) after, and what startup cleanup removes; default: the invoker id. Set it when invokers with the same id share one Docker engine (tests, several deployments).'),
  dockerNetwork: text('INVOKER_DOCKER_NETWORK', 'Docker network action containers join; the invoker must reach their addresses on it.', 'bridge'),
  dockerDnsServers: list('INVOKER_DOCKER_DNS_SERVERS', 'DNS servers for action containers, comma-separated.', ''),
  dockerDnsSearch: list('INVOKER_DOCKER_DNS_SEARCH', 'DNS search domains for action containers.', ''),
  dockerDnsOptions: list('INVOKER_DOCKER_DNS_OPTIONS', 'DNS options for action containers.', ''),
  capDropAll: boolean('INVOKER_CONTAINER_CAP_DROP_ALL', 'Drop all Linux capabilities in action containers (otherwise NET_RAW and NET_ADMIN).', false),
  readOnlyRootfs: boolean('INVOKER_CONTAINER_READ_ONLY_ROOTFS', 'Read-only root filesystem with a tmpfs /tmp in action containers.', false),
  apiHost: text('INVOKER_API_HOST', 'Value of `__OW_API_HOST` in action containers.', 'https://localhost'),
  runtimesManifest: optionalText('RUNTIMES_MANIFEST', 'Runtime manifest JSON (upstream `runtimes.json` format); overrides the built-in one.'),
  runtimesManifestFile: optionalText('RUNTIMES_MANIFEST_FILE', 'Path of a runtime manifest file, when `RUNTIMES_MANIFEST` is unset.'),
  nodejsImage: text('ACTION_IMAGE_NODEJS20', 'Image of the built-in `nodejs:20` kind (built by `scripts/build-runtime-image.sh`).', 'whisk/action-nodejs-v20:local'),
  nodejs24Image: text('ACTION_IMAGE_NODEJS24', 'Image of the built-in `nodejs:24` kind (built by `scripts/build-runtime-image.sh`).', 'whisk/action-nodejs-v24:local'),
  // INVOKER_PREWARM_* configure the stem cells of the built-in manifest (runtime-manifest.ts);
  // the variable names, and these keys that mirror them, stay as operators know them.
  prewarmCount: integer('INVOKER_PREWARM_COUNT', 'Stem cells (prewarmed `nodejs:20` containers) of the built-in manifest.', 1, { min: 0 }),
  prewarmMemoryMb: integer('INVOKER_PREWARM_MEMORY_MB', 'Memory of each stem cell of the built-in manifest.', 256, { min: 128 }),

  pauseGraceMs: integer('INVOKER_PAUSE_GRACE_MS', 'Idle time before a warm container is paused.', 10_000, { min: 0 }),
  idleTimeoutMs: integer('INVOKER_IDLE_TIMEOUT_MS', 'Idle time before a warm container is removed.', 600_000, { min: 1000 }),
  queueLimit: integer('INVOKER_QUEUE_LIMIT', 'Activations that may wait for capacity; one more is an explicit system error.', 1000, { min: 0 }),
  payloadLimitBytes: integer('INVOKER_PAYLOAD_LIMIT_BYTES', 'Largest action result kept; a larger one is truncated (application error).', 1_048_576, { min: 1024 }),
  drainTimeoutMs: integer('INVOKER_DRAIN_TIMEOUT_MS', 'On SIGTERM, how long in-flight activations may take to finish; then they end as system errors. The whole shutdown takes at most this plus 55 s.', 60_000, { min: 0 }),
  lockedArgsKeys: optionalText('INVOKER_LOCKED_ARGS_KEYS', 'Keys for locked (encrypted) parameters: JSON `{"<name>": "<base64 key>"}`; `aes-128`/`aes-256` name the upstream keys.', { secret: true }),
} as const;

export type InvokerSettings = SettingsValues<typeof INVOKER_SETTINGS>;

export interface InvokerConfig
  extends Omit<InvokerSettings, 'invokerId' | 'podName' | 'nodeName' | 'idByNode' | 'runtimesManifest' | 'runtimesManifestFile'> {
  invokerId: number;
  /** The manifest JSON text, when one was given. */
  runtimesManifestJson: string | undefined;
  tls: { cert: string; key: string; clientCa: string | undefined } | undefined;
}

/** `invoker-3` (a StatefulSet pod name) -> 3. */
export function ordinalFromPodName(name: string): number | undefined {
  const match = /-(\d+)$/.exec(name);
  if (!match) return undefined;
  const ordinal = Number(match[1]);
  return Number.isSafeInteger(ordinal) ? ordinal : undefined;
}

export interface InvokerIdSources {
  invokerId: number | undefined;
  podName: string | undefined;
  nodeName: string | undefined;
  idByNode: string | undefined;
}

/**
 * The invoker id, from (in this order) `INVOKER_ID`, the StatefulSet pod name
 * or the node's entry in `INVOKER_ID_BY_NODE`. The hostname is never used:
 * with `hostNetwork: true` it is the node's name, so a node called
 * `worker-2` would make every pod on it claim id 2.
 */
export function deriveInvokerId(sources: InvokerIdSources): { id: number } | { problem: string } {
  const fromPod = sources.podName === undefined ? undefined : ordinalFromPodName(sources.podName);
  if (sources.podName !== undefined && fromPod === undefined) {
    return { problem: `INVOKER_POD_NAME "${sources.podName}" does not end in -<ordinal> (it must be a StatefulSet pod name; a DaemonSet uses INVOKER_NODE_NAME and INVOKER_ID_BY_NODE)` };
  }
  if (sources.invokerId !== undefined) {
    if (fromPod !== undefined && fromPod !== sources.invokerId) {
      return { problem: `INVOKER_ID ${sources.invokerId} and INVOKER_POD_NAME "${sources.podName}" (ordinal ${fromPod}) disagree` };
    }
    return { id: sources.invokerId };
  }
  if (fromPod !== undefined) return { id: fromPod };
  if (sources.nodeName !== undefined || sources.idByNode !== undefined) {
    if (sources.nodeName === undefined || sources.idByNode === undefined) {
      return { problem: 'INVOKER_NODE_NAME and INVOKER_ID_BY_NODE must be set together' };
    }
    let table: unknown;
    try {
      table = JSON.parse(sources.idByNode);
    } catch (error) {
      return { problem: `INVOKER_ID_BY_NODE is not JSON: ${(error as Error).message}` };
    }
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      return { problem: 'INVOKER_ID_BY_NODE must be a JSON object from node name to invoker id' };
    }
    const owners = new Map<unknown, string>();
    for (const [node, id] of Object.entries(table)) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
        return { problem: `INVOKER_ID_BY_NODE: the id of node "${node}" must be a whole number >= 0, got ${JSON.stringify(id)}` };
      }
      const owner = owners.get(id);
      if (owner !== undefined) return { problem: `INVOKER_ID_BY_NODE: nodes "${owner}" and "${node}" both have id ${id}` };
      owners.set(id, node);
    }
    const id = (table as Record<string, unknown>)[sources.nodeName];
    if (!Object.hasOwn(table, sources.nodeName) || typeof id !== 'number') {
      return { problem: `INVOKER_ID_BY_NODE has no id for node "${sources.nodeName}" (add the node to it)` };
    }
    return { id };
  }
  return { problem: 'the invoker id is unset: set INVOKER_ID, or INVOKER_POD_NAME (StatefulSet), or INVOKER_NODE_NAME with INVOKER_ID_BY_NODE (DaemonSet)' };
}

export interface ConfigSources {
  env: Readonly<Record<string, string | undefined>>;
  readFile?: (path: string) => string;
}

export function loadInvokerConfig(sources: ConfigSources = { env: process.env }): InvokerConfig {
  const settings = readSettings(INVOKER_SETTINGS, sources.env);
  const readFile = sources.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const problems: string[] = [];

  const derived = deriveInvokerId(settings);
  const invokerId = 'id' in derived ? derived.id : undefined;
  if ('problem' in derived) problems.push(derived.problem);

  const readOrReport = (variable: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFile(path);
    } catch (error) {
      problems.push(`${variable}: cannot read ${path}: ${(error as Error).message}`);
      return undefined;
    }
  };

  let tls: InvokerConfig['tls'];
  if ((settings.tlsCertFile === undefined) !== (settings.tlsKeyFile === undefined)) {
    problems.push('INVOKER_TLS_CERT_FILE and INVOKER_TLS_KEY_FILE must be set together');
  } else if (settings.tlsCertFile !== undefined) {
    const cert = readOrReport('INVOKER_TLS_CERT_FILE', settings.tlsCertFile);
    const key = readOrReport('INVOKER_TLS_KEY_FILE', settings.tlsKeyFile);
    const clientCa = readOrReport('INVOKER_TLS_CLIENT_CA_FILE', settings.tlsClientCaFile);
    if (cert !== undefined && key !== undefined) tls = { cert, key, clientCa };
  }
  if (settings.tlsClientCaFile !== undefined && settings.tlsCertFile === undefined) {
    problems.push('INVOKER_TLS_CLIENT_CA_FILE needs INVOKER_TLS_CERT_FILE and INVOKER_TLS_KEY_FILE (mTLS runs over TLS)');
  }
  if ((settings.adminUser === undefined) !== (settings.adminPassword === undefined)) {
    problems.push('INVOKER_ADMIN_USER and INVOKER_ADMIN_PASSWORD must be set together');
  }

  const runtimesManifestJson =
    settings.runtimesManifest ?? readOrReport('RUNTIMES_MANIFEST_FILE', settings.runtimesManifestFile);

  const prefixProblem = topicPrefixProblem(settings.kafkaTopicPrefix);
  if (prefixProblem !== undefined) problems.push(`KAFKA_TOPIC_PREFIX ${prefixProblem}`);

  if (settings.lockedArgsKeys !== undefined) {
    try {
      const keys: unknown = JSON.parse(settings.lockedArgsKeys);
      if (typeof keys !== 'object' || keys === null || Array.isArray(keys)) throw new Error('not an object');
    } catch (error) {
      // The value is secret: say what is wrong with it, never what it is.
      problems.push(`INVOKER_LOCKED_ARGS_KEYS must be a JSON object of base64 keys (${(error as Error).message})`);
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);
  const { invokerId: _id, podName: _p, nodeName: _n, idByNode: _b, runtimesManifest: _m, runtimesManifestFile: _f, ...rest } = settings;
  return { ...rest, invokerId: invokerId!, runtimesManifestJson, tls };
}
