/**
 * `/api/v1/namespaces/{namespace}/activations[/{id}[/result|/logs]]`
 * (upstream ActivationsApi): list (`limit`, `skip`, `count`, `docs`,
 * `name`, `since`, `upto`), get, the result, the logs.
 */
import type { FastifyInstance } from 'fastify';
import type { JsonObject } from '../../protocol/index.js';
import type { ActivationReader } from '../activation-store.js';
import { ownNamespace, validEntityName } from './auth.js';
import { ApiError, malformedQuery, Messages } from './errors.js';
import { extendedActivation, extendedResponse } from './invoke.js';
import { boolParam, epochParam, listLimit, listSkip, stringParam, type Query } from './query.js';

export interface ActivationsRouteDeps {
  activations: ActivationReader;
}

/** Upstream ActivationId.parse: 32 hex characters. */
function checkActivationId(id: string): void {
  if (id.length !== 32) throw new ApiError(400, Messages.activationIdLength(id.length));
  if (!/^[0-9a-fA-F]{32}$/.test(id)) throw new ApiError(400, Messages.activationIdIllegal);
}

/** `name` filter: `name` or `package/name` (upstream stringToRestrictedEntityPath). */
function nameFilter(query: Query): string | undefined {
  const value = stringParam(query, 'name');
  if (value === undefined || value.trim() === '') return undefined;
  const parts = value.replace(/^\//, '').replace(/\/$/, '').split('/');
  if (parts.length > 2 || !parts.every(validEntityName)) throw malformedQuery('name', Messages.badNameFilter(value));
  return parts.join('/');
}

export function registerActivationRoutes(app: FastifyInstance, deps: ActivationsRouteDeps): void {
  const { activations } = deps;

  app.get<{ Params: { namespace: string }; Querystring: Query }>('/namespaces/:namespace/activations', async (request, reply) => {
    const namespace = ownNamespace(request.identity, request.params.namespace);
    const skip = listSkip(request.query, 'activations');
    const limit = listLimit(request.query, 'activations');
    const count = boolParam(request.query, 'count', false);
    const docs = boolParam(request.query, 'docs', false);
    const name = nameFilter(request.query);
    const since = epochParam(request.query, 'since');
    const upto = epochParam(request.query, 'upto');
    if (count && docs) throw new ApiError(400, Messages.docsNotAllowedWithCount);
    const base = { namespace, skip, ...(name !== undefined ? { name } : {}), ...(since !== undefined ? { since } : {}), ...(upto !== undefined ? { upto } : {}) };
    if (count) return reply.send({ activations: await activations.count(base) });
    const list = await activations.list({ ...base, limit, docs });
    return reply.send(docs ? list.map((a) => extendedActivation(a)) : list);
  });

  const fetch = async (namespaceSegment: string, id: string, identity: Parameters<typeof ownNamespace>[0]): Promise<JsonObject> => {
    const namespace = ownNamespace(identity, namespaceSegment, id);
    checkActivationId(id);
    const record = await activations.get(namespace, id);
    if (record === undefined) throw new ApiError(404);
    return record;
  };

  app.get<{ Params: { namespace: string; id: string } }>('/namespaces/:namespace/activations/:id', async (request, reply) => {
    return reply.send(extendedActivation(await fetch(request.params.namespace, request.params.id, request.identity)));
  });
  app.get<{ Params: { namespace: string; id: string } }>('/namespaces/:namespace/activations/:id/result', async (request, reply) => {
    const record = await fetch(request.params.namespace, request.params.id, request.identity);
    return reply.send(extendedResponse(record['response']));
  });
  app.get<{ Params: { namespace: string; id: string } }>('/namespaces/:namespace/activations/:id/logs', async (request, reply) => {
    const record = await fetch(request.params.namespace, request.params.id, request.identity);
    return reply.send({ logs: Array.isArray(record['logs']) ? record['logs'] : [] });
  });
}
