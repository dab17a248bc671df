/**
 * JSON values carried as their source text.
 *
 * An ActivationMessage's `content` (the action's parameters) is kept as the
 * exact text it arrived as and spliced into the `/run` body unchanged. That is
 * what lets every number reach the action as it was sent: upstream's
 * spray-json reads numbers as BigDecimal, so `12345678901234567890`,
 * `0.12345678901234567890123` and `1E+400` pass through upstream intact,
 * where a JavaScript number would round or overflow. It also spares the hot
 * path a JSON.stringify of the parameters.
 *
 * The scanners below only ever run on text JSON.parse has already accepted,
 * so they skip values without validating them; they still stop with an
 * error rather than loop should they be handed anything else.
 */
import type { JsonValue } from './json.js';
import { quote } from './json-write.js';

export type RawJsonType = 'object' | 'array' | 'string' | 'number' | 'boolean' | 'null';

/** One member of a raw JSON object. */
export interface RawMember {
  /** The decoded key. */
  key: string;
  /** The key's source text, quotes and escapes included. */
  keyText: string;
  /** The value's source text. */
  text: string;
}

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

/** A JSON value as validated source text. */
export class RawJson {
  /** The value's JSON text, exactly as received (or as JSON.stringify wrote it, for `of`). */
  readonly text: string;
  #members: RawMember[] | undefined;

  private constructor(text: string) {
    this.text = text;
  }

  /** `value` as JSON text. Numbers are a JavaScript number's text: the exactness is the source's. */
  static of(value: JsonValue): RawJson {
    return new RawJson(JSON.stringify(value));
  }

  /** Validates `text` as one JSON value (JSON.parse) and keeps it, minus surrounding whitespace. */
  static parse(text: string): RawJson {
    JSON.parse(text);
    return new RawJson(text.trim());
  }

  /** Text JSON.parse has accepted (or that was built from such text) and that starts at the value. */
  static trusted(text: string): RawJson {
    return new RawJson(text);
  }

  get type(): RawJsonType {
    return typeOf(this.text, 0);
  }

  /** The members of an object, in text order (a repeated key appears twice; the last one counts); undefined for other values. */
  members(): readonly RawMember[] | undefined {
    if (this.text.charCodeAt(0) !== OPEN_BRACE) return undefined;
    this.#members ??= objectMembers(this.text, 0);
    return this.#members;
  }

  /** The value as JavaScript: integers beyond 2^53 round and numbers beyond the double range become Infinity. */
  value(): JsonValue {
    return JSON.parse(this.text) as JsonValue;
  }

  /** JSON.stringify(message) writes the JavaScript value (for debugging; serializers use `text`). */
  toJSON(): JsonValue {
    return this.value();
  }
}

function typeOf(s: string, i: number): RawJsonType {
  switch (s.charCodeAt(i)) {
    case OPEN_BRACE:
      return 'object';
    case OPEN_BRACKET:
      return 'array';
    case QUOTE:
      return 'string';
    case 116: // t
    case 102: // f
      return 'boolean';
    case 110: // n
      return 'null';
    default:
      return 'number';
  }
}

function scanError(): never {
  throw new Error('raw JSON scanner: text is not valid JSON');
}

function skipWhitespace(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 10 || c === 13 || c === 9) i++;
    else return i;
  }
}

/** `i` is at an opening quote; returns the index just past the closing one. */
function skipString(s: string, i: number): number {
  // Most strings are short, and for them a loop beats an indexOf call.
  let j = i + 1;
  for (const stop = Math.min(s.length, j + 24); j < stop; j++) {
    const c = s.charCodeAt(j);
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) break;
  }
  // A long string, or one with escapes: from quote to quote.
  j--;
  for (;;) {
    j = s.indexOf('"', j + 1);
    if (j < 0) return scanError();
    if (s.charCodeAt(j - 1) !== BACKSLASH) return j + 1;
    // Escaped only when preceded by an odd number of backslashes.
    let k = j - 2;
    while (s.charCodeAt(k) === BACKSLASH) k--;
    if (((j - 1 - k) & 1) === 0) return j + 1;
  }
}

/** `i` is at the first character of a value; returns the index just past it. */
export function skipValue(s: string, i: number): number {
  const n = s.length;
  const c = s.charCodeAt(i);
  if (c === QUOTE) return skipString(s, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 1;
    let j = i + 1;
    while (j < n) {
      const d = s.charCodeAt(j);
      if (d === QUOTE) {
        j = skipString(s, j);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) return j + 1;
      j++;
    }
    return scanError();
  }
  if (i >= n) return scanError();
  // A number or literal runs up to the next delimiter.
  let j = i + 1;
  while (j < n) {
    const d = s.charCodeAt(j);
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || d === 32 || d === 10 || d === 13 || d === 9) break;
    j++;
  }
  return j;
}

function decodeKey(s: string, start: number, end: number): string {
  for (let i = start + 1; i < end - 1; i++) {
    if (s.charCodeAt(i) === BACKSLASH) return JSON.parse(s.slice(start, end)) as string;
  }
  return s.slice(start + 1, end - 1);
}

/** Whether the key literal at [start, end) decodes to `key`, without allocating for the usual unescaped key. */
function keyEquals(s: string, start: number, end: number, key: string): boolean {
  if (end - start === key.length + 2 && s.startsWith(key, start + 1)) return true;
  for (let i = start + 1; i < end - 1; i++) {
    if (s.charCodeAt(i) === BACKSLASH) return JSON.parse(s.slice(start, end)) === key;
  }
  return false;
}

/** The members of the object whose `{` is at `start`. */
function objectMembers(s: string, start: number): RawMember[] {
  const out: RawMember[] = [];
  let i = skipWhitespace(s, start + 1);
  if (s.charCodeAt(i) === CLOSE_BRACE) return out;
  for (;;) {
    if (s.charCodeAt(i) !== QUOTE) return scanError();
    const keyEnd = skipString(s, i);
    const valueStart = skipWhitespace(s, skipWhitespace(s, keyEnd) + 1);
    const valueEnd = skipValue(s, valueStart);
    out.push({ key: decodeKey(s, i, keyEnd), keyText: s.slice(i, keyEnd), text: s.slice(valueStart, valueEnd) });
    i = skipWhitespace(s, valueEnd);
    if (s.charCodeAt(i) !== COMMA) return s.charCodeAt(i) === CLOSE_BRACE ? out : scanError();
    i = skipWhitespace(s, i + 1);
  }
}

/** The elements of the array whose `[` is at `start`, as source text. */
function arrayElements(s: string, start: number): string[] {
  const out: string[] = [];
  let i = skipWhitespace(s, start + 1);
  if (s.charCodeAt(i) === CLOSE_BRACKET) return out;
  for (;;) {
    const end = skipValue(s, i);
    out.push(s.slice(i, end));
    i = skipWhitespace(s, end);
    if (s.charCodeAt(i) !== COMMA) return s.charCodeAt(i) === CLOSE_BRACKET ? out : scanError();
    i = skipWhitespace(s, i + 1);
  }
}

/**
 * The source text of the value of `key` (letters and digits only) in the
 * JSON object `s` (text JSON.parse accepted and found to have that member).
 * Like JSON.parse, the last of repeated keys counts.
 *
 * Fast path, which skips scanning the rest of the document: without `\u`
 * escapes no escape can spell a letter, so every key named `key` appears
 * literally; an unescaped quote followed by the letters can only open a
 * string, and one followed by `:` is a key. When that key occurs exactly
 * once in the whole text, it is the member's.
 */
export function memberText(s: string, key: string): string | undefined {
  // V8 finds a pattern fastest when its first character is rare in the text,
  // and quotes are everywhere in JSON: so the quote and first letter are checked after.
  const needle = `${key.slice(1)}"`;
  const first = key.charCodeAt(0);
  let at = -1;
  let keys = 0;
  if (s.indexOf('\\u') < 0) {
    for (let p = s.indexOf(needle); p >= 0; p = s.indexOf(needle, p + needle.length)) {
      if (s.charCodeAt(p - 1) !== first || s.charCodeAt(p - 2) !== QUOTE) continue;
      const q = skipWhitespace(s, p + needle.length);
      // Not followed by ':', or the quote is escaped (inside a string): not a key.
      if (s.charCodeAt(q) !== 58 || escaped(s, p - 2)) continue;
      at = q;
      if (++keys > 1) break;
    }
  }
  if (keys !== 1) return memberTextByScan(s, key);
  const start = skipWhitespace(s, at + 1);
  return s.slice(start, skipValue(s, start));
}

/** Whether the quote at `p` is escaped (preceded by an odd number of backslashes). */
function escaped(s: string, p: number): boolean {
  let k = p - 1;
  while (s.charCodeAt(k) === BACKSLASH) k--;
  return ((p - 1 - k) & 1) === 1;
}

/** memberText by walking the top-level members. */
export function memberTextByScan(s: string, key: string): string | undefined {
  let i = skipWhitespace(s, 0);
  if (s.charCodeAt(i) !== OPEN_BRACE) return scanError();
  i = skipWhitespace(s, i + 1);
  if (s.charCodeAt(i) === CLOSE_BRACE) return undefined;
  let found: string | undefined;
  for (;;) {
    if (s.charCodeAt(i) !== QUOTE) return scanError();
    const keyEnd = skipString(s, i);
    const valueStart = skipWhitespace(s, skipWhitespace(s, keyEnd) + 1);
    const valueEnd = skipValue(s, valueStart);
    if (keyEquals(s, i, keyEnd, key)) found = s.slice(valueStart, valueEnd);
    i = skipWhitespace(s, valueEnd);
    if (s.charCodeAt(i) !== COMMA) return s.charCodeAt(i) === CLOSE_BRACE ? found : scanError();
    i = skipWhitespace(s, i + 1);
  }
}

/**
 * The object text `s` without the members named in `keys`: the text of the
 * other members, runs of neighbours copied in one piece.
 */
export function omitMembers(s: string, keys: readonly string[]): string {
  let i = skipWhitespace(s, 1);
  if (s.charCodeAt(i) === CLOSE_BRACE) return s;
  let out = '';
  let runStart = -1;
  let runEnd = -1;
  let omitted = false;
  for (;;) {
    const keyEnd = skipString(s, i);
    const valueEnd = skipValue(s, skipWhitespace(s, skipWhitespace(s, keyEnd) + 1));
    let omit = false;
    for (let k = 0; k < keys.length; k++) {
      if (keyEquals(s, i, keyEnd, keys[k] as string)) {
        omit = true;
        break;
      }
    }
    if (omit) {
      omitted = true;
      if (runStart >= 0) {
        out += `${out.length > 0 ? ',' : ''}${s.slice(runStart, runEnd)}`;
        runStart = -1;
      }
    } else {
      if (runStart < 0) runStart = i;
      runEnd = valueEnd;
    }
    i = skipWhitespace(s, valueEnd);
    if (s.charCodeAt(i) !== COMMA) break;
    i = skipWhitespace(s, i + 1);
  }
  if (!omitted) return s;
  if (runStart >= 0) out += `${out.length > 0 ? ',' : ''}${s.slice(runStart, runEnd)}`;
  return `{${out}}`;
}

const NUMBER = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

/**
 * The text Java's BigDecimal.toString gives the number `text` (what
 * upstream writes for a JsNumber: spray-json keeps numbers as BigDecimal):
 * `1.0` -> `1.0`, `1e21` -> `1E+21`, `0.0000001` -> `1E-7`, `-0` -> `0`.
 */
export function bigDecimalString(text: string): string {
  const m = NUMBER.exec(text);
  if (m === null) return text;
  const exponent = Number(m[4] ?? '0');
  // Java's scale is an int; beyond it BigDecimal itself refuses the number.
  if (!Number.isSafeInteger(exponent)) return text;
  const fraction = m[3] ?? '';
  const digits = `${m[2] as string}${fraction}`.replace(/^0+(?=[0-9])/, '');
  const sign = m[1] === '-' && digits !== '0' ? '-' : '';
  const scale = fraction.length - exponent;
  if (scale === 0) return sign + digits;
  const adjusted = digits.length - 1 - scale;
  if (scale > 0 && adjusted >= -6) {
    const pad = scale - digits.length;
    if (pad >= 0) return `${sign}0.${'0'.repeat(pad)}${digits}`;
    return `${sign}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0] as string}.${digits.slice(1)}` : digits;
  return `${sign}${mantissa}E${adjusted > 0 ? '+' : ''}${adjusted}`;
}

/**
 * The value as upstream's `compactPrint` writes it after reading it: no
 * whitespace, object keys sorted (spray-json builds every object it reads
 * as a TreeMap; a repeated key keeps its last value), strings with only the
 * characters JSON requires escaped, numbers as BigDecimal.toString.
 */
export function upstreamCompact(text: string): string {
  return compactAt(text);
}

function compactAt(s: string): string {
  switch (typeOf(s, 0)) {
    case 'object': {
      const byKey = new Map<string, string>();
      for (const m of objectMembers(s, 0)) byKey.set(m.key, m.text);
      const keys = [...byKey.keys()].sort();
      return `{${keys.map((k) => `${quote(k)}:${compactAt(byKey.get(k) as string)}`).join(',')}}`;
    }
    case 'array':
      return `[${arrayElements(s, 0).map(compactAt).join(',')}]`;
    case 'string':
      return quote(JSON.parse(s) as string);
    case 'number':
      return bigDecimalString(s);
    default:
      return s;
  }
}

/**
 * An environment value as upstream's containerInitializer makes it: strings
 * as they are, null as "", booleans and numbers as their text (numbers as
 * BigDecimal.toString), objects and arrays as compact JSON.
 */
export function rawEnvString(text: string): string {
  switch (typeOf(text, 0)) {
    case 'string':
      return JSON.parse(text) as string;
    case 'null':
      return '';
    case 'boolean':
      return text;
    case 'number':
      return bigDecimalString(text);
    default:
      return upstreamCompact(text);
  }
}
