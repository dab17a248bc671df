/**
 * The controller's configuration from the environment. Every problem names
 * its variable; all problems are reported at once.
 */
import { readFileSync } from 'node:fs';
import { defaultRuntimeManifest, parseRuntimeManifest, RuntimeManifestError, type RuntimeManifest } from '../invoker/runtime-manifest.js';
import { DEFAULT_ACTION_LIMITS_CONFIG, type ActionLimitsConfig } from './action-put.js';
import type { PushTlsOptions } from './push-client.js';
import { topicPrefixProblem } from '../invoker/kafka/topics.js';

export interface ControllerConfig {
  controllerId: string;
  controllerCount: number;
  host: string;
  port: number;
  /** Index = invoker id: the literal `INVOKER_URLS`, or the template expanded for ids 0 .. `INVOKER_COUNT` - 1. */
  invokerUrls: string[];
  /** `INVOKER_URL_TEMPLATE`: any invoker id (one known only from pings too) has a URL. */
  invokerUrlTemplate: string | undefined;
  invokerUserMemoryMb: number;
  kafkaBrokers: string[] | undefined;
  /** Upstream's `whisk.kafka.topics.prefix`: every topic and group is named under it. */
  kafkaTopicPrefix: string;
  healthTopic: string;
  couchdbUrl: string;
  whisksDb: string;
  /** Activation records: read by the API, forced records written there. */
  activationsDb: string;
  /** The journal of forced records not yet confirmed by CouchDB. */
  journalDir: string;
  invokeToken: string | undefined;
  tls: PushTlsOptions | undefined;
  blockingTimeoutMs: number;
  forcedCompletionExtraMs: number;
  /** The time limit the forced-completion timer uses for actions with a shorter one (upstream 60 s). */
  forcedCompletionMinMs: number;
  /** Kind of the health test action document; empty: do not create it. */
  healthActionKind: string;
  drainGraceMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The API (see README): databases, kinds, limits, caches, throttles, timeouts. */
  subjectsDb: string;
  runtimes: RuntimeManifest;
  actionLimits: ActionLimitsConfig;
  payloadMaxBytes: number;
  actionCacheTtlMs: number;
  actionCacheStaleMs: number;
  identityCacheTtlMs: number;
  invocationsPerMinute: number;
  concurrentInvocations: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  connectionTimeoutMs: number;
}

export class ControllerConfigError extends Error {
  override readonly name = 'ControllerConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid controller configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: NodeJS.ProcessEnv): ControllerConfig {
  const problems: string[] = [];
  const text = (variable: string, fallback: string): string => {
    const raw = env[variable];
    return raw === undefined || raw.trim() === '' ? fallback : raw.trim();
  };
  const optional = (variable: string): string | undefined => {
    const raw = env[variable];
    return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
  };
  const integer = (variable: string, fallback: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number => {
    const raw = optional(variable);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${variable}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return value;
  };
  const list = (variable: string): string[] =>
    (optional(variable) ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  const file = (variable: string): string | undefined => {
    const path = optional(variable);
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      problems.push(`${variable}: cannot read ${path}: ${(error as Error).message}`);
      return undefined;
    }
  };

  const controllerId = text('CONTROLLER_ID', '0');
  if (!/^[a-zA-Z0-9._-]{1,128}$/.test(controllerId)) {
    problems.push(`CONTROLLER_ID: expected 1 to 128 characters of [a-zA-Z0-9._-] (it becomes part of the completed<C> topic name), got ${JSON.stringify(controllerId)}`);
  }

  const literalUrls = list('INVOKER_URLS');
  literalUrls.forEach((url, index) => {
    if (!isHttpUrl(url)) problems.push(`INVOKER_URLS: entry ${index} (invoker${index}) is not an http(s) URL: ${JSON.stringify(url)}`);
  });
  const invokerUrlTemplate = optional('INVOKER_URL_TEMPLATE');
  const countText = optional('INVOKER_COUNT');
  const invokerCount = countText === undefined ? undefined : integer('INVOKER_COUNT', 0, 1, 10_000);
  let invokerUrls = literalUrls;
  if (invokerUrlTemplate !== undefined) {
    if (literalUrls.length > 0) problems.push('INVOKER_URL_TEMPLATE: set it or INVOKER_URLS, not both');
    if (!invokerUrlTemplate.includes(INVOKER_ID_PLACEHOLDER)) {
      problems.push(`INVOKER_URL_TEMPLATE: must contain ${INVOKER_ID_PLACEHOLDER}, got ${JSON.stringify(invokerUrlTemplate)}`);
    } else if (!isHttpUrl(expandInvokerUrl(invokerUrlTemplate, 0))) {
      problems.push(`INVOKER_URL_TEMPLATE: is not an http(s) URL once ${INVOKER_ID_PLACEHOLDER} is replaced: ${JSON.stringify(invokerUrlTemplate)}`);
    }
    invokerUrls = Array.from({ length: invokerCount ?? 0 }, (_unused, id) => expandInvokerUrl(invokerUrlTemplate, id));
  } else if (countText !== undefined) {
    problems.push('INVOKER_COUNT: only meaningful with INVOKER_URL_TEMPLATE');
  }
  const brokers = list('KAFKA_BROKERS');
  const kafkaBrokers = brokers.length > 0 ? brokers : undefined;
  if (invokerUrlTemplate !== undefined && countText === undefined && kafkaBrokers === undefined) {
    problems.push('INVOKER_COUNT: required with INVOKER_URL_TEMPLATE without KAFKA_BROKERS (the invokers to poll are ids 0 .. INVOKER_COUNT - 1)');
  }
  if (literalUrls.length === 0 && invokerUrlTemplate === undefined && kafkaBrokers === undefined) {
    problems.push('INVOKER_URLS: required without KAFKA_BROKERS or INVOKER_URL_TEMPLATE (comma-separated base URLs, index = invoker id, e.g. http://127.0.0.1:8080)');
  }

  const kafkaTopicPrefix = text('KAFKA_TOPIC_PREFIX', '');
  const prefixProblem = topicPrefixProblem(kafkaTopicPrefix);
  if (prefixProblem !== undefined) problems.push(`KAFKA_TOPIC_PREFIX: ${prefixProblem}`);

  const couchdbUrl = text('COUCHDB_URL', 'http://127.0.0.1:5984');
  try {
    new URL(couchdbUrl);
  } catch {
    problems.push('COUCHDB_URL: not a URL');
  }

  const cert = file('INVOKER_TLS_CERT_FILE');
  const key = file('INVOKER_TLS_KEY_FILE');
  const ca = file('INVOKER_TLS_CA_FILE');
  if ((optional('INVOKER_TLS_CERT_FILE') === undefined) !== (optional('INVOKER_TLS_KEY_FILE') === undefined)) {
    problems.push('INVOKER_TLS_CERT_FILE and INVOKER_TLS_KEY_FILE: set both or neither');
  }
  const tls: PushTlsOptions | undefined =
    cert === undefined && ca === undefined ? undefined : { ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}), ...(ca !== undefined ? { ca } : {}) };

  const logLevel = text('LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) problems.push(`LOG_LEVEL: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);

  let runtimes: RuntimeManifest = defaultRuntimeManifest();
  const manifestText = optional('RUNTIMES_MANIFEST') ?? file('RUNTIMES_MANIFEST_FILE');
  if (manifestText !== undefined) {
    try {
      runtimes = parseRuntimeManifest(manifestText, optional('RUNTIMES_MANIFEST') !== undefined ? 'RUNTIMES_MANIFEST' : 'RUNTIMES_MANIFEST_FILE');
    } catch (error) {
      if (!(error instanceof RuntimeManifestError)) throw error;
      problems.push(error.message);
    }
  }
  const range = (prefix: string, unit: string, fallback: { min: number; max: number; std: number }) => {
    const min = integer(`${prefix}_MIN_${unit}`, fallback.min, 0);
    const max = integer(`${prefix}_MAX_${unit}`, fallback.max, 0);
    const std = integer(`${prefix}_STD_${unit}`, fallback.std, 0);
    if (!(min <= std && std <= max)) problems.push(`${prefix}_MIN/STD/MAX_${unit}: expected min <= std <= max, got ${min}, ${std}, ${max}`);
    return { min, max, std };
  };
  const d = DEFAULT_ACTION_LIMITS_CONFIG;
  const actionLimits: ActionLimitsConfig = {
    memoryMb: range('CONTROLLER_LIMIT_MEMORY', 'MB', d.memoryMb),
    timeoutMs: range('CONTROLLER_LIMIT_TIMEOUT', 'MS', d.timeoutMs),
    logsMb: range('CONTROLLER_LIMIT_LOGS', 'MB', d.logsMb),
    concurrency: range('CONTROLLER_LIMIT_CONCURRENCY', 'COUNT', d.concurrency),
    execSizeBytes: integer('CONTROLLER_EXEC_SIZE_LIMIT_BYTES', d.execSizeBytes, 1, 48 * 1024 * 1024),
    parametersSizeBytes: integer('CONTROLLER_PARAMETERS_SIZE_LIMIT_BYTES', d.parametersSizeBytes, 1),
    inlineCodeMaxBytes: integer('CONTROLLER_INLINE_CODE_MAX_BYTES', d.inlineCodeMaxBytes, 0),
    sequenceMaxLength: integer('CONTROLLER_SEQUENCE_MAX_LENGTH', d.sequenceMaxLength, 1),
  };
  const blockingTimeoutMs = integer('CONTROLLER_BLOCKING_TIMEOUT_MS', 60_000, 1);

  const config: ControllerConfig = {
    controllerId,
    controllerCount: integer('CONTROLLER_COUNT', 1, 1, 1000),
    host: text('CONTROLLER_HOST', '127.0.0.1'),
    port: integer('CONTROLLER_PORT', 3233, 0, 65535),
    invokerUrls,
    invokerUrlTemplate,
    invokerUserMemoryMb: integer('INVOKER_USER_MEMORY_MB', 2048, 128),
    kafkaBrokers,
    kafkaTopicPrefix,
    healthTopic: text('CONTROLLER_HEALTH_TOPIC', `${kafkaTopicPrefix}health`),
    couchdbUrl,
    whisksDb: text('COUCHDB_WHISKS_DB', 'whisks'),
    activationsDb: text('COUCHDB_ACTIVATIONS_DB', 'activations'),
    journalDir: text('CONTROLLER_JOURNAL_DIR', './.controller-journal'),
    invokeToken: optional('CONTROLLER_INVOKE_TOKEN'),
    tls,
    blockingTimeoutMs,
    forcedCompletionExtraMs: integer('CONTROLLER_FORCED_COMPLETION_EXTRA_MS', 60_000, 0),
    forcedCompletionMinMs: integer('CONTROLLER_FORCED_COMPLETION_MIN_MS', 60_000, 0),
    healthActionKind: env['CONTROLLER_HEALTH_ACTION_KIND'] === undefined ? 'nodejs:20' : env['CONTROLLER_HEALTH_ACTION_KIND'].trim(),
    drainGraceMs: integer('CONTROLLER_DRAIN_GRACE_MS', 30_000, 0),
    logLevel: logLevel as ControllerConfig['logLevel'],
    subjectsDb: text('COUCHDB_SUBJECTS_DB', 'subjects'),
    runtimes,
    actionLimits,
    payloadMaxBytes: integer('CONTROLLER_PAYLOAD_MAX_BYTES', 1024 * 1024, 1),
    actionCacheTtlMs: integer('CONTROLLER_ACTION_CACHE_TTL_MS', 60_000, 0),
    actionCacheStaleMs: integer('CONTROLLER_ACTION_CACHE_STALE_MS', 600_000, 0),
    identityCacheTtlMs: integer('CONTROLLER_IDENTITY_CACHE_TTL_MS', 10_000, 0),
    invocationsPerMinute: integer('CONTROLLER_INVOCATIONS_PER_MINUTE', 0, 0),
    concurrentInvocations: integer('CONTROLLER_CONCURRENT_INVOCATIONS', 0, 0),
    requestTimeoutMs: integer('CONTROLLER_REQUEST_TIMEOUT_MS', 30_000, 1),
    headersTimeoutMs: integer('CONTROLLER_HEADERS_TIMEOUT_MS', 10_000, 1),
    connectionTimeoutMs: integer('CONTROLLER_CONNECTION_TIMEOUT_MS', blockingTimeoutMs + 30_000, 1),
  };
  if (problems.length > 0) throw new ControllerConfigError(problems);
  return config;
}

/** What `INVOKER_URL_TEMPLATE` writes where the invoker id goes. */
export const INVOKER_ID_PLACEHOLDER = '{id}';

export function expandInvokerUrl(template: string, id: number): string {
  return template.replaceAll(INVOKER_ID_PLACEHOLDER, String(id));
}

/** The base URL of invoker `id` (push-client appends `/invoke`); undefined: reach it through Kafka only. */
export function invokerUrlFor(config: Pick<ControllerConfig, 'invokerUrls' | 'invokerUrlTemplate'>, id: number): string | undefined {
  if (config.invokerUrlTemplate !== undefined) return expandInvokerUrl(config.invokerUrlTemplate, id);
  return config.invokerUrls[id];
}

function isHttpUrl(text: string): boolean {
  try {
    const parsed = new URL(text);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * Every environment variable `loadConfig` reads, recorded from one run over
 * an environment that answers "unset" to everything (it reads every variable
 * whatever the others say), so the list cannot fall behind the code.
 */
export function controllerVariables(): string[] {
  const seen = new Set<string>();
  const recorder = new Proxy({} as NodeJS.ProcessEnv, {
    get(_target, key) {
      if (typeof key === 'string') seen.add(key);
      return undefined;
    },
  });
  try {
    loadConfig(recorder);
  } catch (error) {
    if (!(error instanceof ControllerConfigError)) throw error;
  }
  return [...seen].sort();
}

/** The configuration for the startup log line: secrets only as set / not set. */
export function describeConfig(config: ControllerConfig): Record<string, unknown> {
  const { invokeToken, tls, couchdbUrl, runtimes, ...rest } = config;
  let couch = '<unparsable>';
  try {
    const url = new URL(couchdbUrl);
    url.username = '';
    url.password = '';
    couch = url.toString();
  } catch {
    // Reported by loadConfig already.
  }
  return {
    ...rest,
    couchdbUrl: couch,
    runtimes: [...runtimes.kinds.keys()],
    invokeToken: invokeToken === undefined ? 'not set' : 'set',
    tls: tls === undefined ? 'off' : { cert: tls.cert !== undefined, ca: tls.ca !== undefined },
  };
}
