/**
 * The invoker's HTTP server: `POST /invoke` (invoke-route.ts) and the
 * operations routes (ops-routes.ts), over HTTP or HTTPS (optionally mTLS).
 * Everything it talks to is passed in; it owns only the listening socket.
 */
import Fastify, { LogController, type FastifyHttpsOptions, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ActivationHandler, Admission } from '../invocation/activation-handler.js';
import { ActivationIds } from '../invocation/activation-ids.js';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import { clientCertificateStatus } from './auth.js';
import { registerInvokeRoute } from './invoke-route.js';
import { registerOpsRoutes, type InvokerControls, type HealthChecks } from './ops-routes.js';
import { errorHandler, pathOf, sendError } from './replies.js';

export interface HttpTlsConfig {
  /** PEM certificate (chain). */
  cert: string;
  /** PEM private key. */
  key: string;
  /**
   * PEM CA bundle; when set, `/invoke`, the admin routes and `/pool` require
   * a client certificate it signed. The probes (`/ping`, `/health/*`) and
   * `/metrics` do not: kubelets and Prometheus connect without one.
   */
  clientCa?: string | undefined;
}

export interface InvokerHttpConfig {
  invokeBodyLimitBytes: number;
  /** When set, `POST /invoke` requires `Authorization: Bearer <token>`. */
  invokeToken?: string | undefined;
  /** Both set: basic auth for the admin routes; otherwise they refuse everyone. */
  adminUser?: string | undefined;
  adminPassword?: string | undefined;
  tls?: HttpTlsConfig | undefined;
  /**
   * A request's headers must arrive within this (default 10 s) and the whole
   * request, body included, within `requestTimeoutMs` (default 30 s), or node
   * answers 408 and closes the connection: a stalled upload cannot hold a
   * socket. Once the request is in, the response (the activation) may take as
   * long as it runs. Checked every `timeoutCheckIntervalMs` (default 1 s).
   */
  headersTimeoutMs?: number | undefined;
  requestTimeoutMs?: number | undefined;
  timeoutCheckIntervalMs?: number | undefined;
}

export interface InvokerHttpServerDeps {
  handler: ActivationHandler;
  admission: Admission;
  /** Shared with the Kafka feed, so one id runs once whichever way it comes; default: this server's own. */
  ids?: ActivationIds;
  controls: InvokerControls;
  health: HealthChecks;
  metrics: InvokerMetrics;
  poolSnapshot: () => unknown;
  logger: Logger;
  config: InvokerHttpConfig;
  /**
   * How the invoker names itself in the `/enable` and `/disable` answers:
   * upstream's `InvokerInstanceId.toString`, e.g. `invoker0`. Default `invoker`.
   */
  instanceName?: string;
}

export interface InvokerHttpServer {
  /** Binds `host:port` (port 0: any free port) and reports the bound port. */
  listen(host: string, port: number): Promise<{ port: number }>;
  /**
   * Stops accepting connections and waits for in-flight requests (activations
   * included) to end; after `forceAfterMs` (default: no limit) the
   * connections still open are destroyed.
   */
  close(options?: { forceAfterMs?: number }): Promise<void>;
  /** The fastify instance, for `inject` in tests and for the raw server (`server.server`). */
  readonly server: FastifyInstance;
}

export function createInvokerHttpServer(deps: InvokerHttpServerDeps): InvokerHttpServer {
  const { config } = deps;
  const logger = deps.logger.child({ component: 'http' });

  const requestTimeout = config.requestTimeoutMs ?? 30_000;
  // node refuses a headers timeout beyond the request timeout.
  const headersTimeout = Math.min(config.headersTimeoutMs ?? 10_000, requestTimeout === 0 ? Infinity : requestTimeout);
  const nodeServerTimeouts = { headersTimeout, requestTimeout, connectionsCheckingInterval: config.timeoutCheckIntervalMs ?? 1_000 };
  const options = {
    loggerInstance: logger,
    // The core logs one wide event per activation; a line per request would
    // double the volume and say less.
    logController: new LogController({ disableRequestLogging: true }),
    // Each activation holds its response open for as long as it runs; never
    // time those sockets out here (the core enforces action time limits).
    // Receiving the request is bounded instead (nodeServerTimeouts).
    connectionTimeout: 0,
    requestTimeout,
    http: nodeServerTimeouts,
  };
  const tls = config.tls;
  const app = (
    tls === undefined
      ? Fastify(options)
      : Fastify<HttpsServer>({
          ...options,
          https: {
            ...nodeServerTimeouts,
            cert: tls.cert,
            key: tls.key,
            // Asked for, verified against the CA, but not enforced by the
            // handshake: the routes that need a certificate check the
            // verdict (requireClientCertificate), the probes do not.
            ...(tls.clientCa !== undefined
              ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false }
              : {}),
          },
        } satisfies FastifyHttpsOptions<HttpsServer>)
  ) as unknown as FastifyInstance;
  // (The cast: the HTTPS variant differs only in its raw server type, which
  // no route touches; requests and responses are node:http's in both.)

  app.setErrorHandler(errorHandler(logger, config.invokeBodyLimitBytes));
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, `no route for ${request.method} ${pathOf(request)}`));

  let closing = false;

  // Refuses a request whose connection did not present a valid client
  // certificate; a no-op without mTLS.
  const requireClientCertificate =
    tls?.clientCa === undefined
      ? undefined
      : async (request: FastifyRequest, reply: FastifyReply) => {
          const status = clientCertificateStatus(request.raw.socket);
          if (status.ok) return;
          const route = `${request.method} ${pathOf(request)}`;
          logger.warn({ route, remoteAddress: request.ip, reason: status.reason }, `refused ${route}: ${status.reason}`);
          return sendError(reply, status.status, `${route} requires a client certificate signed by the invoker's client CA: ${status.reason}`);
        };

  registerInvokeRoute(app, {
    // The 200 of an activation in flight went out before close() began, so
    // it could not say `Connection: close`; node's server.close() only drops
    // connections idle at that moment, and this one would then idle until
    // the keep-alive timeout, holding close() open that long.
    afterResponse: () => {
      if (closing) app.server.closeIdleConnections();
    },
    handler: deps.handler,
    admission: deps.admission,
    ids: deps.ids ?? new ActivationIds(),
    metrics: deps.metrics,
    logger,
    invokeBodyLimitBytes: config.invokeBodyLimitBytes,
    invokeToken: config.invokeToken,
    requireClientCertificate,
  });
  registerOpsRoutes(app, {
    controls: deps.controls,
    health: deps.health,
    metrics: deps.metrics,
    poolSnapshot: deps.poolSnapshot,
    logger,
    adminCredentials:
      config.adminUser !== undefined && config.adminPassword !== undefined
        ? { user: config.adminUser, password: config.adminPassword }
        : undefined,
    instanceName: deps.instanceName ?? 'invoker',
    requireClientCertificate,
  });

  return {
    server: app,
    async listen(host, port) {
      try {
        await app.listen({ host, port });
      } catch (error) {
        throw new Error(`starting the HTTP server on ${host}:${port}: ${(error as Error).message}`, { cause: error });
      }
      const address = app.server.address() as AddressInfo | null;
      const bound = address?.port ?? port;
      logger.info(
        { host, port: bound, tls: tls !== undefined, mtls: tls?.clientCa !== undefined, bearerAuth: config.invokeToken !== undefined },
        'HTTP server listening',
      );
      return { port: bound };
    },
    async close(options = {}) {
      closing = true;
      const { forceAfterMs } = options;
      const force =
        forceAfterMs === undefined
          ? undefined
          : setTimeout(() => {
              logger.warn({ forceAfterMs }, 'HTTP connections still open at the close deadline: destroying them');
              app.server.closeAllConnections();
            }, forceAfterMs);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
      }
    },
  };
}
