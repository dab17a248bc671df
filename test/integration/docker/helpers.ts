/**
 * Shared set-up for the Docker integration tests (not a test file itself;
 * tap lists it as "no tests found").
 */
import { randomBytes } from 'node:crypto';
import Dockerode from 'dockerode';
import { testEnvironment, uniqueName } from '../../helpers/env.js';
import { ContainerFactory, type ContainerFactoryOptions } from '../../../invoker/docker/index.js';

export const env = testEnvironment();
export const docker = new Dockerode();

interface TapLike {
  teardown(fn: () => unknown): void;
}

/** Creates the test bridge network if it is missing (tolerating a parallel creator). */
export async function ensureNetwork(name = env.dockerNetwork): Promise<void> {
  const existing = await docker.listNetworks({ filters: { name: [name] } });
  if (existing.some((n) => n.Name === name)) return;
  try {
    await docker.createNetwork({ Name: name, Driver: 'bridge', CheckDuplicate: true });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 409) throw error;
  }
}

/** Fails loudly (with how to fix it) when the runtime image has not been built. */
export async function requireRuntimeImage(): Promise<void> {
  try {
    await docker.getImage(env.actionImageNodejs).inspect();
  } catch {
    throw new Error(`image ${env.actionImageNodejs} is missing: run bash scripts/build-runtime-image.sh`);
  }
}

/**
 * A factory with an invoker id unique to this test, on the test network;
 * every container it made is removed at teardown.
 */
export async function testFactory(t: TapLike, overrides: Partial<ContainerFactoryOptions> = {}): Promise<ContainerFactory> {
  await ensureNetwork();
  await requireRuntimeImage();
  const factory = new ContainerFactory({
    invokerId: uniqueName('t').replace(/-/g, '_'),
    userMemoryMb: 2048,
    apiHost: 'https://whisk.test',
    network: env.dockerNetwork,
    ...overrides,
  });
  t.teardown(() => factory.removeInvokerContainers());
  return factory;
}

export const ACTIVATION_ID = 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c';

/** `activationId` goes where the invoker puts it: `__OW_ACTIVATION_ID` in the init environment. */
export function initBody(code: string, main = 'main', activationId?: string): string {
  const env = activationId === undefined ? {} : { __OW_ACTIVATION_ID: activationId };
  return JSON.stringify({ value: { name: 'test', main, code, binary: false, env } });
}

export function runBody(value: Record<string, unknown> = {}, activationId = ACTIVATION_ID): string {
  return JSON.stringify({
    value,
    namespace: 'guest',
    action_name: '/guest/test',
    activation_id: activationId,
    transaction_id: 'kLkNPqEcNHFgyuhl0tsV5JlmdYnuvNNa',
    deadline: String(Date.now() + 60_000),
  });
}

export const nodejsSpec = (memoryMb = 256, name = 'test') => ({
  image: env.actionImageNodejs,
  kind: 'nodejs:20',
  memoryMb,
  action: { namespace: 'guest', path: 'guest', name },
});

/** A fresh 32-hex activation id. */
export function newActivationId(): string {
  return randomBytes(16).toString('hex');
}

/** The text part of formatted log lines (after `<time> `). */
export const texts = (lines: string[]): string[] => lines.map((l) => l.slice(31));
