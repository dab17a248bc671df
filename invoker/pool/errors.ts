/**
 * Typed pool failures, so the invocation layer can map each to the right
 * activation response (all are system errors, code 3 "Failed to provision
 * resources to run the action.", except abort which is the caller's own doing).
 */

/** The action needs more memory than the invoker has at all: it can never run here. */
export class ActionTooLargeError extends Error {
  override readonly name = 'ActionTooLargeError';
  readonly memoryMb: number;
  readonly userMemoryMb: number;

  constructor(memoryMb: number, userMemoryMb: number, warmKey: string) {
    super(`action ${warmKey} needs ${memoryMb} MB but this invoker has only ${userMemoryMb} MB of user memory in total`);
    this.memoryMb = memoryMb;
    this.userMemoryMb = userMemoryMb;
  }
}

/** No capacity now and the wait queue is full: an explicit, immediate refusal instead of a hang. */
export class PoolQueueFullError extends Error {
  override readonly name = 'PoolQueueFullError';
  readonly queueLimit: number;

  constructor(queueLimit: number, memoryMb: number) {
    super(`no capacity for a ${memoryMb} MB container and ${queueLimit} requests are already waiting (queue full)`);
    this.queueLimit = queueLimit;
  }
}

/** The pool is draining or closed: no new leases. */
export class PoolClosedError extends Error {
  override readonly name = 'PoolClosedError';

  constructor(what: string) {
    super(`${what}: the container pool is shutting down`);
  }
}

/** ContainerProvider.create() failed; `cause` is the provider's error. */
export class ContainerCreateError extends Error {
  override readonly name = 'ContainerCreateError';

  constructor(what: string, cause: unknown) {
    super(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
