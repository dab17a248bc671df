/**
 * Writing helpers. Serializers build their output by string concatenation in
 * an explicit field order (upstream's declaration order; upstream itself
 * writes keys sorted, see README.md) and only hand nested free-form values to
 * JSON.stringify: that keeps the output stable (serialize(parse(x)) === x)
 * and faster than building an intermediate object.
 */
import type { JsonObject, JsonValue } from './json.js';

// Characters that JSON.stringify would escape or treat specially (lone
// surrogates are written as \uXXXX). Strings without them can be quoted as is.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A JSON string literal for `s`, byte-identical to JSON.stringify(s). */
export function quote(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * JSON text of a free-form value. `undefined` (not JSON) is written as null
 * rather than producing invalid output.
 */
export function writeValue(value: JsonValue | undefined): string {
  const s = JSON.stringify(value);
  return s === undefined ? 'null' : s;
}

/** `["a","b"]` */
export function writeStringArray(values: readonly string[]): string {
  let out = '[';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    out += quote(values[i] as string);
  }
  return out + ']';
}

/**
 * Sets an own property even when the key is `__proto__` (a plain assignment
 * would replace the prototype instead), so that copying user-supplied keys
 * into a new object never loses or corrupts one.
 */
export function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}
