import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now: the harness's. */
export { freePort } from '../helpers/invoker-harness.js';

/** True when `port` can be bound on 127.0.0.1 now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
