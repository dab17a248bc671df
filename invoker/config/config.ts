import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
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

/**
 * Every setting of the invoker. The README's configuration table is printed
 * from this list (`npm run config:table`), so the two cannot drift apart.
 */
export const INVOKER_SETTINGS = {
  invokerId: optionalInteger(
    'INVOKER_ID',
    'Invoker instance number; when unset it is taken from a StatefulSet hostname ending in `-<ordinal>`.',
    { min: 0 },
  ),
  userMemoryMb: integer('INVOKER_USER_MEMORY_MB', 'Memory (MiB) the invoker shares among action containers, prewarmed ones included.', 2048, { min: 128 }),
  logLevel: oneOf('LOG_LEVEL', 'Log level of the JSON log on stdout.', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),

  httpHost: text('INVOKER_HTTP_HOST', 'Address the HTTP server binds.', '0.0.0.0'),
  httpPort: integer('INVOKER_HTTP_PORT', 'Port of `POST /invoke` and the operations routes.', 8080, { min: 0, max: 65535 }),
  tlsCertFile: optionalText('INVOKER_TLS_CERT_FILE', 'PEM certificate; with the key, the server speaks HTTPS.'),
  tlsKeyFile: optionalText('INVOKER_TLS_KEY_FILE', 'PEM private key for the certificate.'),
  tlsClientCaFile: optionalText('INVOKER_TLS_CLIENT_CA_FILE', 'PEM CA bundle; when set, `/invoke` callers must present a client certificate it signed (mTLS).'),
  invokeToken: optionalText('INVOKER_INVOKE_TOKEN', 'Shared bearer token required on `POST /invoke` when set.', { secret: true }),
  adminUser: optionalText('INVOKER_ADMIN_USER', 'Basic-auth user for `/enable`, `/disable`, `/isEnabled`; unset: those routes refuse everyone.'),
  adminPassword: optionalText('INVOKER_ADMIN_PASSWORD', 'Basic-auth password for the admin routes.', { secret: true }),
  httpHeadersTimeoutMs: integer('INVOKER_HTTP_HEADERS_TIMEOUT_MS', 'A request\'s headers must arrive within this, or the connection gets 408 and is closed.', 10_000, { min: 100 }),
  httpRequestTimeoutMs: integer('INVOKER_HTTP_REQUEST_TIMEOUT_MS', 'A whole request, body included, must arrive within this (a stalled upload gets 408); the response may take as long as the activation runs.', 30_000, { min: 100 }),
  invokeBodyLimitBytes: optionalInteger('INVOKER_INVOKE_BODY_LIMIT_BYTES', 'Largest accepted `/invoke` body; default: the payload limit plus 64 KiB for the message envelope.', { min: 1024 }),

  kafkaBrokers: list('KAFKA_BROKERS', 'Kafka bootstrap brokers, comma-separated; empty: HTTP only, no health pings.', ''),
  kafkaClientId: text('KAFKA_CLIENT_ID', 'Kafka client id prefix.', 'invoker'),
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
  prewarmCount: integer('INVOKER_PREWARM_COUNT', 'Prewarmed `nodejs:20` containers of the built-in manifest.', 1, { min: 0 }),
  prewarmMemoryMb: integer('INVOKER_PREWARM_MEMORY_MB', 'Memory of each prewarmed container of the built-in manifest.', 256, { min: 128 }),

  pauseGraceMs: integer('INVOKER_PAUSE_GRACE_MS', 'Idle time before a warm container is paused.', 10_000, { min: 0 }),
  idleTimeoutMs: integer('INVOKER_IDLE_TIMEOUT_MS', 'Idle time before a warm container is removed.', 600_000, { min: 1000 }),
  queueLimit: integer('INVOKER_QUEUE_LIMIT', 'Activations that may wait for capacity; one more is an explicit system error.', 1000, { min: 0 }),
  payloadLimitBytes: integer('INVOKER_PAYLOAD_LIMIT_BYTES', 'Largest action result kept; a larger one is truncated (application error).', 1_048_576, { min: 1024 }),
  drainTimeoutMs: integer('INVOKER_DRAIN_TIMEOUT_MS', 'On SIGTERM, how long in-flight activations may take to finish.', 60_000, { min: 0 }),
  lockedArgsKeys: optionalText('INVOKER_LOCKED_ARGS_KEYS', 'Keys for locked (encrypted) parameters: JSON `{"<name>": "<base64 key>"}`; `aes-128`/`aes-256` name the upstream keys.', { secret: true }),
} as const;

export type InvokerSettings = SettingsValues<typeof INVOKER_SETTINGS>;

export interface InvokerConfig extends Omit<InvokerSettings, 'invokerId' | 'runtimesManifest' | 'runtimesManifestFile'> {
  invokerId: number;
  /** The manifest JSON text, when one was given. */
  runtimesManifestJson: string | undefined;
  tls: { cert: string; key: string; clientCa: string | undefined } | undefined;
}

/** `invoker-3` (a StatefulSet pod) -> 3. */
export function ordinalFromHostname(name: string): number | undefined {
  const match = /-(\d+)$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

export interface ConfigSources {
  env: Readonly<Record<string, string | undefined>>;
  hostname?: string;
  readFile?: (path: string) => string;
}

export function loadInvokerConfig(sources: ConfigSources = { env: process.env }): InvokerConfig {
  const settings = readSettings(INVOKER_SETTINGS, sources.env);
  const readFile = sources.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const problems: string[] = [];

  const host = sources.hostname ?? hostname();
  const invokerId = settings.invokerId ?? ordinalFromHostname(host);
  if (invokerId === undefined) {
    problems.push(`INVOKER_ID is unset and the hostname "${host}" does not end in -<ordinal>`);
  }

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
  const { invokerId: _id, runtimesManifest: _m, runtimesManifestFile: _f, ...rest } = settings;
  return { ...rest, invokerId: invokerId!, runtimesManifestJson, tls };
}
