/**
 * Query parameters as upstream reads them (Akka unmarshallers and
 * RestApiCommons): booleans `true|yes|on|1` / `false|no|off|0`, list
 * `limit` 0..200 (0 = 200, default 30) and `skip` >= 0; a bad value is 400
 * "The query parameter '<name>' was malformed:\n<why>".
 */
import { malformedQuery, Messages } from './errors.js';

export type Query = Record<string, string | string[] | undefined>;

function single(query: Query, name: string): string | undefined {
  const value = query[name];
  return Array.isArray(value) ? value[0] : value;
}

export function boolParam(query: Query, name: string, fallback: boolean): boolean {
  const value = single(query, name);
  if (value === undefined || value === '') return fallback;
  switch (value.toLowerCase()) {
    case 'true':
    case 'yes':
    case 'on':
    case '1':
      return true;
    case 'false':
    case 'no':
    case 'off':
    case '0':
      return false;
    default:
      throw malformedQuery(name, `'${value}' is not a valid Boolean value`);
  }
}

export const MAX_LIST_LIMIT = 200;
export const DEFAULT_LIST_LIMIT = 30;

function integer(value: string): number | undefined {
  if (!/^[+-]?\d+$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) && n >= -2147483648 && n <= 2147483647 ? n : undefined;
}

export function listLimit(query: Query, collection: string): number {
  const value = single(query, 'limit');
  if (value === undefined || value === '') return DEFAULT_LIST_LIMIT;
  const n = integer(value);
  if (n === undefined) throw malformedQuery('limit', Messages.argumentNotInteger(collection, value));
  if (n === 0) return MAX_LIST_LIMIT;
  if (n < 0 || n > MAX_LIST_LIMIT) throw malformedQuery('limit', Messages.listLimitOutOfRange(collection, n, MAX_LIST_LIMIT));
  return n;
}

export function listSkip(query: Query, collection: string): number {
  const value = single(query, 'skip');
  if (value === undefined || value === '') return 0;
  const n = integer(value);
  if (n === undefined) throw malformedQuery('skip', Messages.argumentNotInteger(collection, value));
  if (n < 0) throw malformedQuery('skip', Messages.listSkipOutOfRange(collection, n));
  return n;
}

/** `since`/`upto`: epoch milliseconds. */
export function epochParam(query: Query, name: string): number | undefined {
  const value = single(query, name);
  if (value === undefined) return undefined;
  const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw malformedQuery(name, Messages.badEpoch(value));
  return n;
}

/** `timeout`: 1..max milliseconds (upstream's blocking wait override). */
export function timeoutParam(query: Query, maxMs: number): number {
  const value = single(query, 'timeout');
  if (value === undefined) return maxMs;
  const n = integer(value);
  if (n === undefined || n <= 0 || n > maxMs) throw malformedQuery('timeout', Messages.invalidTimeout(maxMs));
  return n;
}

export function stringParam(query: Query, name: string): string | undefined {
  return single(query, name);
}
