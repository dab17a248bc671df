/**
 * Annotations (and parameters) are lists of `{"key": ..., "value": ...}` on
 * the wire (upstream Parameters). The value is free-form JSON.
 */
import type { JsonValue } from './json.js';
import { describe, fail, isObject } from './json-read.js';
import { quote, writeValue } from './json-write.js';

export interface Annotation {
  key: string;
  value: JsonValue;
}

// Activation annotation keys the invoker writes (upstream WhiskActivation).
export const ANNOTATION_LIMITS = 'limits';
export const ANNOTATION_PATH = 'path';
export const ANNOTATION_KIND = 'kind';
export const ANNOTATION_TIMEOUT = 'timeout';
export const ANNOTATION_INIT_TIME = 'initTime';
export const ANNOTATION_WAIT_TIME = 'waitTime';
export const ANNOTATION_CAUSED_BY = 'causedBy';
export const ANNOTATION_BINDING = 'binding';
/** Action annotation that decides whether the API key reaches the action. */
export const ANNOTATION_PROVIDE_API_KEY = 'provide-api-key';

export function annotationsFromJson(value: JsonValue | undefined, path: string): Annotation[] {
  if (!Array.isArray(value)) {
    const reason = value === undefined ? 'missing' : `got ${describe(value)}`;
    return fail(path, `expected an array of {key, value}, ${reason}`);
  }
  const out: Annotation[] = new Array<Annotation>(value.length);
  for (let i = 0; i < value.length; i++) {
    const item = value[i];
    if (!isObject(item)) return fail(`${path}[${i}]`, `expected {key, value}, got ${describe(item)}`);
    const key = item['key'];
    if (typeof key !== 'string') return fail(`${path}[${i}].key`, `expected a string, got ${describe(key)}`);
    const v = item['value'];
    // Upstream always writes a value; an absent one reads as null.
    out[i] = { key, value: v === undefined ? null : v };
  }
  return out;
}

export function writeAnnotations(annotations: readonly Annotation[]): string {
  let out = '[';
  for (let i = 0; i < annotations.length; i++) {
    const a = annotations[i] as Annotation;
    if (i > 0) out += ',';
    out += `{"key":${quote(a.key)},"value":${writeValue(a.value)}}`;
  }
  return out + ']';
}

/** The value of the first annotation named `key`, or undefined. */
export function getAnnotation(annotations: readonly Annotation[], key: string): JsonValue | undefined {
  for (const a of annotations) if (a.key === key) return a.value;
  return undefined;
}

/**
 * Upstream Parameters.isTruthy: false, 0, "" and null are falsy, every other
 * value truthy; an absent annotation yields `valueWhenAbsent`.
 */
export function isTruthy(annotations: readonly Annotation[], key: string, valueWhenAbsent = false): boolean {
  const v = getAnnotation(annotations, key);
  if (v === undefined) return valueWhenAbsent;
  if (v === null) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return v.length > 0;
  return true;
}
