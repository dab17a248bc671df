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
 * No activation record is stored for such a message: the store needs the
 * parsed message (user limits, action) that is exactly what is missing.
 */
import {
  combinedAck,
  controllerInstanceIdFromJson,
  generateTransactionId,
  isActivationId,
  serializeAcknowledgement,
  shrinkAck,
  transactionIdFromJson,
  whiskError,
  type ControllerInstanceId,
  type InvokerInstanceId,
  type JsonValue,
  type TransactionId,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { CompletionRecord } from './activation-feed.js';

/** Why a message was rejected: the `reason` label of `invoker_kafka_messages_rejected_total`. */
export type RejectionReason = 'empty' | 'invalid_json' | 'invalid_message';

/** The whisk-error text a caller sees for a message the invoker could not read. */
export function unreadableMessageError(problem: string): string {
  return `The invoker could not read the activation message: ${problem}`;
}

/** The parts of a rejected message that could be read, as far as they are valid. */
export interface SalvagedMessage {
  reason: RejectionReason;
  activationId?: string;
  controller?: ControllerInstanceId;
  transid?: TransactionId;
  blocking?: boolean;
  namespace?: string;
  actionPath?: string;
  actionName?: string;
  version?: string;
  subject?: string;
}

/** Reads what it can from the raw value of a message `parseActivationMessage` refused. Never throws. */
export function salvageRejectedMessage(value: Buffer | null): SalvagedMessage {
  if (value === null || value.length === 0) return { reason: 'empty' };
  let root: unknown;
  try {
    root = JSON.parse(value.toString('utf8'));
  } catch {
    return { reason: 'invalid_json' };
  }
  const out: SalvagedMessage = { reason: 'invalid_message' };
  if (!isRecord(root)) return out;

  if (isActivationId(root['activationId'])) out.activationId = root['activationId'];
  try {
    out.controller = controllerInstanceIdFromJson(root['rootControllerIndex'], 'rootControllerIndex');
  } catch {
    // left out: without a valid controller id there is no topic to answer on
  }
  try {
    out.transid = transactionIdFromJson(root['transid'] as JsonValue | undefined, 'transid');
  } catch {
    // left out: a fresh transaction id is made for the answer
  }
  if (typeof root['blocking'] === 'boolean') out.blocking = root['blocking'];
  const action = root['action'];
  if (isRecord(action)) {
    if (isName(action['path'])) out.actionPath = action['path'];
    if (isName(action['name'])) out.actionName = action['name'];
    if (typeof action['version'] === 'string') out.version = action['version'];
  }
  const user = root['user'];
  if (isRecord(user)) {
    if (typeof user['subject'] === 'string') out.subject = user['subject'];
    const ns = user['namespace'];
    if (isRecord(ns) && isName(ns['name'])) out.namespace = ns['name'];
  }
  return out;
}

export interface SystemErrorCompletionInput {
  activationId: string;
  controller: ControllerInstanceId;
  /** Echoed as received; a fresh one when the message had none. */
  transid?: TransactionId;
  /** The invoker answering. */
  instance: InvokerInstanceId;
  /** The whisk-error text. */
  error: string;
  /** Full form only when true and the identity fields below are all known. */
  blocking?: boolean;
  namespace?: string;
  actionPath?: string;
  actionName?: string;
  version?: string;
  subject?: string;
  now: number;
}

/** A system-error completion (full when possible, see the module comment) and its shrunk form. */
export function systemErrorCompletion(input: SystemErrorCompletionInput): CompletionRecord {
  const transid = input.transid ?? generateTransactionId(input.now);
  const activation: WhiskActivation = {
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
  const full = combinedAck(transid, activation, input.instance);
  const shrunk = serializeAcknowledgement(shrinkAck(full));
  const identified = input.namespace !== undefined && input.actionName !== undefined && input.subject !== undefined;
  return {
    activationId: input.activationId,
    controller: input.controller,
    completion: input.blocking === true && identified ? serializeAcknowledgement(full) : shrunk,
    shrunkCompletion: shrunk,
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Entity names as the activation record's reader accepts them: non-empty strings.
function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 256;
}
