/**
 * Credential checks for the HTTP server: a shared bearer token on
 * `POST /invoke`, basic auth on the admin routes, and the client certificate
 * (mTLS) of a connection. Pure functions, no state.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

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

/** What the TLS handshake established about the client's certificate. */
export type ClientCertificateStatus =
  | { ok: true }
  /** No certificate presented (401), or one the configured CA did not sign / that did not verify (403). */
  | { ok: false; status: 401 | 403; reason: string };

/**
 * The client-certificate verdict of a connection whose server asked for a
 * certificate without refusing the handshake (`requestCert: true,
 * rejectUnauthorized: false`): node has verified whatever was presented
 * against the configured CA and recorded the result on the socket. A plain
 * (non-TLS) socket has no certificate.
 */
export function clientCertificateStatus(socket: Socket): ClientCertificateStatus {
  const tls = socket as Partial<TLSSocket>;
  if (tls.encrypted !== true || typeof tls.getPeerCertificate !== 'function') {
    return { ok: false, status: 401, reason: 'no client certificate (not a TLS connection)' };
  }
  if (tls.authorized === true) return { ok: true };
  const peer = tls.getPeerCertificate();
  // An empty object when the client sent none.
  if (peer === null || Object.keys(peer).length === 0) return { ok: false, status: 401, reason: 'no client certificate presented' };
  const error = tls.authorizationError;
  const code = typeof error === 'string' ? error : error instanceof Error ? ((error as { code?: string }).code ?? error.message) : 'not verified';
  return { ok: false, status: 403, reason: `client certificate not accepted (${code})` };
}
