/**
 * What the controller and the invoker must agree on about forced completions:
 * how long the controller waits for an activation (so that the invoker knows
 * how long a completion is still worth sending), and how a record written by
 * the controller for an activation it gave up on is told apart from the
 * invoker's own record (so that the invoker's record always wins).
 */
import type { Annotation } from './annotations.js';

export interface ForcedCompletionTiming {
  /** The time limit used when the action's is shorter. Upstream: 60 s. */
  minTimeLimitMs: number;
  /** Added after doubling. Upstream: 1 min. */
  extraMs: number;
}

export const UPSTREAM_FORCED_COMPLETION: ForcedCompletionTiming = { minTimeLimitMs: 60_000, extraMs: 60_000 };

/** The controller's forced-completion delay: `max(timeLimit, min) * 2 + extra` (upstream). */
export function forcedCompletionDelayMs(timeoutMs: number, timing: ForcedCompletionTiming = UPSTREAM_FORCED_COMPLETION): number {
  return Math.max(timeoutMs, timing.minTimeLimitMs) * 2 + timing.extraMs;
}

/**
 * The annotation that marks an activation record written by the controller
 * for an activation it force-completed. Its value says why:
 * `{"controller": "0", "reason": "timeout"|"failed"|"shutdown", "acknowledged": true|false, "error": "..."}`.
 */
export const ANNOTATION_FORCED_COMPLETION = 'forcedCompletion';

/**
 * Whether a stored activation document (as read back from CouchDB) is a
 * controller's forced record, which the invoker's real record replaces.
 */
export function isForcedRecord(doc: unknown): boolean {
  if (typeof doc !== 'object' || doc === null) return false;
  const annotations = (doc as { annotations?: unknown }).annotations;
  if (!Array.isArray(annotations)) return false;
  return annotations.some(
    (a: unknown) => typeof a === 'object' && a !== null && (a as Partial<Annotation>).key === ANNOTATION_FORCED_COMPLETION,
  );
}
