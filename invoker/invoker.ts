/**
 * The one place the invoker's components are built and connected. Nothing
 * here decides how an activation runs; it only decides who talks to whom, in
 * which order things start, and in which order they stop.
 */
import type { Tracer } from '@opentelemetry/api';
import Docker from 'dockerode';
import type { Admin } from 'kafkajs';
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
import type { HealthCheckResult } from './http/ops-routes.js';
import type { ActivationHandler, RejectingActivationHandler } from './invocation/activation-handler.js';
import { InvokerAdmission } from './invocation/admission.js';
import { ActivationIds } from './invocation/activation-ids.js';
import { InvocationCore, type RecordSink } from './invocation/invocation-core.js';
import { createKafkaSide, type KafkaSide } from './kafka/index.js';
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

const HEALTH_CHECK_TIMEOUT_MS = 2000;

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
  // Containers of an earlier run of this invoker id (a crash, a restart) are stale.
  const stale = await factory.removeInvokerContainers();
  if (stale > 0) logger.info({ removed: stale }, 'removed containers left by an earlier run');

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
  await writer.start();
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
  let kafkaAdmin: Admin | undefined;
  // Ready once HTTP work can run (pool and store up): probes must not route
  // work to a half-started invoker. Kafka joins in the background.
  let started = false;
  let kafkaJoined = false;
  let kafkaProblem: string | undefined = 'not yet connected';

  const checks = async (): Promise<HealthCheckResult[]> => {
    const results = [
      check('startup', async () => {
        if (!started) throw new Error('still starting');
      }),
      check('docker', () => docker.ping()),
      // Optional: while CouchDB is down records wait in the journal and known
      // actions come from the cache, so the invoker still takes HTTP work;
      // failing readiness here would take every invoker out of rotation at
      // the controller for a store outage (it says `degraded` instead).
      check(
        'store',
        async () => {
          const health = writer.health();
          if (!health.healthy) throw new Error(health.lastError ?? 'not yet connected');
        },
        true,
      ),
    ];
    if (kafka) {
      // From the background probe, never a broker call on the request path:
      // a hanging broker must not make the readiness probe itself time out.
      results.push(
        check(
          'kafka',
          async () => {
            if (!kafkaJoined) throw new Error(`starting: ${kafkaProblem ?? 'joining the invoker topic\'s group'}`);
            if (kafkaProblem !== undefined) throw new Error(kafkaProblem);
          },
          config.readinessKafka === 'degraded',
        ),
      );
    }
    return Promise.all(results);
  };

  const http: InvokerHttpServer = createInvokerHttpServer({
    handler: core,
    admission,
    ids,
    controls: {
      enable: () => {
        admission.enable();
        // Draining is one-way: an /enable during the drain must not announce
        // the invoker to the controllers again (its feed has stopped).
        if (!admission.isDraining()) kafka?.pinger.enable();
      },
      disable: () => {
        admission.disable();
        void kafka?.pinger.disable();
      },
      isEnabled: () => admission.isEnabled(),
    },
    health: { checks, draining: () => admission.isDraining() },
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
  // Listen before the first enabled ping: a controller that sees the ping may push at once.
  const { port } = await http.listen(config.httpHost, config.httpPort);
  pool.start();
  // HTTP push needs only the pool and the store: ready for it now. Kafka (the
  // overflow path and the pings) joins its group in the background, which
  // takes a restarted invoker 18-30 s (the group waits out its old member).
  started = true;
  logger.info(
    { port, tls: config.tls !== undefined, kafka: kafka !== undefined, userMemoryMb: config.userMemoryMb },
    'invoker ready',
  );
  let stopping = false;
  let kafkaStarting: Promise<void> | undefined;
  let kafkaProbe: NodeJS.Timeout | undefined;
  if (kafka) {
    kafkaStarting = (async () => {
      for (let attempt = 1; !stopping; attempt++) {
        try {
          await kafka.start();
          const admin = kafka.kafka.admin();
          await admin.connect();
          kafkaAdmin = admin;
          kafkaJoined = true;
          kafkaProblem = undefined;
          kafkaProbe = setInterval(() => {
            void check('kafka', () => admin.describeCluster()).then((result) => {
              if (result.ok === (kafkaProblem === undefined)) return;
              kafkaProblem = result.ok ? undefined : `the broker does not answer: ${result.detail ?? ''}`;
              if (result.ok) logger.info('Kafka answers again');
              else logger.warn({ problem: kafkaProblem }, 'Kafka does not answer: HTTP push goes on, the overflow waits');
            });
          }, HEALTH_CHECK_TIMEOUT_MS);
          kafkaProbe.unref();
          logger.info({ attempt }, 'Kafka side started: consuming invoker topic, sending health pings');
          return;
        } catch (error) {
          kafkaProblem = (error as Error).message;
          const retryInMs = Math.min(30_000, 1_000 * 2 ** Math.min(attempt - 1, 5));
          logger.error({ err: error, attempt, retryInMs }, 'starting the Kafka side failed; HTTP push goes on, retrying');
          await new Promise((resolve) => setTimeout(resolve, retryInMs).unref());
        }
      }
    })();
  } else {
    logger.warn('no Kafka brokers configured (KAFKA_BROKERS): HTTP push only, no health pings');
  }

  let shutdown: Promise<void> | undefined;
  return {
    instance,
    port,
    metrics,
    handler: core,
    poolSnapshot: () => pool.snapshot(),
    kafkaStarted: () => kafkaStarting?.then(() => (kafkaJoined ? undefined : new Promise<void>(() => undefined))) ?? Promise.resolve(),
    shutdown() {
      stopping = true;
      clearInterval(kafkaProbe);
      shutdown ??= (async () => {
        // A Kafka start under way finishes (or fails) first, so that what it started is stopped.
        await kafkaStarting;
        clearInterval(kafkaProbe);
        await drain({ config, logger, admission, kafka, kafkaAdmin, core, http, writer, pool, factory, actionStore });
      })();
      return shutdown;
    },
  };
}

async function drain(parts: {
  config: InvokerConfig;
  logger: Logger;
  admission: InvokerAdmission;
  kafka: KafkaSide | undefined;
  kafkaAdmin: Admin | undefined;
  core: InvocationCore<ActionContainer>;
  http: InvokerHttpServer;
  writer: ActivationWriter;
  pool: ContainerPool<ActionContainer>;
  factory: ContainerFactory;
  actionStore: ActionStore;
}): Promise<void> {
  const { config, logger, admission, kafka, core } = parts;
  const limits = SHUTDOWN_STEP_LIMITS_MS;
  // Each step is bounded: one that hangs (a broker or engine that does not
  // answer) is logged and left behind, and the shutdown goes on.
  const step = async (what: string, limitMs: number, work: () => Promise<unknown>) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      const finished = await Promise.race([
        work().then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), limitMs);
        }),
      ]);
      if (!finished) logger.error({ limitMs }, `shutdown: ${what} did not finish within ${limitMs} ms; going on`);
    } catch (error) {
      logger.error({ err: error }, `shutdown: ${what} failed`);
    } finally {
      clearTimeout(timer);
    }
  };
  const boundMs = shutdownBoundMs(config.drainTimeoutMs);
  logger.info({ inFlight: core.inFlight(), drainTimeoutMs: config.drainTimeoutMs, boundMs }, 'draining: refusing new activations');
  admission.startDraining();
  await step('stopping Kafka intake', limits.kafkaIntake, async () => kafka?.stopIntake());
  const idle = await core.whenIdle(config.drainTimeoutMs);
  if (!idle) {
    // Waiting longer would hold the controllers' callers for as long as the
    // slowest action; they get an explicit system error instead, now.
    const ended = core.abortInFlight(`drain timeout of ${config.drainTimeoutMs} ms exceeded`);
    logger.warn({ ended, drainTimeoutMs: config.drainTimeoutMs }, 'drain timed out: ending the activations in flight as system errors');
    if (!(await core.whenIdle(limits.endInFlight))) {
      logger.error({ inFlight: core.inFlight(), limitMs: limits.endInFlight }, 'shutdown: activations still finishing after being ended; going on');
    }
  }
  // Kafka completions go out after the core answers; let those sends settle.
  await step('sending Kafka completions', limits.kafkaCompletions, async () => kafka?.feed.whenIdle());
  await step('closing the HTTP server', limits.httpClose, () => parts.http.close({ forceAfterMs: limits.httpClose - 1000 }));
  await step('closing Kafka', limits.kafkaClose, async () => {
    await parts.kafkaAdmin?.disconnect();
    await kafka?.close();
  });
  await step('flushing activation records', limits.recordFlush, async () => {
    const result = await parts.writer.close({ timeoutMs: limits.recordFlush - 1000 });
    logger.info({ result }, 'activation records flushed');
  });
  await step('removing containers', limits.containerRemoval, async () => {
    // Nothing is in flight any more; a lease still held belongs to an
    // activation ended above whose container is still running: remove it.
    await parts.pool.drain(0);
    await parts.factory.removeInvokerContainers();
  });
  parts.actionStore.close();
  logger.info('invoker stopped');
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

async function check(name: string, probe: () => Promise<unknown>, optional = false): Promise<HealthCheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_CHECK_TIMEOUT_MS} ms`)), HEALTH_CHECK_TIMEOUT_MS);
      }),
    ]);
    return { name, ok: true };
  } catch (error) {
    return { name, ok: false, detail: (error as Error).message, ...(optional ? { optional } : {}) };
  } finally {
    clearTimeout(timer);
  }
}
