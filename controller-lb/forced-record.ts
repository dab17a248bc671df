/**
 * The activation record the controller writes for an activation it
 * force-completed, so that every activation id it handed out ends in a record
 * even when the invoker never wrote one (it died, or never got the message).
 *
 * Built by the invoker's own record code (same shape, same annotations), as a
 * whisk (system) error with upstream's texts, plus the
 * `forcedCompletion` annotation that marks it as the controller's guess:
 *
 * | how it was forced | response |
 * |---|---|
 * | nothing came back in time (`timeout`) | "The action exceeded its time limits of <limit> milliseconds.", `timeout: true` |
 * | the invoker (or Kafka) never acknowledged it | "Failed to provision resources to run the action." |
 * | acknowledged, then the answer was cut or unreadable, or the controller shut down | "The action did not produce a valid response and exited unexpectedly." |
 *
 * It is only ever created (CouchDB create without `_rev`: a conflict means the
 * invoker's record is there, and that one stays), and the invoker's writer
 * replaces it when the invoker's record comes later (`isForcedRecord`).
 */
import {
  ACTION_NO_VALID_RESPONSE_EXITED,
  ANNOTATION_FORCED_COMPLETION,
  FAILED_TO_PROVISION,
  activationDocument,
  timeLimitExceeded,
  whiskError,
  type ActivationDocument,
  type ActivationMessage,
  type ControllerInstanceId,
} from '../protocol/index.js';
import { ActivationRecord } from '../invoker/invocation/activation-record.js';

/** What the record is built from: the message without its parameters. */
export type ForcedMessage = Pick<ActivationMessage, 'transid' | 'action' | 'user' | 'activationId' | 'cause'>;

export interface ForcedRecordInput {
  message: ForcedMessage;
  controller: ControllerInstanceId;
  reason: 'timeout' | 'failed' | 'shutdown';
  /** Whether the invoker (HTTP) or Kafka had acknowledged the activation. */
  acknowledged: boolean;
  /** The action's time limit. */
  timeoutMs: number;
  /** What went wrong, for the marker (ids and addresses, never user data). */
  error: string;
  now: number;
}

export function forcedRecord(input: ForcedRecordInput): ActivationDocument {
  const record = new ActivationRecord(input.message, () => input.now);
  if (input.reason === 'timeout') record.respond(whiskError(timeLimitExceeded(input.timeoutMs, false)), true);
  else if (!input.acknowledged) record.respond(whiskError(FAILED_TO_PROVISION));
  else record.respond(whiskError(ACTION_NO_VALID_RESPONSE_EXITED));
  record.annotate({
    key: ANNOTATION_FORCED_COMPLETION,
    value: { controller: input.controller.asString, reason: input.reason, acknowledged: input.acknowledged, error: input.error },
  });
  return activationDocument(record.build(), input.now);
}

/** The message as the balancer keeps it while the activation is in flight: no parameters. */
export function forcedMessage(msg: ActivationMessage): ForcedMessage {
  const kept: ForcedMessage = { transid: msg.transid, action: msg.action, user: msg.user, activationId: msg.activationId };
  if (msg.cause !== undefined) kept.cause = msg.cause;
  return kept;
}
