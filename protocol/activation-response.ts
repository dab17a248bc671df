/**
 * ActivationResponse (upstream ActivationResult.scala): `statusCode`, then the
 * optional `result` and `size`, both left out when absent.
 */
import type { JsonObject, JsonValue } from './json.js';
import { asObject, fail, optNonNegativeInteger } from './json-read.js';
import { writeValue } from './json-write.js';

export const STATUS_SUCCESS = 0;
/** The action ran and reported an error it handled (`{error: ...}` with HTTP 200). */
export const STATUS_APPLICATION_ERROR = 1;
/** The action failed to initialize, crashed, timed out or answered garbage. */
export const STATUS_DEVELOPER_ERROR = 2;
/** The platform failed; counts against the invoker's health. */
export const STATUS_WHISK_ERROR = 3;

export type StatusCode = 0 | 1 | 2 | 3;

export interface ActivationResponse {
  statusCode: StatusCode;
  result?: JsonValue;
  /** Length of the raw response body. */
  size?: number;
}

export function success(result?: JsonValue, size?: number): ActivationResponse {
  return make(STATUS_SUCCESS, result, size);
}

export function applicationError(error: JsonValue, size?: number): ActivationResponse {
  return make(STATUS_APPLICATION_ERROR, { error }, size);
}

export function developerError(error: JsonValue, size?: number): ActivationResponse {
  return make(STATUS_DEVELOPER_ERROR, { error }, size);
}

export function whiskError(error: JsonValue): ActivationResponse {
  return make(STATUS_WHISK_ERROR, { error }, undefined);
}

function make(statusCode: StatusCode, result: JsonValue | undefined, size: number | undefined): ActivationResponse {
  const r: ActivationResponse = { statusCode };
  if (result !== undefined) r.result = result;
  if (size !== undefined) r.size = size;
  return r;
}

/** A system (whisk internal) error: what `isSystemError` in acknowledgements reports. */
export function isSystemError(response: ActivationResponse): boolean {
  return response.statusCode === STATUS_WHISK_ERROR;
}

const STATUS_NAMES = ['success', 'application_error', 'action_developer_error', 'whisk_internal_error'] as const;

/** Upstream's status names, as used in metrics and user events. */
export function statusName(code: StatusCode): (typeof STATUS_NAMES)[number] {
  return STATUS_NAMES[code];
}

export function activationResponseFromJson(value: unknown, path: string): ActivationResponse {
  const o: JsonObject = asObject(value, path);
  const code = o['statusCode'];
  if (code !== 0 && code !== 1 && code !== 2 && code !== 3) {
    return fail(`${path}.statusCode`, code === undefined ? 'missing (expected 0, 1, 2 or 3)' : 'expected 0, 1, 2 or 3');
  }
  const r: ActivationResponse = { statusCode: code };
  const result = o['result'];
  if (result !== undefined) r.result = result;
  const size = optNonNegativeInteger(o, 'size', path);
  if (size !== undefined) r.size = size;
  return r;
}

export function writeActivationResponse(r: ActivationResponse): string {
  let out = `{"statusCode":${r.statusCode}`;
  if (r.result !== undefined) out += `,"result":${writeValue(r.result)}`;
  if (r.size !== undefined) out += `,"size":${r.size}`;
  return out + '}';
}
