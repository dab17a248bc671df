/**
 * The seam between the transports (HTTP push, Kafka feed) and the invocation
 * core. Both transports parse the same message bytes with protocol/ and hand
 * the message here; the core answers with the completion bytes once the
 * activation has ended and its record is durably queued for CouchDB.
 */
import type { ActivationMessage, ControllerInstanceId, SalvagedMessage } from '../../protocol/index.js';
import type { Transport } from '../telemetry/metrics.js';

export interface ActivationRequest {
  message: ActivationMessage;
  transport: Transport;
  /** Epoch ms at which the transport received the message. */
  receivedAt: number;
  /** W3C `traceparent` of the HTTP request, used when the message has no traceContext. */
  traceparent?: string;
  /** The controller's `Functions-*` headers, logged with the activation. */
  requestTags?: Readonly<Record<string, string>>;
}

export interface ActivationOutcome {
  activationId: string;
  /** The controller that waits for the completion (`completed<C>`). */
  controller: ControllerInstanceId;
  /** 0 success, 1 application error, 2 developer error, 3 system error. */
  statusCode: number;
  /** Serialized CombinedCompletionAndResultMessage: full when blocking, shrunk otherwise. */
  completion: string;
  /** The same completion in shrunk form, for a transport that cannot carry the full one. */
  shrunkCompletion: string;
  /**
   * Epoch ms until which the controller still waits for this completion (its
   * forced-completion deadline): a transport that fails to deliver it keeps
   * trying until then. Absent: the default window of the transport.
   */
  retryUntil?: number;
}

/** A completion addressed to its controller: what a transport delivers (Kafka: to `completed<C>`). */
export type CompletionRecord = Pick<ActivationOutcome, 'activationId' | 'controller' | 'completion' | 'shrunkCompletion' | 'retryUntil'>;

/** A message that did not parse (or broke the naming rules), as far as it could be read. */
export interface ActivationRejection {
  /** The readable parts of the raw message (protocol/salvage.ts). */
  salvaged: SalvagedMessage;
  /** Why it cannot run: the parser's complaint, which names the field and never its value. */
  problem: string;
  transport: Transport;
  /** Epoch ms at which the transport received the message. */
  receivedAt: number;
}

export interface ActivationHandler {
  /**
   * Runs one activation to its end. Never rejects: every failure, down to an
   * unexpected exception, becomes a system-error outcome with a stored record.
   */
  handle(request: ActivationRequest): Promise<ActivationOutcome>;
}

/**
 * A handler that also ends the activations of unreadable messages: the Kafka
 * feed's, which must answer them itself (HTTP push answers such a body with
 * 400 and the controller deals with it).
 */
export interface RejectingActivationHandler extends ActivationHandler {
  /**
   * Ends the activation of an unreadable message as a system error, built,
   * stored and counted like every other one. Undefined when the message names
   * no activation id or controller to answer: then there is nothing to end and
   * nothing is stored. Never rejects.
   */
  reject(rejection: ActivationRejection): Promise<ActivationOutcome | undefined>;
}

/** Whether the invoker takes new work, and how much it could start now. */
export interface Admission {
  /** False while disabled or draining: nothing is acknowledged that will not run. */
  accepting(): boolean;
  /** Why `accepting()` is false, for 503 bodies and logs. */
  refusalReason(): string | undefined;
  /** Activations the pool could start without queueing (the Kafka feed's peek budget). */
  freeSlots(): number;
  /** Called whenever capacity may have been freed or admission changed. */
  onChange(listener: () => void): () => void;
}
