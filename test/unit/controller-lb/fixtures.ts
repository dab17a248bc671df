/** Messages, acks and fakes shared by the controller-lb tests. */
import { Writable } from 'node:stream';
import {
  combinedAck,
  completionAck,
  generateActivationId,
  generateTransactionId,
  megabytes,
  RawJson,
  resultAck,
  type ActivationMessage,
  type InvokerInstanceId,
  type StatusCode,
  type WhiskActivation,
} from '../../../protocol/index.js';
import { createLogger, type Logger } from '../../../invoker/telemetry/logger.js';
import type { ActionSpec, Pusher } from '../../../controller-lb/load-balancer.js';
import type { Push, PushCompletion } from '../../../controller-lb/push-client.js';

export const helloAction: ActionSpec = {
  namespace: 'guest',
  path: 'guest',
  name: 'hello',
  version: '0.0.1',
  memoryMb: 256,
  timeoutMs: 60_000,
  concurrency: 1,
};

export function message(overrides: Partial<ActivationMessage> = {}): ActivationMessage {
  const uuid = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502';
  return {
    transid: generateTransactionId(),
    action: { path: 'guest', name: 'hello', version: '0.0.1' },
    revision: '1-abc',
    user: {
      subject: 'guest',
      namespace: { name: 'guest', uuid },
      authkey: { api_key: `${uuid}:secret` },
      rights: ['READ', 'PUT', 'DELETE', 'ACTIVATE'],
      limits: {},
    },
    activationId: generateActivationId(),
    rootControllerIndex: { asString: '0' },
    blocking: true,
    content: RawJson.of({ name: 'World' }),
    initArgs: [],
    lockedArgs: {},
    ...overrides,
  };
}

export function invokerId(instance: number, memoryMb = 1024): InvokerInstanceId {
  return { instance, userMemory: megabytes(memoryMb), tags: [], dedicatedNamespaces: [] };
}

export function activationFor(msg: ActivationMessage, statusCode: StatusCode = 0): WhiskActivation {
  const start = Date.now();
  return {
    namespace: msg.user.namespace.name,
    name: msg.action.name,
    subject: msg.user.subject,
    activationId: msg.activationId,
    start,
    end: start + 5,
    response: statusCode === 0 ? { statusCode, result: { payload: 'Hello, World!' } } : { statusCode, result: { error: 'failed' } },
    logs: [],
    version: msg.action.version ?? '0.0.1',
    publish: false,
    annotations: [],
    duration: 5,
  };
}

export function combined(msg: ActivationMessage, instance: number, statusCode: StatusCode = 0) {
  return combinedAck(msg.transid, activationFor(msg, statusCode), invokerId(instance));
}
export function completion(msg: ActivationMessage, instance: number, statusCode: StatusCode = 0) {
  return completionAck(msg.transid, activationFor(msg, statusCode), invokerId(instance));
}
export function result(msg: ActivationMessage, statusCode: StatusCode = 0) {
  return resultAck(msg.transid, activationFor(msg, statusCode));
}

export interface PendingPush {
  url: string;
  msg: ActivationMessage;
  signal: AbortSignal | undefined;
  acknowledge(): void;
  refuse(error: string): void;
  complete(result: PushCompletion): void;
}

/** A Pusher whose pushes the test acknowledges and completes by hand. */
export class FakePusher implements Pusher {
  readonly pushes: PendingPush[] = [];

  push(url: string, msg: ActivationMessage, signal?: AbortSignal): Push {
    let ack!: () => void;
    let nack!: (e: Error) => void;
    let done!: (r: PushCompletion) => void;
    const acknowledged = new Promise<void>((resolve, reject) => ((ack = resolve), (nack = reject)));
    acknowledged.catch(() => undefined);
    const completion = new Promise<PushCompletion>((resolve) => (done = resolve));
    this.pushes.push({
      url,
      msg,
      signal,
      acknowledge: ack,
      refuse: (error) => {
        nack(new Error(error));
        done({ ok: false, acknowledged: false, error });
      },
      complete: done,
    });
    return { acknowledged, completion };
  }

  last(): PendingPush {
    const p = this.pushes.at(-1);
    if (p === undefined) throw new Error('nothing was pushed');
    return p;
  }
}

/** A Kafka publisher that records what it was given. */
export class FakePublisher {
  readonly published: Array<{ invoker: number; msg: ActivationMessage }> = [];
  fail: Error | undefined;
  async publish(invoker: InvokerInstanceId, msg: ActivationMessage): Promise<void> {
    if (this.fail !== undefined) throw this.fail;
    this.published.push({ invoker: invoker.instance, msg });
  }
}

/** A logger whose JSON lines the test can read. */
export function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(condition: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
