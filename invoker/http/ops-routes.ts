/**
 * Operations routes: `/ping`, `/health/live`, `/health/ready`, `/metrics`,
 * `/pool`, and the admin routes `/enable`, `/disable`, `/isEnabled` behind
 * basic auth (upstream's InvokerServer, same texts). With mTLS, `/pool` and
 * the admin routes also need a client certificate; the probes and `/metrics`
 * never do (kubelets and Prometheus have none).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../telemetry/logger.js';
import type { InvokerMetrics } from '../telemetry/metrics.js';
import { basicAuthMatches, type BasicCredentials } from './auth.js';
import { methodNotAllowed, sendError } from './replies.js';

export interface InvokerControls {
  enable(): void;
  disable(): void;
  isEnabled(): boolean;
}

export interface HealthCheckResult {
  name: string;
  ok: boolean;
  detail?: string;
  /**
   * Not needed for HTTP work: when not ok, the invoker is still ready and
   * says it is degraded (e.g. Kafka, which only carries the overflow).
   */
  optional?: boolean;
}

export interface HealthChecks {
  /** Dependency checks (Docker, CouchDB, Kafka, ...): all must pass for readiness. */
  checks(): Promise<HealthCheckResult[]>;
  draining(): boolean;
}

export interface OpsRouteDeps {
  controls: InvokerControls;
  health: HealthChecks;
  metrics: InvokerMetrics;
  /** JSON-safe and secret-free: produced by the pool, served as is. */
  poolSnapshot: () => unknown;
  logger: Logger;
  /** Undefined: the admin routes refuse everyone. */
  adminCredentials: BasicCredentials | undefined;
  /** Upstream's `InvokerInstanceId.toString`, e.g. `invoker0`, in the enable/disable texts. */
  instanceName: string;
  /** With mTLS: refuses a connection without a valid client certificate. */
  requireClientCertificate?: ((request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) | undefined;
}

const BASIC_CHALLENGE = { 'www-authenticate': 'Basic realm="invoker"' };

export function registerOpsRoutes(app: FastifyInstance, deps: OpsRouteDeps): void {
  const { controls, health, metrics, poolSnapshot, logger, adminCredentials, instanceName, requireClientCertificate } = deps;
  // Hooks in front of the routes that are not for probes or scrapers.
  const certificate = requireClientCertificate ? [requireClientCertificate] : [];

  app.get('/ping', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('pong'));

  app.get('/health/live', async () => ({ status: 'live' }));

  app.get('/health/ready', async (_request, reply) => {
    let checks: HealthCheckResult[];
    try {
      checks = await health.checks();
    } catch (error) {
      // A check that throws is a failed check, not a failed probe endpoint.
      checks = [{ name: 'health-checks', ok: false, detail: `running the readiness checks: ${(error as Error).message}` }];
    }
    const draining = health.draining();
    if (!draining && checks.every((check) => check.ok || check.optional === true)) {
      const degraded = checks.filter((check) => !check.ok).map((check) => check.name);
      if (degraded.length > 0) return reply.send({ status: 'ready', degraded, checks });
      return reply.send({ status: 'ready', checks });
    }
    return reply.code(503).send({ status: 'not ready', checks, draining });
  });

  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await metrics.exposition();
    return reply.type(contentType).send(body);
  });

  app.get('/pool', { onRequest: certificate }, async (_request, reply) =>
    // Serialized here rather than by fastify so `undefined` becomes `null`, not an empty body.
    reply.type('application/json; charset=utf-8').send(JSON.stringify(poolSnapshot() ?? null)),
  );

  if (adminCredentials === undefined) {
    logger.warn('INVOKER_ADMIN_USER/INVOKER_ADMIN_PASSWORD are not set: /enable, /disable and /isEnabled refuse every request');
  }

  const requireAdmin = async (request: FastifyRequest, reply: FastifyReply) => {
    if (adminCredentials !== undefined && basicAuthMatches(request.headers.authorization, adminCredentials)) return;
    logger.warn({ method: request.method, path: request.routeOptions.url, remoteAddress: request.ip }, 'refused an admin request: missing or wrong credentials');
    return sendError(reply, 401, `${request.method} ${request.routeOptions.url ?? ''} requires valid admin credentials`.trim(), BASIC_CHALLENGE);
  };

  // Upstream InvokerReactive: "<instance> is now enabled." / "... is already
  // enabled." (and the same for disabled), as text/plain.
  app.post('/enable', { onRequest: [...certificate, requireAdmin] }, async (_request, reply) => {
    const already = controls.isEnabled();
    if (!already) controls.enable();
    logger.info({ already }, 'enabled over HTTP');
    return reply.type('text/plain; charset=utf-8').send(`${instanceName} is ${already ? 'already' : 'now'} enabled.`);
  });

  app.post('/disable', { onRequest: [...certificate, requireAdmin] }, async (_request, reply) => {
    const already = !controls.isEnabled();
    if (!already) controls.disable();
    logger.info({ already }, 'disabled over HTTP');
    return reply.type('text/plain; charset=utf-8').send(`${instanceName} is ${already ? 'already' : 'now'} disabled.`);
  });

  app.get('/isEnabled', { onRequest: [...certificate, requireAdmin] }, async () => ({ enabled: controls.isEnabled() }));

  methodNotAllowed(app, '/enable', ['POST']);
  methodNotAllowed(app, '/disable', ['POST']);
  methodNotAllowed(app, '/isEnabled', ['GET']);
}
