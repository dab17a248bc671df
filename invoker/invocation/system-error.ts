/**
 * The system error that ends an activation whose message cannot run, and the
 * completion bytes every activation is answered with.
 *
 * Upstream (and the Go invoker) only log a message on `invoker<N>` they
 * cannot read; the controller then keeps the activation's slot until its
 * forced-completion timer fires and the blocking caller waits that long. When
 * enough of the message is readable to know whom to tell (`activationId` and
 * `rootControllerIndex`, see protocol/salvage.ts), the invoker answers at
 * once instead (InvocationCore.reject):
 *
 * - a full CombinedCompletionAndResultMessage with a whisk-error activation
 *   when the message says the call is blocking and the activation's identity
 *   fields (namespace, action name, subject) are readable, so the caller gets
 *   the error as its result;
 * - otherwise the shrunk form (`response` = the activation id).
 *
 * When the invoking namespace is readable too, the same whisk-error activation
 * is stored as the record (its id is `<namespace>/<activationId>`), so the
 * activation ends like any other: one completion, one record.
 */
import {
  combinedAck,
  generateTransactionId,
  serializeAcknowledgement,
  shrinkAck,
  whiskError,
  type ActivationMessage,
  type ControllerInstanceId,
  type InvokerInstanceId,
  type SalvagedMessage,
  type TransactionId,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { CompletionRecord } from './activation-handler.js';

/** The whisk-error text a caller sees for a message the invoker could not read. */
export function unreadableMessageError(problem: string): string {
  return `The invoker could not read the activation message: ${problem}`;
}

/**
 * What the answer is built from: the message's readable parts (transid echoed
 * when read, a fresh one otherwise; the full form only when `blocking` and the
 * identity fields are all known), plus who answers, with which text, when.
 */
export interface SystemErrorCompletionInput extends Omit<SalvagedMessage, 'reason' | 'activationId' | 'controller'> {
  activationId: string;
  controller: ControllerInstanceId;
  /** The invoker answering. */
  instance: InvokerInstanceId;
  /** The whisk-error text. */
  error: string;
  now: number;
}

/** The whisk-error activation that answers (and, when the namespace is known, records) a message that cannot run. */
export function systemErrorActivation(input: SystemErrorCompletionInput): WhiskActivation {
  return {
    namespace: input.namespace ?? '_',
    name: input.actionName ?? '_',
    subject: input.subject ?? '_',
    activationId: input.activationId,
    start: input.now,
    end: input.now,
    response: whiskError(input.error),
    logs: [],
    version: input.version ?? '0.0.1',
    publish: false,
    annotations:
      input.actionPath !== undefined && input.actionName !== undefined
        ? [{ key: 'path', value: `${input.actionPath}/${input.actionName}` }]
        : [],
    duration: 0,
  };
}

/** Whether the answer to `input` may carry the whole activation (see the module comment). */
export function answersInFull(input: Omit<SystemErrorCompletionInput, 'instance' | 'error' | 'now'>): boolean {
  const identified = input.namespace !== undefined && input.actionName !== undefined && input.subject !== undefined;
  return input.blocking === true && identified;
}

/** The transid an answer carries: the message's when it was readable, else a fresh one. */
export function answerTransid(input: Pick<SystemErrorCompletionInput, 'transid'>, now: number): TransactionId {
  return input.transid ?? generateTransactionId(now);
}

/**
 * The serialized CombinedCompletionAndResultMessage of an ended activation:
 * full (the activation) when `full`, else shrunk (its id), and always the
 * shrunk form for a transport that cannot carry the full one.
 */
export function completionBytes(
  transid: TransactionId,
  activation: WhiskActivation,
  instance: InvokerInstanceId,
  full: boolean,
): Pick<CompletionRecord, 'completion' | 'shrunkCompletion'> {
  const ack = combinedAck(transid, activation, instance);
  const shrunk = serializeAcknowledgement(shrinkAck(ack));
  return { completion: full ? serializeAcknowledgement(ack) : shrunk, shrunkCompletion: shrunk };
}

/**
 * A system-error completion (full when possible, see the module comment) and
 * its shrunk form, without a record: the transport's last resort when its
 * handler broke the promise never to reject.
 */
export function systemErrorCompletion(input: SystemErrorCompletionInput): CompletionRecord {
  return {
    activationId: input.activationId,
    controller: input.controller,
    ...completionBytes(answerTransid(input, input.now), systemErrorActivation(input), input.instance, answersInFull(input)),
  };
}

/** What the caller of `message` is told when the handler broke its promise never to reject. */
export const HANDLER_FAILED = 'The invoker failed to run the activation.';

/**
 * The last-resort answer for a readable message whose handler rejected (a
 * bug): a system-error completion, without a record (the handler may have
 * stored one).
 */
export function brokenHandlerCompletion(message: ActivationMessage, instance: InvokerInstanceId, now: number): CompletionRecord {
  return systemErrorCompletion({
    activationId: message.activationId,
    controller: message.rootControllerIndex,
    transid: message.transid,
    instance,
    error: HANDLER_FAILED,
    blocking: message.blocking,
    namespace: message.user.namespace.name,
    actionPath: message.action.path,
    actionName: message.action.name,
    ...(message.action.version === undefined ? {} : { version: message.action.version }),
    subject: message.user.subject,
    now,
  });
}
