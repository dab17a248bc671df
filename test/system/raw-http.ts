/** Raw HTTP over a socket: for what an HTTP client library will not send. */
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  /** The status line's code; 0 if the server closed without answering. */
  status: number;
  text: string;
  /** ms until the server answered or closed. */
  ms: number;
  closed: boolean;
}

/** Sends `bytes`, then waits up to `waitMs` for an answer (or close). */
export function rawExchange(port: number, bytes: string | Buffer, waitMs: number): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket: Socket = connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: match ? Number(match[1]) : 0, text, ms: Date.now() - started, closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      // One complete answer is enough (Content-Length known and body in).
      const head = text.indexOf('\r\n\r\n');
      const length = /content-length: *(\d+)/i.exec(text.slice(0, head));
      if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => socket.write(bytes));
  });
}

/** Opens a connection, sends `bytes` and drops it at once. */
export function openAndDrop(port: number, bytes: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes, () => {
        socket.destroy();
        resolve();
      });
    });
    socket.on('error', () => resolve());
  });
}

/** The JSON error body of a raw answer. */
export function errorOf(answer: RawAnswer): string | undefined {
  const body = answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4);
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : undefined;
  } catch {
    return undefined;
  }
}
