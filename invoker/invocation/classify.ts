/**
 * Turns what a runtime answered into an ActivationResponse, exactly as the
 * upstream invoker does (ActivationResponse.processInitResponseContent and
 * processRunResponseContent): status codes, and the texts clients match on.
 */
import {
  ACTION_NO_VALID_RESPONSE_EXITED,
  ACTION_NOT_INITIALIZED_EXITED,
  applicationError,
  developerError,
  initFailed,
  invalidRunResponse,
  MEMORY_EXHAUSTED,
  responseTooLarge,
  success,
  timeLimitExceeded,
  type ActivationResponse,
  type JsonValue,
  type RuntimeResult,
} from '../../protocol/index.js';

/** What the container layer reports for one /init or /run call (declared in protocol/). */
export type { RuntimeResult } from '../../protocol/index.js';

/** Facts learned after a failed call, from inspecting the container. */
export interface ExitFacts {
  oomKilled: boolean;
}

function parseJson(body: string): JsonValue | undefined {
  try {
    return JSON.parse(body) as JsonValue;
  } catch {
    return undefined;
  }
}

function isObject(value: JsonValue | undefined): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Undefined: the init succeeded. */
export function classifyInit(result: RuntimeResult, timeoutMs: number, exit?: ExitFacts): ActivationResponse | undefined {
  if (exit?.oomKilled) return developerError(MEMORY_EXHAUSTED);
  switch (result.kind) {
    case 'timeout':
      return developerError(timeLimitExceeded(timeoutMs, true));
    case 'connection-failed':
      return developerError(ACTION_NOT_INITIALIZED_EXITED);
    case 'response': {
      if (result.status === 200) return undefined;
      const parsed = parseJson(result.body);
      if (isObject(parsed)) return developerError(parsed.error ?? initFailed(result.body));
      return developerError(initFailed(result.body));
    }
  }
}

export function classifyRun(
  result: RuntimeResult,
  timeoutMs: number,
  maxResponseBytes: number,
  exit?: ExitFacts,
): ActivationResponse {
  if (exit?.oomKilled) return developerError(MEMORY_EXHAUSTED);
  switch (result.kind) {
    case 'timeout':
      return developerError(timeLimitExceeded(timeoutMs, false));
    case 'connection-failed':
      return developerError(ACTION_NO_VALID_RESPONSE_EXITED);
    case 'response': {
      const size = result.bytes;
      if (result.truncated) return applicationError(responseTooLarge(size, maxResponseBytes, result.body), size);
      const parsed = parseJson(result.body);
      const ok = result.status === 200;
      if (isObject(parsed)) {
        if (ok) return parsed.error !== undefined ? applicationError(parsed.error, size) : success(parsed, size);
        return developerError(parsed.error ?? invalidRunResponse(result.body), size);
      }
      if (Array.isArray(parsed) && ok) return success(parsed, size);
      return developerError(invalidRunResponse(result.body), size);
    }
  }
}

/**
 * A warm container that answers this way is broken rather than the action:
 * the activation is retried once on a fresh container instead of failing.
 */
export function brokenContainer(result: RuntimeResult): boolean {
  if (result.kind === 'response') return result.status === 503;
  if (result.kind === 'connection-failed') {
    const code = (result.error as NodeJS.ErrnoException).code ?? (result.error.cause as NodeJS.ErrnoException | undefined)?.code;
    // Refused or already exited: the request never reached the action, so a retry cannot run it twice.
    return code === 'ECONNREFUSED' || code === 'ECONTAINEREXITED';
  }
  return false;
}

/** Whether the container should be removed after this outcome (upstream: container errors and system errors). */
export function containerSuspect(response: ActivationResponse): boolean {
  return response.statusCode >= 2;
}
