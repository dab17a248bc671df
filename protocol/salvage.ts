/**
 * Reading what can be read from an ActivationMessage that
 * `parseActivationMessage` refused: enough, when present, to tell its
 * controller that it will not run (activation id, controller, transid) and to
 * name it (action, namespace, subject). Each part uses the same field readers
 * as the full parser; what is invalid is left out. Never throws.
 */
import { isActivationId } from './activation-id.js';
import { isEntityName, isNamespaceName, isRootedEntityPath } from './entity-names.js';
import { controllerInstanceIdFromJson, type ControllerInstanceId } from './instance-ids.js';
import type { JsonValue } from './json.js';
import { transactionIdFromJson, type TransactionId } from './transaction-id.js';

/** Why a message was rejected (the invoker's `reason` metric label). */
export type RejectionReason = 'empty' | 'invalid_json' | 'invalid_message';

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
export function salvageRejectedMessage(value: Uint8Array | null): SalvagedMessage {
  if (value === null || value.length === 0) return { reason: 'empty' };
  let root: unknown;
  try {
    root = JSON.parse(new TextDecoder().decode(value));
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
    if (isRootedEntityPath(action['path'])) out.actionPath = action['path'];
    if (isEntityName(action['name'])) out.actionName = action['name'];
    if (typeof action['version'] === 'string') out.version = action['version'];
  }
  const user = root['user'];
  if (isRecord(user)) {
    if (typeof user['subject'] === 'string') out.subject = user['subject'];
    const ns = user['namespace'];
    // Only a namespace that may start a document id: the record is stored under it.
    if (isRecord(ns) && isNamespaceName(ns['name'])) out.namespace = ns['name'];
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

