import t from 'tap';
import { DockerTimeoutError, Semaphore, withTimeout } from '../../../invoker/docker/docker-engine.js';
import { cpuSharesFor, mibToBytes, sanitizeNamePart } from '../../../invoker/docker/container-factory.js';

t.test('withTimeout turns a hung call into a DockerTimeoutError naming the operation', async (t) => {
  let aborted = false;
  const err = await withTimeout('pausing container wsk0_3_guest_hello', 30, (signal) => {
    signal.addEventListener('abort', () => (aborted = true));
    return new Promise<never>(() => undefined);
  }).catch((e: unknown) => e);
  t.type(err, DockerTimeoutError);
  t.equal(String(err), 'DockerTimeoutError: pausing container wsk0_3_guest_hello timed out after 30 ms');
  t.ok(aborted, 'the underlying request is aborted');
  t.equal(await withTimeout('quick', 1000, async () => 7), 7);
  await t.rejects(withTimeout('failing', 1000, async () => Promise.reject(new Error('boom'))), /boom/);
});

t.test('Semaphore bounds parallelism, FIFO', async (t) => {
  const s = new Semaphore(3);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      s.use(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        await new Promise((r) => setTimeout(r, 5));
        running--;
      }),
    ),
  );
  t.equal(peak, 3);
  t.same(order, [...order].sort((a, b) => a - b));
  await t.rejects(s.use(async () => Promise.reject(new Error('x'))));
  t.equal(await s.use(async () => 1), 1, 'a failure releases its slot');
});

t.test('names, cpu shares, memory', async (t) => {
  t.equal(sanitizeNamePart('guest@example.com/my action!'), 'guestexample.commyaction');
  t.equal(sanitizeNamePart('nodejs:20'), 'nodejs20');
  t.equal(cpuSharesFor(256, 2048), 128);
  t.equal(cpuSharesFor(128, 4096), 32);
  t.equal(cpuSharesFor(1, 1_000_000), 2, 'at least 2');
  t.equal(cpuSharesFor(512, 1536), 341);
  t.equal(mibToBytes(256), 268_435_456);
});
