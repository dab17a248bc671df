/**
 * Wiring only: configuration -> components -> listen; SIGTERM/SIGINT -> drain
 * and close. Run: `node --import tsx controller-lb/main.ts` (see README.md).
 */
import { Kafka, logLevel } from 'kafkajs';
import { createLogger } from '../invoker/telemetry/logger.js';
import { serializeActivationDocument, type ControllerInstanceId } from '../protocol/index.js';
import { CouchActionStore } from './action-store.js';
import { CouchActivationStore } from './activation-store.js';
import { buildApi } from './api.js';
import { CouchServer } from './couch-db.js';
import { CouchIdentityStore } from './identity-store.js';
import { registerHealthRoute } from './health-route.js';
import { ControllerConfigError, describeConfig, invokerUrlFor, loadConfig, type ControllerConfig } from './config.js';
import { startKafkaHealthMonitor, startStaticHealthMonitor, type HealthMonitor } from './health-monitor.js';
import { configuredInvokerId, InvokerPool } from './invoker-state.js';
import { KafkaPath } from './kafka-path.js';
import { kafkaLogCreator } from './kafka-support.js';
import { LoadBalancer } from './load-balancer.js';
import { PushClient } from './push-client.js';
import { ActivationWriter } from '../invoker/store/activation-writer.js';
import { fixKafkajsRequestQueue } from '../invoker/kafka/request-queue-fix.js';

async function main(config: ControllerConfig): Promise<void> {
  const logger = createLogger({ level: config.logLevel, base: { component: 'controller', controller: config.controllerId } });
  logger.info({ config: describeConfig(config) }, 'starting controller');
  const controller: ControllerInstanceId = { asString: config.controllerId };
  const pool = new InvokerPool({ controllerCount: config.controllerCount });
  const pusher = new PushClient({ token: config.invokeToken, tls: config.tls });

  // Forced records: journaled, then written create-only (the invoker's record wins).
  const records = new ActivationWriter({
    url: config.couchdbUrl,
    database: config.activationsDb,
    journalDir: config.journalDir,
    logger,
  });
  await records.start();

  let balancer: LoadBalancer | undefined;
  let kafkaPath: KafkaPath | undefined;
  const monitors: HealthMonitor[] = [];
  if (config.kafkaBrokers !== undefined) {
    // kafkajs's idle 1 ms timer loop (invoker/kafka/request-queue-fix.ts).
    fixKafkajsRequestQueue();
    const kafka = new Kafka({
      clientId: `controller${config.controllerId}`,
      brokers: config.kafkaBrokers,
      logLevel: logLevel.WARN,
      logCreator: kafkaLogCreator(logger),
    });
    // Configured invokers show as down until their first ping.
    config.invokerUrls.forEach((_url, index) => pool.register(configuredInvokerId(index, config.invokerUserMemoryMb)));
    // Acks that arrive before the balancer exists are for no activation of this process.
    kafkaPath = await KafkaPath.start({
      kafka,
      controller,
      logger,
      topicPrefix: config.kafkaTopicPrefix,
      onAcknowledgement: (ack) => balancer?.handleAcknowledgement(ack),
    });
    monitors.push(await startKafkaHealthMonitor({ kafka, controller, pool, logger, topicPrefix: config.kafkaTopicPrefix, topic: config.healthTopic }));
  }
  // Invokers with a URL are probed over HTTP too: without Kafka that is their
  // only health source, with it they stay up for HTTP push when Kafka is down.
  if (config.invokerUrls.length > 0) {
    monitors.push(
      startStaticHealthMonitor({
        invokers: config.invokerUrls.map((url) => ({ url, userMemoryMb: config.invokerUserMemoryMb })),
        pool,
        logger,
        tls: config.tls,
      }),
    );
  }

  balancer = new LoadBalancer({
    controller,
    pool,
    pusher,
    records: { store: (document) => records.storeSerialized(document._id, serializeActivationDocument(document)) },
    kafka: kafkaPath,
    invokerUrl: (index) => invokerUrlFor(config, index),
    logger,
    forcedCompletion: { extraMs: config.forcedCompletionExtraMs, minTimeLimitMs: config.forcedCompletionMinMs },
  });

  const couch = new CouchServer({ url: config.couchdbUrl });
  const actions = new CouchActionStore(couch.db(config.whisksDb), { ttlMs: config.actionCacheTtlMs, staleMs: config.actionCacheStaleMs });
  const activations = new CouchActivationStore(couch.db(config.activationsDb));
  const identities = new CouchIdentityStore(couch.db(config.subjectsDb), { ttlMs: config.identityCacheTtlMs });
  // Databases and views (upstream's design documents); a CouchDB that is down
  // now is not fatal: the API answers 500 until it is back.
  for (const [what, store] of [['whisks', actions], ['activations', activations], ['subjects', identities]] as const) {
    await store.prepare().catch((error: unknown) => {
      logger.warn({ database: what, error: (error as Error).message }, 'could not prepare the database (views); will use it as it is');
    });
  }
  if (config.healthActionKind !== '') {
    // Not fatal: without it, test actions answer "not found", which still shows the invoker works.
    await actions.ensureHealthTestAction(controller, config.healthActionKind).catch((error: unknown) => {
      logger.warn({ error: (error as Error).message }, 'could not create the health test action');
    });
  }

  const app = await buildApi({
    balancer,
    pool,
    actions,
    activations,
    identities,
    controller,
    logger,
    manifest: config.runtimes,
    limits: config.actionLimits,
    payloadMaxBytes: config.payloadMaxBytes,
    blockingTimeoutMs: config.blockingTimeoutMs,
    throttles: { invocationsPerMinute: config.invocationsPerMinute, concurrentInvocations: config.concurrentInvocations },
    timeouts: { requestTimeoutMs: config.requestTimeoutMs, headersTimeoutMs: config.headersTimeoutMs, connectionTimeoutMs: config.connectionTimeoutMs },
  });
  registerHealthRoute(app, { pool, kafka: kafkaPath });
  const address = await app.listen({ host: config.host, port: config.port });
  logger.info({ address }, 'controller listening');

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, inFlight: balancer.inFlight }, 'stopping: draining activations in flight');
    // New requests get 503 while the server closes; waiting callers are
    // answered as their activations complete, or forced after the grace.
    const closing = app.close();
    await balancer.close(config.drainGraceMs);
    await closing;
    await Promise.all([...monitors.map((monitor) => monitor.stop()), kafkaPath?.close(), pusher.close()]);
    const flushed = await records.close({ timeoutMs: 10_000 });
    logger.info({ result: flushed }, 'forced records flushed');
    await couch.close();
    logger.info('controller stopped');
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      stop(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'stopping the controller failed');
          process.exit(1);
        },
      );
    });
  }
}

let config: ControllerConfig;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (!(error instanceof ControllerConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(2);
}
main(config).catch((error: unknown) => {
  process.stderr.write(`controller failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
