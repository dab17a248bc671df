/**
 * Upstream's BasicAuthenticationDirective and the implicit entitlement of
 * the default (local) entitlement provider: HTTP basic auth `uuid:key`
 * against the subjects database; a caller owns exactly its namespace; `_`
 * in a path means that namespace.
 *
 * - no or unreadable credentials: 401 "The resource requires authentication,
 *   which was not supplied with the request"
 * - unknown, wrong or blocked: 401 "The supplied authentication is invalid"
 * - both with `WWW-Authenticate: Basic realm="OpenWhisk secure realm"`
 * - another namespace: 403 "The supplied authentication is not authorized to access '<ns>/<name>'."
 */
import type { FastifyRequest } from 'fastify';
import type { Identity } from '../../protocol/index.js';
import type { IdentityLookup } from '../identity-store.js';
import { AkkaTexts, ApiError, Messages } from './errors.js';

const CHALLENGE = { 'www-authenticate': 'Basic realm="OpenWhisk secure realm"' };

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity;
  }
}

function credentials(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined) return undefined;
  const match = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (match === null) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export interface Authenticator {
  /** The caller's identity; throws ApiError 401 (or 503 when the subjects database fails). */
  authenticate(request: FastifyRequest): Promise<Identity>;
}

export function basicAuthenticator(lookup: IdentityLookup, onStoreError: (error: unknown) => void): Authenticator {
  return {
    async authenticate(request) {
      const given = credentials(request.headers.authorization);
      if (given === undefined) throw new ApiError(401, AkkaTexts.credentialsMissing, CHALLENGE);
      let identity: Identity | undefined;
      try {
        identity = await lookup.authenticate(given.user, given.password);
      } catch (error) {
        onStoreError(error);
        // Upstream: a failing auth store fails the future, which ends as 500.
        throw new ApiError(500);
      }
      if (identity === undefined) throw new ApiError(401, AkkaTexts.credentialsRejected, CHALLENGE);
      return identity;
    },
  };
}

/** Upstream EntityName / namespace segment rules. */
const ENTITY_NAME = /^(?:[\w]|[\w][\w@ .-]*[\w@.-]+)$/u;
export const ENTITY_NAME_MAX_LENGTH = 256;

export function validEntityName(name: string): boolean {
  return name.length <= ENTITY_NAME_MAX_LENGTH && ENTITY_NAME.test(name);
}

/** 400 unless `name` is a valid entity name (upstream `entityname` directive). */
export function checkEntityName(name: string): void {
  if (validEntityName(name)) return;
  if (name.length > ENTITY_NAME_MAX_LENGTH) throw new ApiError(400, Messages.entityNameTooLong('Name segement', name.length, ENTITY_NAME_MAX_LENGTH));
  throw new ApiError(400, Messages.entityNameIllegal);
}

/**
 * The namespace a path names (`_` = the caller's), checked to be the
 * caller's own: there are no shared packages here, so anything else is 403.
 * `resource` is what the 403 names (`<ns>` or `<ns>/<entity>`).
 */
export function ownNamespace(identity: Identity, segment: string, entity?: string): string {
  const namespace = segment === '_' ? identity.namespace.name : segment;
  if (namespace !== '_' && !validEntityName(namespace)) throw new ApiError(400, Messages.namespaceIllegal);
  if (namespace !== identity.namespace.name) {
    throw new ApiError(403, Messages.notAuthorizedToAccessResource(entity === undefined ? namespace : `${namespace}/${entity}`));
  }
  return namespace;
}
