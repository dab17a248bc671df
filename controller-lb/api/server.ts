/**
 * The controller's HTTP API: the part of OpenWhisk's REST API that the
 * `wsk` CLI and the `openwhisk` npm client use (see controller-lb/README.md
 * for the list), with upstream's shapes, status codes and error bodies, plus
 * `GET /invokers` and `GET /invokers/slots` for operators.
 *
 * Everything under `/api/v1` except the version info needs basic auth.
 * Timeouts: a request's headers must arrive within `headersTimeoutMs`, its
 * whole body within `requestTimeoutMs` (upstream reads bodies with a 30 s
 * deadline); an idle connection is closed after `connectionTimeoutMs`, which
 * is longer than the longest blocking wait.
 */
import fastify, { type FastifyInstance } from 'fastify';
import type { ControllerInstanceId } from '../../protocol/index.js';
import type { Logger } from '../../invoker/telemetry/logger.js';
import { defaultRuntimeManifest, type RuntimeManifest } from '../../invoker/runtime-manifest.js';
import { DEFAULT_ACTION_LIMITS_CONFIG, type ActionLimitsConfig } from '../action-put.js';
import type { ActionDocuments } from '../action-store.js';
import type { ActivationReader, ActivationRecordWriter } from '../activation-store.js';
import type { IdentityLookup } from '../identity-store.js';
import type { InvokerPool } from '../invoker-state.js';
import { registerActionRoutes } from './actions.js';
import { registerActivationRoutes } from './activations.js';
import { basicAuthenticator } from './auth.js';
import { ApiError, installErrorHandlers } from './errors.js';
import type { Balancer } from './invoke.js';
import { installJsonBodyParser } from './json-body.js';
import { registerInfoRoutes, registerNamespaceRoutes } from './namespaces.js';
import { createThrottle, type ThrottleConfig } from './throttles.js';

export interface ApiTimeouts {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export interface ApiDeps {
  balancer: Balancer;
  pool: InvokerPool;
  actions: ActionDocuments;
  activations: ActivationReader & ActivationRecordWriter;
  identities: IdentityLookup;
  controller: ControllerInstanceId;
  logger: Logger;
  manifest?: RuntimeManifest;
  limits?: Partial<ActionLimitsConfig>;
  /** Largest invoke body; upstream whisk.activation.payload.max (1 MiB). */
  payloadMaxBytes?: number;
  /** How long a blocking call waits before answering 202 with the id (upstream: 60 s). */
  blockingTimeoutMs?: number;
  throttles?: ThrottleConfig;
  timeouts?: Partial<ApiTimeouts>;
  build?: string;
  now?: () => number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No authentication (version info, api-docs). */
    public?: boolean;
  }
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { balancer, pool, actions, activations, controller, logger } = deps;
  const now = deps.now ?? Date.now;
  const manifest = deps.manifest ?? defaultRuntimeManifest();
  const limits: ActionLimitsConfig = { ...DEFAULT_ACTION_LIMITS_CONFIG, ...deps.limits };
  const maxWaitMs = deps.blockingTimeoutMs ?? 60_000;
  const throttles = deps.throttles ?? { invocationsPerMinute: 0, concurrentInvocations: 0 };
  const timeouts: ApiTimeouts = {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    connectionTimeoutMs: maxWaitMs + 30_000,
    keepAliveTimeoutMs: 5_000,
    ...deps.timeouts,
  };

  const app = fastify({
    logger: false,
    bodyLimit: deps.payloadMaxBytes ?? 1024 * 1024,
    requestTimeout: timeouts.requestTimeoutMs,
    connectionTimeout: timeouts.connectionTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    routerOptions: { ignoreTrailingSlash: true },
    // Refused below in upstream's error shape instead of fastify's own.
    return503OnClosing: false,
    // Node checks the request and headers deadlines on this interval (default 30 s).
    http: { connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(timeouts.requestTimeoutMs / 4))) },
  });
  app.server.headersTimeout = Math.min(timeouts.headersTimeoutMs, timeouts.requestTimeoutMs);
  installErrorHandlers(app, (error, request) => {
    logger.error({ transid: request.transid?.id, method: request.method, url: request.url.split('?')[0], err: error }, 'request failed');
  });
  installJsonBodyParser(app);
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    void reply.header('connection', 'close');
    throw new ApiError(503);
  });

  app.get('/invokers', async () => pool.statuses(now()));
  app.get('/invokers/slots', async () => pool.snapshot(now()));

  const authenticator = basicAuthenticator(deps.identities, (error) => {
    logger.error({ error: (error as Error).message }, 'authentication store failed');
  });
  const invokeDeps = { balancer, controller, logger, activations };
  const sequences = { ...invokeDeps, actions, records: activations, maxSequenceLength: limits.sequenceMaxLength, now };
  const info = { manifest, limits, throttles, build: deps.build ?? 'controller-lb' };

  await app.register(
    async (api) => {
      api.addHook('onRequest', async (request) => {
        if (request.routeOptions.config.public === true) return;
        request.identity = await authenticator.authenticate(request);
      });
      registerInfoRoutes(app, api, info);
      registerNamespaceRoutes(api);
      registerActionRoutes(api, {
        ...invokeDeps,
        actions,
        manifest,
        limits,
        payloadMaxBytes: deps.payloadMaxBytes ?? 1024 * 1024,
        maxWaitMs,
        sequences,
        throttle: createThrottle(throttles, now),
        now,
      });
      registerActivationRoutes(api, { activations });
    },
    { prefix: '/api/v1' },
  );
  return app;
}
