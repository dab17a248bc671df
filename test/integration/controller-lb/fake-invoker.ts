/**
 * A tiny HTTP server that keeps the invoker's /invoke contract: 200 headers
 * flushed on receipt (the acknowledgement), the completion message as the
 * body when the activation has "run". Each request's behaviour is chosen by
 * the test.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  combinedAck,
  megabytes,
  parseActivationMessage,
  serializeAcknowledgement,
  type ActivationMessage,
  type StatusCode,
  type WhiskActivation,
} from '../../../protocol/index.js';

export type Behaviour =
  /** Acknowledge, then complete when `release()` is called. */
  | { kind: 'complete'; statusCode?: StatusCode }
  /** Answer with this status and no completion. */
  | { kind: 'refuse'; status: number }
  /** Acknowledge, write half of the completion, then drop the connection. */
  | { kind: 'cut' };

export interface Received {
  msg: ActivationMessage;
  raw: Buffer;
  headers: IncomingMessage['headers'];
  /** The client's port: equal ports mean a reused connection. */
  remotePort: number | undefined;
  /** For `complete`: writes the completion and ends the response. */
  release(): void;
}

export interface FakeInvoker {
  url: string;
  instance: number;
  received: Received[];
  next: Behaviour[];
  /** Default when `next` is empty. */
  behaviour: Behaviour;
  ready: number;
  close(): Promise<void>;
}

export function activationOf(msg: ActivationMessage, statusCode: StatusCode): WhiskActivation {
  const start = Date.now();
  return {
    namespace: msg.user.namespace.name,
    name: msg.action.name,
    subject: msg.user.subject,
    activationId: msg.activationId,
    start,
    end: start + 3,
    response: statusCode === 0 ? { statusCode, result: msg.content?.value() ?? {} } : { statusCode, result: { error: 'it failed' } },
    logs: ['2024-05-31T15:28:37.251871463Z stdout: hello'],
    version: msg.action.version ?? '0.0.1',
    publish: false,
    annotations: [{ key: 'path', value: `${msg.action.path}/${msg.action.name}` }],
    duration: 3,
  };
}

export async function startFakeInvoker(instance: number, options: { token?: string } = {}): Promise<FakeInvoker> {
  const state: Omit<FakeInvoker, 'url' | 'close'> = { instance, received: [], next: [], behaviour: { kind: 'complete' }, ready: 200 };
  const sockets = new Set<import('node:net').Socket>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method === 'GET' && req.url === '/health/ready') {
      res.writeHead(state.ready, { 'content-type': 'application/json' }).end(JSON.stringify({ status: state.ready === 200 ? 'ready' : 'not ready' }));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/invoke') {
      res.writeHead(404).end();
      return;
    }
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"POST /invoke requires a valid bearer token"}');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const msg = parseActivationMessage(raw);
    const behaviour = state.next.shift() ?? state.behaviour;
    const completion = serializeAcknowledgement(
      combinedAck(msg.transid, activationOf(msg, behaviour.kind === 'complete' ? (behaviour.statusCode ?? 0) : 0), {
        instance,
        userMemory: megabytes(1024),
        tags: [],
        dedicatedNamespaces: [],
      }),
    );
    let release = (): void => undefined;
    if (behaviour.kind === 'refuse') {
      res.writeHead(behaviour.status, { 'content-type': 'application/json' }).end('{"error":"invoker is not accepting activations: draining"}');
    } else if (behaviour.kind === 'cut') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(completion.slice(0, Math.floor(completion.length / 2)));
      setTimeout(() => res.socket?.destroy(), 20);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      release = () => res.end(completion);
    }
    state.received.push({ msg, raw, headers: req.headers, remotePort: req.socket.remotePort, release });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.writeHead(400).end(String(error));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

/** A URL where nothing listens (a port that was just free). */
export async function refusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
