/**
 * A start that fails part way (the HTTP port is taken) rejects naming the
 * component, and what had started is stopped again rather than left running:
 * the activation writer is flushed and closed, so a second start on the same
 * journal works.
 */
import t from 'tap';
import { createServer } from 'node:net';
import { startInvoker } from '../../../invoker/invoker.js';
import { ComponentStartError } from '../../../invoker/lifecycle.js';
import { InvokerTestbed } from '../../helpers/invoker-harness.js';
import { captureLogger } from '../../helpers/log-capture.js';


t.test('the HTTP port is taken: the start fails naming the HTTP server, and unwinds', async (t) => {
  const bed = new InvokerTestbed(t);
  await bed.createDatabases();
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const address = blocker.address();
  if (address === null || typeof address === 'string') throw new Error('no port');

  const { lines, logger } = captureLogger();
  const error = await startInvoker(bed.config({ INVOKER_HTTP_PORT: String(address.port) }), { logger }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof ComponentStartError, 'the start rejects with a ComponentStartError');
  t.equal((error as ComponentStartError).component, 'HTTP server');
  t.match((error as Error).message, /^HTTP server failed to start: .*EADDRINUSE/);
  const messages = lines.map((line) => line.msg);
  t.ok(messages.includes('start failed: stopping what already started'));
  t.ok(messages.includes('activation records flushed'), 'the writer, started before the HTTP server, was closed');
  t.notOk(messages.includes('invoker ready'), 'never reported ready');

  // What the failed start opened is closed again: a second start on the same journal and databases works.
  const invoker = await bed.start();
  const health = await fetch(`http://127.0.0.1:${invoker.port}/health/ready`);
  t.equal(health.status, 200);
});
