/**
 * `GET /api/v1/namespaces` (upstream NamespacesApi: the caller's namespace),
 * empty listings of packages, triggers and rules (not supported here),
 * and what clients probe without credentials: `GET /` (upstream
 * Controller.info), `GET /api/v1` (RestAPIVersion.info) and
 * `GET /api/v1/api-docs` (a minimal Swagger 2.0 document of the paths this
 * controller serves).
 */
import type { FastifyInstance } from 'fastify';
import type { RuntimeManifest } from '../../invoker/runtime-manifest.js';
import type { ActionLimitsConfig } from '../action-put.js';
import { ownNamespace } from './auth.js';
import { boolParam, listLimit, listSkip, type Query } from './query.js';

export interface InfoDeps {
  manifest: RuntimeManifest;
  limits: ActionLimitsConfig;
  throttles: { invocationsPerMinute: number; concurrentInvocations: number };
  build: string;
}

export function registerNamespaceRoutes(app: FastifyInstance): void {
  app.get('/namespaces', async (request) => [request.identity.namespace.name]);
  // Collections this controller does not have are empty, so that `wsk list`
  // and `ow.namespaces.get()` (which list all four) work.
  for (const collection of ['packages', 'triggers', 'rules'] as const) {
    app.get<{ Params: { namespace: string }; Querystring: Query }>(`/namespaces/:namespace/${collection}`, async (request) => {
      ownNamespace(request.identity, request.params.namespace);
      listSkip(request.query, collection);
      listLimit(request.query, collection);
      return boolParam(request.query, 'count', false) ? { [collection]: 0 } : [];
    });
  }
}

const PATHS = [
  '/namespaces',
  '/namespaces/{namespace}/actions',
  '/namespaces/{namespace}/actions/{actionName}',
  '/namespaces/{namespace}/activations',
  '/namespaces/{namespace}/activations/{activationid}',
  '/namespaces/{namespace}/activations/{activationid}/result',
  '/namespaces/{namespace}/activations/{activationid}/logs',
];

export function registerInfoRoutes(root: FastifyInstance, api: FastifyInstance, deps: InfoDeps): void {
  const runtimes: Record<string, unknown[]> = {};
  for (const kind of deps.manifest.kinds.values()) {
    (runtimes[kind.family] ??= []).push({ kind: kind.kind, image: kind.image, deprecated: kind.deprecated, default: kind.default, attached: true, requireMain: false });
  }
  const mb = 1024 * 1024;
  root.get('/', { config: { public: true } }, async () => ({
    description: 'OpenWhisk',
    api_paths: ['/api/v1'],
    support: { github: 'https://github.com/apache/openwhisk/issues', slack: 'http://slack.openwhisk.org' },
    limits: {
      actions_per_minute: deps.throttles.invocationsPerMinute,
      concurrent_actions: deps.throttles.concurrentInvocations,
      triggers_per_minute: 0,
      sequence_length: deps.limits.sequenceMaxLength,
      min_action_duration: deps.limits.timeoutMs.min,
      max_action_duration: deps.limits.timeoutMs.max,
      min_action_memory: deps.limits.memoryMb.min * mb,
      max_action_memory: deps.limits.memoryMb.max * mb,
      min_action_logs: deps.limits.logsMb.min * mb,
      max_action_logs: deps.limits.logsMb.max * mb,
    },
    runtimes,
  }));
  api.get('/', { config: { public: true } }, async () => ({
    description: 'OpenWhisk API',
    api_version: '1.0.0',
    api_version_path: 'v1',
    build: deps.build,
    buildno: deps.build,
    swagger_paths: { ui: '/docs', 'api-docs': '/api-docs' },
  }));
  api.get('/api-docs', { config: { public: true } }, async () => ({
    swagger: '2.0',
    info: { title: 'OpenWhisk REST API (subset served by controller-lb)', version: '0.9.0' },
    basePath: '/api/v1',
    schemes: ['http', 'https'],
    consumes: ['application/json'],
    produces: ['application/json'],
    securityDefinitions: { basic: { type: 'basic' } },
    security: [{ basic: [] }],
    paths: Object.fromEntries(PATHS.map((p) => [p, {}])),
  }));
}
