/**
 * One bounded probe of a dependency, as a readiness check result. The bound
 * keeps a dependency that hangs from making the probe endpoint itself time
 * out: the kubelet would read that as "not ready" without saying why.
 */
import type { HealthCheckResult } from '../http/ops-routes.js';

export const HEALTH_CHECK_TIMEOUT_MS = 2000;

export async function runCheck(
  name: string,
  probe: () => Promise<unknown>,
  options: { optional?: boolean; timeoutMs?: number } = {},
): Promise<HealthCheckResult> {
  const timeoutMs = options.timeoutMs ?? HEALTH_CHECK_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { name, ok: true };
  } catch (error) {
    return { name, ok: false, detail: (error as Error).message, ...(options.optional === true ? { optional: true } : {}) };
  } finally {
    clearTimeout(timer);
  }
}
