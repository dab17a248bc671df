/**
 * Hand-written readers for validating `JSON.parse` output.
 *
 * Why not a schema library: validation must cost well under the price of
 * `JSON.parse` itself (see test/bench/protocol.bench.ts), so these are plain
 * functions with no closures and no allocation on the success path. Field paths
 * are passed as the parent's constant path plus the key; the full path string
 * is only built when something is wrong.
 */
import { Buffer } from 'node:buffer';
import type { JsonObject, JsonValue } from './json.js';
import { ProtocolParseError } from './parse-error.js';

/** What a parser accepts: raw bytes from Kafka/HTTP, or an already decoded string. */
export type WireInput = string | Uint8Array;

export function fail(path: string, reason: string): never {
  throw new ProtocolParseError(path, reason);
}

/** A short name of a JSON value's type for error messages; never the value itself (it may be a secret). */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const t = typeof value;
  return t === 'object' ? 'an object' : `a ${t}`;
}

function wrongType(path: string, key: string, expected: string, value: unknown): never {
  const where = `${path}.${key}`;
  if (value === undefined) return fail(where, `missing (expected ${expected})`);
  return fail(where, `expected ${expected}, got ${describe(value)}`);
}

function decode(input: WireInput): string {
  if (typeof input === 'string') return input;
  // Buffer.toString is the fastest UTF-8 decoder in Node; wrapping a plain
  // Uint8Array in a Buffer view costs no copy.
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  return buf.toString('utf8');
}

/**
 * The deepest nesting of arrays/objects a document may have. JSON.parse copes
 * with any depth, but JSON.stringify (and so every serializer and the /run
 * body) overflows the stack at a few thousand levels: a message nested deeper
 * could be accepted and then never be delivered. spray-json, upstream's
 * parser, stops at 1000 levels too.
 */
export const MAX_JSON_DEPTH = 1000;

/**
 * Decodes and parses `input`. JSON.parse errors (including a RangeError on
 * pathological input) become ProtocolParseError `<type>: invalid JSON: ...`.
 */
export function parseRoot(input: WireInput, type: string): JsonValue {
  const { text, value } = parseText(input, type);
  rejectNonFiniteNumbers(text, value, type);
  return value;
}

/**
 * parseRoot without the number-range check, returning the decoded text too,
 * for parsers that keep part of a document as text (see raw-json.ts) and
 * check the numbers of the rest with rejectNonFiniteNumbers.
 */
export function parseText(input: WireInput, type: string): { text: string; value: JsonValue } {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    return fail(type, `expected a string or bytes, got ${describe(input)}`);
  }
  const text = decode(input);
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (err) {
    // No `cause`: the original error would carry the quoted input to the logs.
    throw new ProtocolParseError(type, `invalid JSON: ${jsonErrorMessage(err)}`);
  }
  // Each level takes two characters, so short documents (every ordinary
  // message) cannot be too deep and skip the scan.
  if (text.length > 2 * MAX_JSON_DEPTH && nestedDeeperThan(text, MAX_JSON_DEPTH)) {
    return fail(type, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  return { text, value };
}

/**
 * A number beyond the double range parses as Infinity and would be written
 * back as null: the reader would get a different value than was sent. To
 * overflow, a number needs a 3-digit positive exponent, or at least 210
 * integer digits (308 minus a 2-digit exponent), so cheap text checks
 * decide whether the parsed value needs walking at all. `exceptKey`: a
 * top-level member the caller keeps as text, where any number is fine.
 */
export function rejectNonFiniteNumbers(text: string, value: JsonValue, type: string, exceptKey?: string): void {
  if (!MAYBE_OVERFLOWING_EXPONENT.test(text) && !hasDigitRun(text, 200)) return;
  let found: boolean;
  if (exceptKey !== undefined && isObject(value)) {
    found = false;
    for (const key in value) {
      if (key !== exceptKey && hasNonFiniteNumber(value[key] as JsonValue)) found = true;
    }
  } else {
    found = hasNonFiniteNumber(value);
  }
  if (found) fail(type, 'JSON number out of range');
}

// The exponent ends its number, so it is followed by , } ] or whitespace;
// that rules out hex ids such as "...2e345f..." which would otherwise match.
const MAYBE_OVERFLOWING_EXPONENT = /[eE]\+?[0-9]{3,}[,}\]\s]/;

/**
 * Whether `text` has a run of at least `min` decimal digits. Samples every
 * min/2-th character, which any such run must cover twice in a row, so an
 * ordinary message costs a handful of reads (a /\d{200}/ regex would cost
 * as much as JSON.parse itself).
 */
function hasDigitRun(text: string, min: number): boolean {
  const stride = min >> 1;
  const n = text.length;
  let previous = false;
  for (let i = 0; i < n; i += stride) {
    const digit = isDigit(text.charCodeAt(i));
    if (digit && previous) {
      let start = i;
      let end = i;
      while (start > 0 && isDigit(text.charCodeAt(start - 1))) start--;
      while (end + 1 < n && isDigit(text.charCodeAt(end + 1))) end++;
      if (end - start + 1 >= min) return true;
    }
    previous = digit;
  }
  return false;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

// Recursion is bounded: documents deeper than MAX_JSON_DEPTH were rejected above.
function hasNonFiniteNumber(value: JsonValue): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (hasNonFiniteNumber(item)) return true;
    return false;
  }
  for (const key in value) if (hasNonFiniteNumber(value[key] as JsonValue)) return true;
  return false;
}

/**
 * V8's JSON.parse message, minus the excerpt of the input it quotes
 * (`Unexpected token 'x', "...input..." is not valid JSON`): the input may be
 * a message carrying an API key, and these errors get logged.
 */
function jsonErrorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, ' (not valid JSON)');
}

/** Scans valid JSON text for bracket depth, skipping string contents. */
function nestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // Jump to the closing quote with indexOf (much faster than a char loop
      // over long strings); a quote preceded by an odd number of backslashes is escaped.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return false; // cannot happen: JSON.parse accepted the text
        let backslashes = 0;
        while (text.charCodeAt(j - 1 - backslashes) === 92) backslashes++;
        if ((backslashes & 1) === 0) break;
      }
      i = j;
    } else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) {
      depth--;
    }
  }
  return false;
}

/** parseRoot, and the document must be a JSON object. */
export function parseRootObject(input: WireInput, type: string): JsonObject {
  return rootObject(parseRoot(input, type), type);
}

/** The parsed document, which must be a JSON object. */
export function rootObject(value: JsonValue, type: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(type, `expected a JSON object, got ${describe(value)}`);
  }
  return value;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks a value already extracted from its parent (e.g. a top-level value handed over by an HTTP framework). */
export function asObject(value: unknown, path: string): JsonObject {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as JsonObject;
  return fail(path, value === undefined ? 'missing (expected an object)' : `expected an object, got ${describe(value)}`);
}

export function reqObject(o: JsonObject, key: string, path: string): JsonObject {
  const v = o[key];
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v;
  return wrongType(path, key, 'an object', v);
}

export function optObject(o: JsonObject, key: string, path: string): JsonObject | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v;
  return wrongType(path, key, 'an object', v);
}

export function reqString(o: JsonObject, key: string, path: string): string {
  const v = o[key];
  if (typeof v === 'string') return v;
  return wrongType(path, key, 'a string', v);
}

/** A string that must not be empty: names, ids and paths that end up in topics, doc ids or URLs. */
export function reqName(o: JsonObject, key: string, path: string): string {
  const v = o[key];
  if (typeof v === 'string' && v.length > 0) return v;
  if (v === '') return fail(`${path}.${key}`, 'must not be empty');
  return wrongType(path, key, 'a non-empty string', v);
}

export function optString(o: JsonObject, key: string, path: string): string | undefined {
  const v = o[key];
  if (v === undefined || typeof v === 'string') return v;
  return wrongType(path, key, 'a string', v);
}

export function reqBoolean(o: JsonObject, key: string, path: string): boolean {
  const v = o[key];
  if (typeof v === 'boolean') return v;
  return wrongType(path, key, 'a boolean', v);
}

export function optBoolean(o: JsonObject, key: string, path: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || typeof v === 'boolean') return v;
  return wrongType(path, key, 'a boolean', v);
}

/** Integers only, and only those a double represents exactly (epoch millis, sizes, counts). */
export function reqInteger(o: JsonObject, key: string, path: string): number {
  const v = o[key];
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  return wrongType(path, key, 'an integer', v);
}

export function optInteger(o: JsonObject, key: string, path: string): number | undefined {
  const v = o[key];
  if (v === undefined || (typeof v === 'number' && Number.isSafeInteger(v))) return v;
  return wrongType(path, key, 'an integer', v);
}

export function reqNonNegativeInteger(o: JsonObject, key: string, path: string): number {
  const v = o[key];
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  return wrongType(path, key, 'a non-negative integer', v);
}

export function optNonNegativeInteger(o: JsonObject, key: string, path: string): number | undefined {
  const v = o[key];
  if (v === undefined || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) return v;
  return wrongType(path, key, 'a non-negative integer', v);
}

/** An array of strings; the parsed array itself is returned (no copy). */
export function reqStringArray(o: JsonObject, key: string, path: string): string[] {
  const v = o[key];
  if (!Array.isArray(v)) return wrongType(path, key, 'an array of strings', v);
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string') return fail(`${path}.${key}[${i}]`, `expected a string, got ${describe(v[i])}`);
  }
  return v as string[];
}

/** An object whose values are all strings; the parsed object itself is returned (no copy). */
export function reqStringMap(o: JsonObject, key: string, path: string): Record<string, string> {
  const v = o[key];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return wrongType(path, key, 'an object of strings', v);
  for (const k in v) {
    const item = v[k];
    if (typeof item !== 'string') return fail(`${path}.${key}.${k}`, `expected a string, got ${describe(item)}`);
  }
  return v as Record<string, string>;
}

export function optStringMap(o: JsonObject, key: string, path: string): Record<string, string> | undefined {
  return o[key] === undefined ? undefined : reqStringMap(o, key, path);
}

/** Any JSON value, including null; `undefined` means the field is absent. */
export function optValue(o: JsonObject, key: string): JsonValue | undefined {
  return o[key];
}
