/**
 * What the invocation core needs from the rest of the invoker, declared here
 * and implemented elsewhere (invoker.ts wires them: the pool, the action store
 * through wiring/action-source.ts, the journaled writer, the runtime manifest).
 * Tests drive the core over in-memory fakes of exactly these.
 */
import type { Tracer } from '@opentelemetry/api';
import type { ActivationDocument, InvokerInstanceId, ParameterDecryptor, RuntimeAction } from '../../protocol/index.js';
import type { AcquireRequest, Lease, PoolContainer } from '../pool/types.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import type { RuntimeResult } from './classify.js';

/**
 * An action as the core needs it, built from the store's document
 * (wiring/action-source.ts): what the pool and the record need, and
 * `runtime`, the action as /init receives it.
 */
export interface ExecutableAction {
  namespace: string;
  version: string;
  kind: string;
  /** Set for blackbox actions: the user's image. */
  image?: string;
  limits: { timeoutMs: number; memoryMb: number; logsMb: number; concurrency: number };
  /** Sequences are composed by the controller; an invoker cannot run one. */
  isSequence: boolean;
  runtime: RuntimeAction;
}

export interface ActionSource {
  /** 'not-found' for a missing or deleted action; rejects when the store cannot answer. */
  get(action: { path: string; name: string }, revision: string | null): Promise<ExecutableAction | 'not-found'>;
}

export interface RecordSink {
  /** Resolves once the record is durable (journaled); CouchDB confirms later. */
  store(document: ActivationDocument): Promise<void>;
}

/** The container operations the core drives, beyond what the pool needs. */
export interface RunnableContainer extends PoolContainer {
  init(body: string, timeoutMs: number): Promise<RuntimeResult>;
  run(body: string, timeoutMs: number): Promise<RuntimeResult>;
  /** `activationId` names the log in a container that runs several activations at once. */
  beginActivation(options?: { limitBytes?: number; activationId?: string }): void;
  collectLogs(options?: { limitBytes?: number; activationId?: string }): Promise<{ lines: string[]; complete: boolean }>;
  inspectExit(): Promise<{ oomKilled: boolean }>;
}

export interface ContainerSource<C extends RunnableContainer> {
  acquire(request: AcquireRequest): Promise<Lease<C>>;
}

export interface ImageSource {
  /** The image of a managed kind; undefined when this invoker does not know the kind. */
  imageFor(kind: string): string | undefined;
  /** Makes a blackbox image present locally (pull). */
  ensureImage(image: string): Promise<void>;
}

export interface InvocationCoreDeps<C extends RunnableContainer> {
  instance: InvokerInstanceId;
  actions: ActionSource;
  containers: ContainerSource<C>;
  images: ImageSource;
  records: RecordSink;
  decryptor: ParameterDecryptor | undefined;
  payloadLimitBytes: number;
  metrics: InvokerMetrics;
  tracer: Tracer;
  logger: Logger;
  clock?: () => number;
}
