/**
 * Credential checks for the HTTP server: a shared bearer token on
 * `POST /invoke`, basic auth on the admin routes. Pure functions, no state.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares two secrets in time independent of where they differ. Both sides
 * are hashed first so that `timingSafeEqual` always sees equal lengths: a
 * plain length check would tell an attacker the secret's length.
 */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The token of `Authorization: Bearer <token>`, or undefined for any other form. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

export interface BasicCredentials {
  user: string;
  password: string;
}

/** The user and password of `Authorization: Basic <base64(user:password)>`, or undefined. */
export function basicCredentials(header: string | undefined): BasicCredentials | undefined {
  if (header === undefined) return undefined;
  const match = /^Basic[ \t]+([A-Za-z0-9+/=_-]+)[ \t]*$/i.exec(header);
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  // RFC 7617: the user id cannot contain a colon, the password can.
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Whether `header` carries exactly the configured credentials. Both parts are
 * always compared (no short-circuit), so the timing does not reveal whether
 * the user name alone was right.
 */
export function basicAuthMatches(header: string | undefined, expected: BasicCredentials): boolean {
  const given = basicCredentials(header);
  if (!given) return false;
  const userOk = sameSecret(given.user, expected.user);
  const passwordOk = sameSecret(given.password, expected.password);
  return userOk && passwordOk;
}

/** Whether `header` is `Bearer <expected>`. */
export function bearerMatches(header: string | undefined, expected: string): boolean {
  const token = bearerToken(header);
  return token !== undefined && sameSecret(token, expected);
}
