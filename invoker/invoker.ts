/**
 * The one place the invoker's components are built and connected. Nothing
 * here decides how an activation runs; it only decides who talks to whom, in
 * which order things start, and in which order they stop.
 */
import type { Tracer } from '@opentelemetry/api';
import Docker from 'dockerode';
import { hostname } from 'node:os';
import {
  isForcedRecord,
  megabytes,
  ParameterDecryptor,
  serializeActivationDocument,
  type InvokerInstanceId,
  type KeyMaterial,
} from '../protocol/index.js';
import type { InvokerConfig } from './config/config.js';
import { describeSettings } from './config/env-schema.js';
import { INVOKER_SETTINGS } from './config/config.js';
import { ActionContainer, ContainerFactory } from './docker/index.js';
import { createInvokerHttpServer, type InvokerHttpServer } from './http/server.js';
import { createReadiness } from './health/readiness.js';
import type { ActivationHandler, RejectingActivationHandler } from './invocation/activation-handler.js';
import { admissionControls, InvokerAdmission } from './invocation/admission.js';
import { ActivationIds } from './invocation/activation-ids.js';
import { InvocationCore, type RecordSink } from './invocation/invocation-core.js';
import { createKafkaJoin, createKafkaSide } from './kafka/index.js';
import { Lifecycle } from './lifecycle.js';
import { ContainerPool, type PoolSnapshot } from './pool/container-pool.js';
import { defaultRuntimeManifest, parseRuntimeManifest, type RuntimeManifest } from './runtime-manifest.js';
import { ActionStore } from './store/action-store.js';
import { ActivationWriter } from './store/activation-writer.js';
import { wideEventLogger, type Logger } from './telemetry/logger.js';
import { InvokerMetrics } from './telemetry/metrics.js';
import { defaultTracer } from './telemetry/tracing.js';
import { dockerContainerProvider } from './wiring/container-provider.js';
import { manifestImages } from './wiring/images.js';
import { storeActionSource } from './wiring/action-source.js';

export interface InvokerOptions {
  logger: Logger;
  tracer?: Tracer;
  /** Settings as the environment gave them, for the startup log (secrets masked). */
  environment?: Readonly<Record<string, string | undefined>>;
}

export interface RunningInvoker {
  readonly instance: InvokerInstanceId;
  /** The bound HTTP port (useful when configured as 0). */
  readonly port: number;
  readonly metrics: InvokerMetrics;
  /** The invocation core both transports feed (for in-process callers such as benchmarks). */
  readonly handler: ActivationHandler;
  /** Resolves once the Kafka side has joined its group and pings (at once without Kafka; never if it keeps failing until shutdown). */
  kafkaStarted(): Promise<void>;
  poolSnapshot(): PoolSnapshot;
  /**
   * Drain and stop: refuse new work, stop consuming Kafka (disabled ping),
   * let in-flight activations finish within the drain timeout and end the
   * rest as system errors, flush records, remove containers; within
   * `shutdownBoundMs(drainTimeoutMs)`. Idempotent.
   */
  shutdown(): Promise<void>;
}

/**
 * How long each shutdown step after the drain may take; a step that takes
 * longer is logged and left behind, so that the whole shutdown ends within
 * `shutdownBoundMs`. An operator derives the pod's
 * terminationGracePeriodSeconds from that (README, Shutdown).
 */
export const SHUTDOWN_STEP_LIMITS_MS = {
  /** Disabled ping and leaving the consumer group, before the drain. */
  kafkaIntake: 5_000,
  /** Activations ended as system errors after the drain timeout: records journaled, completions handed over. */
  endInFlight: 5_000,
  /** Kafka completions still being sent. */
  kafkaCompletions: 5_000,
  /** HTTP responses still being written; a second before the limit the connections are destroyed. */
  httpClose: 5_000,
  /** Kafka consumer, producer and admin disconnects. */
  kafkaClose: 5_000,
  /** Activation records to CouchDB (flushing until a second before the limit); the rest stays in the journal for the next start. */
  recordFlush: 10_000,
  /** Action containers removed. */
  containerRemoval: 20_000,
} as const;

/** The longest a shutdown takes: the drain timeout plus every step's limit. */
export function shutdownBoundMs(drainTimeoutMs: number): number {
  return drainTimeoutMs + Object.values(SHUTDOWN_STEP_LIMITS_MS).reduce((a, b) => a + b, 0);
}

export async function startInvoker(config: InvokerConfig, options: InvokerOptions): Promise<RunningInvoker> {
  const logger = options.logger;
  if (options.environment) {
    logger.info({ settings: describeSettings(INVOKER_SETTINGS, options.environment) }, 'starting invoker');
  }
  const metrics = new InvokerMetrics({ invokerId: config.invokerId });
  const instance: InvokerInstanceId = {
    instance: config.invokerId,
    userMemory: megabytes(config.userMemoryMb),
    tags: [],
    dedicatedNamespaces: [],
    displayedName: hostname(),
  };

  const docker = new Docker();
  const factory = new ContainerFactory({
    invokerId: config.containerOwner ?? config.invokerId,
    userMemoryMb: config.userMemoryMb,
    apiHost: config.apiHost,
    network: config.dockerNetwork,
    dns: { servers: config.dockerDnsServers, search: config.dockerDnsSearch, options: config.dockerDnsOptions },
    hardening: {
      ...(config.capDropAll ? { capDrop: ['ALL'] } : {}),
      readonlyRootfs: config.readOnlyRootfs,
    },
    maxResponseBytes: config.payloadLimitBytes,
    docker,
    logger: logger.child({ component: 'docker' }),
    observe: (operation, seconds, outcome) => metrics.dockerOperationSeconds.observe({ operation, outcome }, seconds),
    droppedLogLines: (reason) => metrics.logLinesDropped.inc({ reason }),
  });

  const manifest = loadManifest(config);
  const pool = new ContainerPool<ActionContainer>({
    provider: dockerContainerProvider(factory),
    logger,
    userMemoryMb: config.userMemoryMb,
    stemCells: manifest.stemCells(),
    pauseGraceMs: config.pauseGraceMs,
    idleTimeoutMs: config.idleTimeoutMs,
    queueLimit: config.queueLimit,
    drainTimeoutMs: config.drainTimeoutMs,
  });
  metrics.observePool(() => pool.totals());

  const actionStore = new ActionStore({
    url: config.couchdbUrl,
    database: config.whisksDb,
    cacheSize: config.actionCacheSize,
    logger,
  });
  const writer = new ActivationWriter({
    url: config.couchdbUrl,
    database: config.activationsDb,
    journalDir: config.journalDir,
    // A controller that gave up on an activation this invoker did run wrote a
    // forced system-error record; the real record replaces it, never the reverse.
    replaceable: isForcedRecord,
    logger,
    metrics: {
      batchWritten: (docs) => metrics.storeBatchSize.observe(docs),
      failure: (kind) => metrics.storeFailures.inc({ kind }),
    },
  });
  metrics.observeStorePending(() => writer.pending());

  const records: RecordSink = {
    store: (document) => writer.storeSerialized(document._id, serializeActivationDocument(document)),
  };
  const core = new InvocationCore<ActionContainer>({
    instance,
    actions: storeActionSource(actionStore, (kind) => {
      try {
        return manifest.resolveKind(kind).kind;
      } catch {
        return kind;
      }
    }),
    containers: pool,
    images: manifestImages(manifest, factory),
    records,
    decryptor: buildDecryptor(config.lockedArgsKeys),
    payloadLimitBytes: config.payloadLimitBytes,
    metrics,
    tracer: options.tracer ?? defaultTracer(),
    // The wide event only: fields the core builds, so no wildcard redaction (telemetry/logger.ts).
    logger: wideEventLogger(logger, { component: 'activation' }),
  });
  const admission = new InvokerAdmission(config.userMemoryMb, () => core.inFlight());
  // One id runs once, whether it comes over HTTP, Kafka, or both.
  const ids = new ActivationIds();
  core.onFinish(() => admission.changed());

  const kafka = createKafkaSide({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    instance,
    handler: timedHandler(core, metrics),
    admission,
    ids,
    logger,
    metrics,
    healthPingIntervalMs: config.healthPingIntervalMs,
    topicPrefix: config.kafkaTopicPrefix,
  });
  const join = kafka ? createKafkaJoin({ side: kafka, logger }) : undefined;
  const readiness = createReadiness({
    docker,
    records: writer,
    kafka: join,
    kafkaOptional: config.readinessKafka === 'degraded',
    draining: () => admission.isDraining(),
  });

  const http: InvokerHttpServer = createInvokerHttpServer({
    handler: core,
    admission,
    ids,
    controls: admissionControls(admission, kafka?.pinger),
    health: readiness,
    metrics,
    poolSnapshot: () => pool.snapshot(),
    logger,
    config: {
      invokeBodyLimitBytes: config.invokeBodyLimitBytes ?? config.payloadLimitBytes + 64 * 1024,
      invokeToken: config.invokeToken,
      headersTimeoutMs: config.httpHeadersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      adminUser: config.adminUser,
      adminPassword: config.adminPassword,
      tls: config.tls,
    },
    instanceName: `invoker${config.invokerId}`,
  });

  const limits = SHUTDOWN_STEP_LIMITS_MS;
  let port = 0;
  // Started top to bottom, stopped bottom to top: the stops, read upwards,
  // are the drain (README, Shutdown).
  const lifecycle = new Lifecycle(
    [
      { name: 'action store', stop: () => actionStore.close() },
      {
        name: 'containers',
        // Containers of an earlier run of this invoker id (a crash, a restart) are stale.
        start: async () => {
          const stale = await factory.removeInvokerContainers();
          if (stale > 0) logger.info({ removed: stale }, 'removed containers left by an earlier run');
        },
        // Nothing is in flight any more; a lease still held belongs to an
        // activation ended by the drain whose container still runs: remove it.
        stop: async () => {
          await pool.drain(0);
          await factory.removeInvokerContainers();
        },
        stopLimitMs: limits.containerRemoval,
        stopping: 'removing containers',
      },
      {
        name: 'activation records',
        start: () => writer.start(),
        stop: async () => {
          const result = await writer.close({ timeoutMs: limits.recordFlush - 1000 });
          logger.info({ result }, 'activation records flushed');
        },
        stopLimitMs: limits.recordFlush,
        stopping: 'flushing activation records',
      },
      ...(join ? [{ name: 'Kafka clients', stop: () => join.close(), stopLimitMs: limits.kafkaClose, stopping: 'closing Kafka' }] : []),
      {
        name: 'HTTP server',
        // Listening before the first enabled ping: a controller that sees the ping may push at once.
        start: async () => {
          ({ port } = await http.listen(config.httpHost, config.httpPort));
        },
        stop: () => http.close({ forceAfterMs: limits.httpClose - 1000 }),
        stopLimitMs: limits.httpClose,
        stopping: 'closing the HTTP server',
      },
      { name: 'container pool', start: () => pool.start() },
      ...(kafka
        ? [{ name: 'Kafka completions', stop: () => kafka.feed.whenIdle(), stopLimitMs: limits.kafkaCompletions, stopping: 'sending Kafka completions' }]
        : []),
      { name: 'activations in flight', stop: () => endInFlight(core, config.drainTimeoutMs, logger) },
      ...(kafka
        ? [{ name: 'Kafka intake', stop: () => kafka.stopIntake(), stopLimitMs: limits.kafkaIntake, stopping: 'stopping Kafka intake' }]
        : []),
      {
        name: 'admission',
        stop: () => {
          const boundMs = shutdownBoundMs(config.drainTimeoutMs);
          logger.info({ inFlight: core.inFlight(), drainTimeoutMs: config.drainTimeoutMs, boundMs }, 'draining: refusing new activations');
          admission.startDraining();
        },
      },
      {
        // HTTP push needs only the pool and the store: ready for it now.
        name: 'readiness',
        start: () => {
          readiness.markStarted();
          logger.info(
            { port, tls: config.tls !== undefined, kafka: kafka !== undefined, userMemoryMb: config.userMemoryMb },
            'invoker ready',
          );
          if (!join) logger.warn('no Kafka brokers configured (KAFKA_BROKERS): HTTP push only, no health pings');
        },
      },
      // The overflow path and the pings join in the background; a Kafka start
      // under way at shutdown finishes (or fails) first, so that what it started is stopped.
      ...(join ? [{ name: 'Kafka join', start: () => join.begin(), stop: () => join.stop() }] : []),
    ],
    logger,
  );
  await lifecycle.start();

  let shutdown: Promise<void> | undefined;
  return {
    instance,
    port,
    metrics,
    handler: core,
    poolSnapshot: () => pool.snapshot(),
    kafkaStarted: () => join?.whenJoined() ?? Promise.resolve(),
    shutdown() {
      shutdown ??= lifecycle.stop().then(() => logger.info('invoker stopped'));
      return shutdown;
    },
  };
}

/**
 * The drain proper: in-flight activations get the drain timeout; then they
 * end as system errors, since waiting longer would hold the controllers'
 * callers for as long as the slowest action.
 */
async function endInFlight(core: InvocationCore<ActionContainer>, drainTimeoutMs: number, logger: Logger): Promise<void> {
  if (await core.whenIdle(drainTimeoutMs)) return;
  const ended = core.abortInFlight(`drain timeout of ${drainTimeoutMs} ms exceeded`);
  logger.warn({ ended, drainTimeoutMs }, 'drain timed out: ending the activations in flight as system errors');
  const limitMs = SHUTDOWN_STEP_LIMITS_MS.endInFlight;
  if (!(await core.whenIdle(limitMs))) {
    logger.error({ inFlight: core.inFlight(), limitMs }, 'shutdown: activations still finishing after being ended; going on');
  }
}

function loadManifest(config: InvokerConfig): RuntimeManifest {
  if (config.runtimesManifestJson !== undefined) return parseRuntimeManifest(config.runtimesManifestJson, 'RUNTIMES_MANIFEST');
  return defaultRuntimeManifest({
    image: config.nodejsImage,
    nodejs24Image: config.nodejs24Image,
    stemCells: config.prewarmCount > 0 ? [{ count: config.prewarmCount, memoryMb: config.prewarmMemoryMb }] : [],
  });
}

function buildDecryptor(keysJson: string | undefined): ParameterDecryptor | undefined {
  if (keysJson === undefined) return undefined;
  // Validated as a JSON object by the configuration loader.
  return new ParameterDecryptor(JSON.parse(keysJson) as Record<string, KeyMaterial>);
}

/**
 * The Kafka path's end-to-end time; the HTTP route measures its own. An
 * unreadable message is not timed: it never ran, and the histogram keeps
 * meaning receipt-to-completion of activations that did.
 */
function timedHandler(core: RejectingActivationHandler, metrics: InvokerMetrics): RejectingActivationHandler {
  return {
    async handle(request) {
      const outcome = await core.handle(request);
      metrics.activationSeconds.observe({ transport: request.transport }, (Date.now() - request.receivedAt) / 1000);
      return outcome;
    },
    reject: (rejection) => core.reject(rejection),
  };
}
