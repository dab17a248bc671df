/**
 * Acknowledgements: invoker -> controller on `completed<C>` and as the body
 * of the /invoke answer (wire spec section 3, upstream Message.scala).
 *
 * The wire has no type tag; the controller tells them apart by the fields
 * present: `instance` and `response` -> combined; only `instance` ->
 * completion; neither -> result. Our values carry a `kind` for the same
 * distinction; it is not written.
 *
 *   combined:   {"transid","response","isSystemError"?,"instance"}
 *   completion: {"transid","activationId","isSystemError"?,"instance"}
 *   result:     {"transid","response"}
 *
 * `response` is the full WhiskActivation, or only its activation id when
 * "shrunk" (non-blocking, or too large for Kafka).
 */
import { activationIdProblem, isActivationId, reqActivationId } from './activation-id.js';
import { isSystemError as responseIsSystemError } from './activation-response.js';
import { whiskActivationFromJson, writeWhiskActivation, type WhiskActivation } from './activation.js';
import { invokerInstanceIdFromJson, writeInvokerInstanceId, type InvokerInstanceId } from './instance-ids.js';
import type { JsonValue } from './json.js';
import { asObject, fail, optBoolean, parseRootObject, type WireInput } from './json-read.js';
import { quote } from './json-write.js';
import { transactionIdFromJson, writeTransactionId, type TransactionId } from './transaction-id.js';

/** A full activation, or just its id when shrunk. */
export type AckResponse = WhiskActivation | string;

export interface CombinedCompletionAndResultMessage {
  kind: 'combined';
  transid: TransactionId;
  response: AckResponse;
  /** Optional upstream; always written by the invoker's constructors. */
  isSystemError?: boolean;
  instance: InvokerInstanceId;
}

export interface CompletionMessage {
  kind: 'completion';
  transid: TransactionId;
  activationId: string;
  isSystemError?: boolean;
  instance: InvokerInstanceId;
}

export interface ResultMessage {
  kind: 'result';
  transid: TransactionId;
  response: AckResponse;
}

export type AcknowledgementMessage = CombinedCompletionAndResultMessage | CompletionMessage | ResultMessage;

/** One message that frees the slot and carries the result (blocking call without separate log collection). */
export function combinedAck(
  transid: TransactionId,
  activation: WhiskActivation,
  instance: InvokerInstanceId,
): CombinedCompletionAndResultMessage {
  return {
    kind: 'combined',
    transid,
    response: activation,
    isSystemError: responseIsSystemError(activation.response),
    instance,
  };
}

/** Frees the slot (after logs are collected). */
export function completionAck(
  transid: TransactionId,
  activation: WhiskActivation,
  instance: InvokerInstanceId,
): CompletionMessage {
  return {
    kind: 'completion',
    transid,
    activationId: activation.activationId,
    isSystemError: responseIsSystemError(activation.response),
    instance,
  };
}

/** The result for a blocking caller, sent before logs are collected. */
export function resultAck(transid: TransactionId, activation: WhiskActivation): ResultMessage {
  return { kind: 'result', transid, response: activation };
}

/** The same acknowledgement with the activation replaced by its id (upstream `shrink`). */
export function shrinkAck(ack: AcknowledgementMessage): AcknowledgementMessage {
  if (ack.kind === 'completion' || typeof ack.response === 'string') return ack;
  return { ...ack, response: ack.response.activationId };
}

/** The activation id an acknowledgement is about. */
export function ackActivationId(ack: AcknowledgementMessage): string {
  if (ack.kind === 'completion') return ack.activationId;
  return typeof ack.response === 'string' ? ack.response : ack.response.activationId;
}

function readResponse(value: JsonValue | undefined, path: string): AckResponse {
  if (typeof value === 'string') {
    if (isActivationId(value)) return value;
    return fail(path, activationIdProblem(value));
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return whiskActivationFromJson(value, path);
  return fail(path, 'expected an activation or an activation id');
}

function writeResponse(r: AckResponse): string {
  return typeof r === 'string' ? quote(r) : writeWhiskActivation(r);
}

/** Validates an already parsed JSON value; dispatches on the fields present, as the controller does. */
export function acknowledgementFromJson(value: unknown, path: string = 'AcknowledgementMessage'): AcknowledgementMessage {
  const o = asObject(value, path);
  const hasInstance = o['instance'] !== undefined;
  const hasResponse = o['response'] !== undefined;
  const transid = transactionIdFromJson(o['transid'], `${path}.transid`);
  if (hasInstance && hasResponse) {
    const p = `${path}(combined)`;
    const m: CombinedCompletionAndResultMessage = {
      kind: 'combined',
      transid,
      response: readResponse(o['response'], `${p}.response`),
      instance: invokerInstanceIdFromJson(o['instance'], `${p}.instance`),
    };
    const isSystemError = optBoolean(o, 'isSystemError', p);
    if (isSystemError !== undefined) m.isSystemError = isSystemError;
    return m;
  }
  if (hasInstance) {
    const p = `${path}(completion)`;
    const m: CompletionMessage = {
      kind: 'completion',
      transid,
      activationId: reqActivationId(o, 'activationId', p),
      instance: invokerInstanceIdFromJson(o['instance'], `${p}.instance`),
    };
    const isSystemError = optBoolean(o, 'isSystemError', p);
    if (isSystemError !== undefined) m.isSystemError = isSystemError;
    return m;
  }
  // The Go invoker writes "invoker" instead of "instance"; read as a result
  // message it would silently never free the slot, so say what is wrong.
  if (o['invoker'] !== undefined) {
    return fail(`${path}.invoker`, 'unsupported field (the invoker id belongs in "instance")');
  }
  if (!hasResponse) {
    return fail(path, 'expected "instance" and/or "response" (combined, completion or result message)');
  }
  return { kind: 'result', transid, response: readResponse(o['response'], `${path}(result).response`) };
}

export function parseAcknowledgement(input: WireInput): AcknowledgementMessage {
  return acknowledgementFromJson(parseRootObject(input, 'AcknowledgementMessage'));
}

export function serializeAcknowledgement(ack: AcknowledgementMessage): string {
  const transid = writeTransactionId(ack.transid);
  switch (ack.kind) {
    case 'combined': {
      let out = `{"transid":${transid},"response":${writeResponse(ack.response)}`;
      if (ack.isSystemError !== undefined) out += `,"isSystemError":${ack.isSystemError ? 'true' : 'false'}`;
      return `${out},"instance":${writeInvokerInstanceId(ack.instance)}}`;
    }
    case 'completion': {
      let out = `{"transid":${transid},"activationId":${quote(ack.activationId)}`;
      if (ack.isSystemError !== undefined) out += `,"isSystemError":${ack.isSystemError ? 'true' : 'false'}`;
      return `${out},"instance":${writeInvokerInstanceId(ack.instance)}}`;
    }
    case 'result':
      return `{"transid":${transid},"response":${writeResponse(ack.response)}}`;
  }
}
