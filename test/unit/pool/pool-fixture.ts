/** Shared set-up for the pool tests: a pool over a FakeProvider, drained at teardown. */
import { ContainerPool, type AcquireRequest, type ContainerPoolOptions } from '../../../invoker/pool/container-pool.js';
import { silentLogger } from '../../../invoker/telemetry/logger.js';
import { FakeProvider, type FakeContainer } from './fake-provider.js';

export const KIND = 'nodejs:20';
export const IMAGE = 'whisk/action-nodejs-v20:local';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export function makePool(
  t: Teardown,
  options: Partial<ContainerPoolOptions<FakeContainer>> = {},
): { pool: ContainerPool<FakeContainer>; provider: FakeProvider } {
  const provider = (options.provider as FakeProvider | undefined) ?? new FakeProvider();
  // Timers off by default: tests that need pausing or idle removal opt in.
  const pool = new ContainerPool<FakeContainer>({
    logger: silentLogger(),
    userMemoryMb: 1024,
    pauseGraceMs: Infinity,
    idleTimeoutMs: Infinity,
    ...options,
    provider,
  });
  t.teardown(() => pool.drain(200));
  return { pool, provider };
}

/** A request for action `key` (the warmKey) with 256 MB and concurrency 1 unless overridden. */
export function req(key: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest {
  return { warmKey: key, kind: KIND, image: IMAGE, memoryMb: 256, concurrency: 1, ...overrides };
}
