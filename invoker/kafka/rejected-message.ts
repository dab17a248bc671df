/**
 * What the feed answers for a message on `invoker<N>` it cannot run.
 *
 * Upstream (and the Go invoker) only log such a message; the controller then
 * keeps the activation's slot until its forced-completion timer fires and the
 * blocking caller waits that long. When enough of the message is readable to
 * know whom to tell (`activationId` and `rootControllerIndex`), the feed sends
 * a system-error completion at once instead:
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
  type ControllerInstanceId,
  type InvokerInstanceId,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { CompletionRecord } from './activation-feed.js';

export { salvageRejectedMessage, type RejectionReason, type SalvagedMessage } from '../../protocol/index.js';
import type { SalvagedMessage } from '../../protocol/index.js';

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

/** A system-error completion (full when possible, see the module comment) and its shrunk form. */
export function systemErrorCompletion(input: SystemErrorCompletionInput): CompletionRecord {
  const transid = input.transid ?? generateTransactionId(input.now);
  const full = combinedAck(transid, systemErrorActivation(input), input.instance);
  const shrunk = serializeAcknowledgement(shrinkAck(full));
  const identified = input.namespace !== undefined && input.actionName !== undefined && input.subject !== undefined;
  return {
    activationId: input.activationId,
    controller: input.controller,
    completion: input.blocking === true && identified ? serializeAcknowledgement(full) : shrunk,
    shrunkCompletion: shrunk,
  };
}
