/**
 * The only error a protocol parser throws. `path` names the field that was
 * wrong (e.g. `ActivationMessage.user.namespace.uuid`) so that a rejected
 * Kafka message or HTTP body can be explained in one log line without logging
 * the message itself (which may carry secrets).
 */
export class ProtocolParseError extends Error {
  override readonly name = 'ProtocolParseError';
  readonly path: string;
  readonly reason: string;

  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super(`${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
  }
}
