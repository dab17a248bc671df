import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Transport = 'http' | 'kafka';
export type ActivationStatus = 'success' | 'application_error' | 'developer_error' | 'system_error';
export type ContainerOrigin = 'warm' | 'prewarm' | 'cold';

/** What the pool reports at scrape time; read lazily so no timer keeps gauges fresh. */
export interface PoolGaugeSource {
  (): {
    byState: Readonly<Record<string, number>>;
    usedMb: number;
    freeMb: number;
    queueLength: number;
  };
}

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const STATUS_NAMES: Record<number, ActivationStatus> = {
  0: 'success',
  1: 'application_error',
  2: 'developer_error',
  3: 'system_error',
};

/**
 * The invoker's Prometheus metrics, on a registry of its own (never the
 * process-wide default), so two invokers in one process - as in tests - do
 * not collide.
 */
export class InvokerMetrics {
  readonly registry: Registry;
  readonly activations: Counter<'transport' | 'status'>;
  readonly containerStarts: Counter<'origin'>;
  readonly waitSeconds: Histogram;
  readonly initSeconds: Histogram;
  readonly runSeconds: Histogram;
  readonly logCollectionSeconds: Histogram;
  readonly activationSeconds: Histogram<'transport'>;
  readonly dockerOperationSeconds: Histogram<'operation' | 'outcome'>;
  readonly storeBatchSize: Histogram;
  readonly storeFailures: Counter<'kind'>;
  readonly storePending: Gauge;
  readonly kafkaConsumerLag: Gauge<'partition'>;
  readonly kafkaMessagesRejected: Counter<'reason'>;
  readonly logLinesDropped: Counter<'reason'>;
  private poolSource: PoolGaugeSource | undefined;
  private storePendingSource: (() => number) | undefined;

  constructor(options: { invokerId: number; processMetrics?: boolean }) {
    this.registry = new Registry();
    this.registry.setDefaultLabels({ invoker: String(options.invokerId) });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'invoker_process_' });
    const registers = [this.registry];

    this.activations = new Counter({
      name: 'invoker_activations_total',
      help: 'Activations completed, by how they arrived and how they ended.',
      labelNames: ['transport', 'status'],
      registers,
    });
    this.containerStarts = new Counter({
      name: 'invoker_container_starts_total',
      help: 'Containers handed to an activation, by where they came from.',
      labelNames: ['origin'],
      registers,
    });
    const histogram = (name: string, help: string) =>
      new Histogram({ name, help, buckets: SECONDS_BUCKETS, registers });
    this.waitSeconds = histogram('invoker_activation_wait_seconds', 'From the transaction start to init or run start.');
    this.initSeconds = histogram('invoker_activation_init_seconds', 'Time in /init (cold and prewarm starts).');
    this.runSeconds = histogram('invoker_activation_run_seconds', 'Time in /run.');
    this.logCollectionSeconds = histogram('invoker_log_collection_seconds', 'Time spent collecting logs after /run.');
    this.activationSeconds = new Histogram({
      name: 'invoker_activation_seconds',
      help: 'From receipt of the message to the completion being sent.',
      labelNames: ['transport'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.dockerOperationSeconds = new Histogram({
      name: 'invoker_docker_operation_seconds',
      help: 'Docker Engine API calls, by operation and outcome.',
      labelNames: ['operation', 'outcome'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.storeBatchSize = new Histogram({
      name: 'invoker_store_batch_size',
      help: 'Activation records per _bulk_docs call.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers,
    });
    this.storeFailures = new Counter({
      name: 'invoker_store_failures_total',
      help: 'Failed activation-record writes (a whole batch, or single documents).',
      labelNames: ['kind'],
      registers,
    });
    this.storePending = new Gauge({
      name: 'invoker_store_pending_records',
      help: 'Activation records accepted but not yet confirmed by CouchDB.',
      registers,
      collect: () => {
        if (this.storePendingSource) this.storePending.set(this.storePendingSource());
      },
    });
    this.kafkaConsumerLag = new Gauge({
      name: 'invoker_kafka_consumer_lag',
      help: 'Messages on invoker<N> not yet consumed, per partition (from the last fetched batch).',
      labelNames: ['partition'],
      registers,
    });
    this.kafkaMessagesRejected = new Counter({
      name: 'invoker_kafka_messages_rejected_total',
      help: 'Messages on invoker<N> that could not be run, by reason.',
      labelNames: ['reason'],
      registers,
    });

    this.logLinesDropped = new Counter({
      name: 'invoker_log_lines_dropped_total',
      help:
        'Log lines of concurrent containers given to no activation: untagged (written outside any activation) ' +
        'or late (tagged for an activation that had ended).',
      labelNames: ['reason'],
      registers,
    });

    const containers = new Gauge({
      name: 'invoker_containers',
      help: 'Action containers, by state.',
      labelNames: ['state'],
      registers,
      collect: () => {
        containers.reset();
        const snapshot = this.poolSource?.();
        for (const [state, count] of Object.entries(snapshot?.byState ?? {})) containers.set({ state }, count);
      },
    });
    const poolGauges: Array<[string, string, (snapshot: ReturnType<PoolGaugeSource>) => number]> = [
      ['invoker_memory_used_mb', 'Memory (MiB) reserved by action containers, prewarmed included.', (p) => p.usedMb],
      ['invoker_memory_free_mb', 'Memory (MiB) still free for action containers.', (p) => p.freeMb],
      ['invoker_queue_length', 'Activations waiting for capacity.', (p) => p.queueLength],
    ];
    for (const [name, help, read] of poolGauges) {
      const gauge: Gauge = new Gauge({
        name,
        help,
        registers,
        collect: () => {
          const snapshot = this.poolSource?.();
          if (snapshot) gauge.set(read(snapshot));
        },
      });
    }
  }

  observePool(source: PoolGaugeSource): void {
    this.poolSource = source;
  }

  observeStorePending(source: () => number): void {
    this.storePendingSource = source;
  }

  countActivation(transport: Transport, statusCode: number): void {
    this.activations.inc({ transport, status: STATUS_NAMES[statusCode] ?? 'system_error' });
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
