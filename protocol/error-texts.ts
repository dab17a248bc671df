/**
 * The standard texts an OpenWhisk invoker writes into activation results.
 * Controllers, CLIs and dashboards match on these strings, so they are kept
 * byte-for-byte as upstream writes them (wire spec section 8).
 */

export const ACTION_NOT_INITIALIZED_EXITED = 'The action did not initialize and exited unexpectedly.';
export const ACTION_NO_VALID_RESPONSE_EXITED =
  'The action did not produce a valid response and exited unexpectedly.';
export const MEMORY_EXHAUSTED = 'The action exhausted its memory and was aborted.';
export const FAILED_TO_PROVISION = 'Failed to provision resources to run the action.';
export const ACTION_NOT_FOUND = 'Action could not be found or may have been deleted.';
export const ACTION_NOT_FETCHED = 'Action could not be fetched.';
export const NAMESPACE_BLACKLISTED = 'The action was not invoked due to a blacklisted namespace.';
export const LOG_COLLECTION_ISSUE = 'There was an issue while collecting your logs. Data might be missing.';

export function timeLimitExceeded(timeoutMs: number, duringInit: boolean): string {
  const base = `The action exceeded its time limits of ${timeoutMs} milliseconds`;
  return duringInit ? `${base} during initialization.` : `${base}.`;
}

/** `body` is the runtime's answer, when there was one worth showing. */
export function initFailed(body?: string): string {
  return body === undefined || body === ''
    ? 'The action failed during initialization.'
    : `The action failed during initialization: ${body}`;
}

export function invalidRunResponse(body?: string): string {
  return body === undefined || body === ''
    ? 'The action did not produce a valid JSON or JSON Array response.'
    : `The action did not produce a valid JSON or JSON Array response: ${body}`;
}

export function responseTooLarge(actualBytes: number, maxBytes: number, truncatedPrefix: string): string {
  return `The action produced a response that exceeded the allowed length: ${actualBytes} > ${maxBytes} bytes. The truncated response was: ${truncatedPrefix}`;
}

export function imagePullFailed(image: string): string {
  return `Failed to pull container image '${image}'.`;
}

export function logsTruncated(limitBytes: number): string {
  return `Logs were truncated because the total bytes size exceeds the limit of ${limitBytes} bytes.`;
}
