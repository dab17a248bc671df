/**
 * The controller's configuration from the environment. Every problem names
 * its variable; all problems are reported at once.
 */
import { readFileSync } from 'node:fs';
import type { Identity } from '../protocol/index.js';
import type { PushTlsOptions } from './push-client.js';

export interface ControllerConfig {
  controllerId: string;
  controllerCount: number;
  host: string;
  port: number;
  /** Index = invoker id. */
  invokerUrls: string[];
  invokerUserMemoryMb: number;
  kafkaBrokers: string[] | undefined;
  healthTopic: string;
  couchdbUrl: string;
  whisksDb: string;
  /** Where forced records are written. */
  activationsDb: string;
  /** The journal of forced records not yet confirmed by CouchDB. */
  journalDir: string;
  invokeToken: string | undefined;
  tls: PushTlsOptions | undefined;
  identity: Identity;
  blockingTimeoutMs: number;
  forcedCompletionExtraMs: number;
  /** The time limit the forced-completion timer uses for actions with a shorter one (upstream 60 s). */
  forcedCompletionMinMs: number;
  /** Kind of the health test action document; empty: do not create it. */
  healthActionKind: string;
  drainGraceMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export class ControllerConfigError extends Error {
  override readonly name = 'ControllerConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid controller configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** Upstream's guest credentials (ansible/files/auth.guest), for a development setup. */
const GUEST_UUID = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502';
const GUEST_KEY = '123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP';
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

  const invokerUrls = list('INVOKER_URLS');
  invokerUrls.forEach((url, index) => {
    try {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      problems.push(`INVOKER_URLS: entry ${index} (invoker${index}) is not an http(s) URL: ${JSON.stringify(url)}`);
    }
  });
  const brokers = list('KAFKA_BROKERS');
  const kafkaBrokers = brokers.length > 0 ? brokers : undefined;
  if (invokerUrls.length === 0 && kafkaBrokers === undefined) {
    problems.push('INVOKER_URLS: required without KAFKA_BROKERS (comma-separated base URLs, index = invoker id, e.g. http://127.0.0.1:8080)');
  }

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

  const subject = text('CONTROLLER_SUBJECT', 'guest');
  const namespace = text('CONTROLLER_NAMESPACE', 'guest');
  const uuid = text('CONTROLLER_AUTH_UUID', GUEST_UUID);
  const authKey = text('CONTROLLER_AUTH_KEY', GUEST_KEY);

  const config: ControllerConfig = {
    controllerId,
    controllerCount: integer('CONTROLLER_COUNT', 1, 1, 1000),
    host: text('CONTROLLER_HOST', '127.0.0.1'),
    port: integer('CONTROLLER_PORT', 3233, 0, 65535),
    invokerUrls,
    invokerUserMemoryMb: integer('INVOKER_USER_MEMORY_MB', 2048, 128),
    kafkaBrokers,
    healthTopic: text('CONTROLLER_HEALTH_TOPIC', 'health'),
    couchdbUrl,
    whisksDb: text('COUCHDB_WHISKS_DB', 'whisks'),
    activationsDb: text('COUCHDB_ACTIVATIONS_DB', 'activations'),
    journalDir: text('CONTROLLER_JOURNAL_DIR', './.controller-journal'),
    invokeToken: optional('CONTROLLER_INVOKE_TOKEN'),
    tls,
    identity: {
      subject,
      namespace: { name: namespace, uuid },
      authkey: { api_key: `${uuid}:${authKey}` },
      rights: ['READ', 'PUT', 'DELETE', 'ACTIVATE'],
      limits: {},
    },
    blockingTimeoutMs: integer('CONTROLLER_BLOCKING_TIMEOUT_MS', 60_000, 1),
    forcedCompletionExtraMs: integer('CONTROLLER_FORCED_COMPLETION_EXTRA_MS', 60_000, 0),
    forcedCompletionMinMs: integer('CONTROLLER_FORCED_COMPLETION_MIN_MS', 60_000, 0),
    healthActionKind: env['CONTROLLER_HEALTH_ACTION_KIND'] === undefined ? 'nodejs:20' : env['CONTROLLER_HEALTH_ACTION_KIND'].trim(),
    drainGraceMs: integer('CONTROLLER_DRAIN_GRACE_MS', 30_000, 0),
    logLevel: logLevel as ControllerConfig['logLevel'],
  };
  if (problems.length > 0) throw new ControllerConfigError(problems);
  return config;
}

/** The configuration for the startup log line: secrets only as set / not set. */
export function describeConfig(config: ControllerConfig): Record<string, unknown> {
  const { identity, invokeToken, tls, couchdbUrl, ...rest } = config;
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
    subject: identity.subject,
    namespace: identity.namespace.name,
    invokeToken: invokeToken === undefined ? 'not set' : 'set',
    tls: tls === undefined ? 'off' : { cert: tls.cert !== undefined, ca: tls.ca !== undefined },
  };
}
