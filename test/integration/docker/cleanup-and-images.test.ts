import t from 'tap';
import { uniqueName } from '../../helpers/env.js';
import { ContainerFactory, DockerTimeoutError, ImagePullError, LABELS } from '../../../invoker/docker/index.js';
import { docker, env, nodejsSpec, requireRuntimeImage, testFactory } from './helpers.js';

t.test('cleanup removes only this invoker’s containers, paused ones included', async (t) => {
  const factory = await testFactory(t);
  const other = await testFactory(t); // another invoker on the same host
  const a = await factory.create(nodejsSpec(128, 'a'));
  const b = await factory.create(nodejsSpec(128, 'b'));
  const theirs = await other.create(nodejsSpec(128, 'theirs'));
  await b.pause();
  // A foreign container from the same image, with a similar but different label.
  const foreign = await docker.createContainer({
    Image: env.actionImageNodejs,
    name: uniqueName('foreign'),
    Labels: { [LABELS.invoker]: `${factory.invokerId}x`, 'whisk.kind': 'nodejs:20' },
    HostConfig: { LogConfig: { Type: 'none', Config: {} } },
  });
  t.teardown(() => foreign.remove({ force: true }));
  await foreign.start();

  const removed = await factory.removeInvokerContainers();
  t.equal(removed, 2);
  for (const c of [a, b]) await t.rejects(docker.getContainer(c.id).inspect(), /no such container/i, `${c.name} removed`);
  t.equal((await docker.getContainer(theirs.id).inspect()).State.Running, true, 'the other invoker’s container survives');
  t.equal((await foreign.inspect()).State.Running, true, 'the foreign container survives');
  t.equal(await factory.removeInvokerContainers(), 0, 'nothing left');
  await a.destroy(); // already gone: not an error
});

t.test('pulling a missing image fails with the standard text', async (t) => {
  const factory = await testFactory(t, { timeouts: { pullMs: 60_000 } });
  const image = 'whisk/does-not-exist:nope';
  const error = await factory.ensureImage(image).catch((e: unknown) => e);
  t.type(error, ImagePullError);
  t.equal((error as Error).message, "Failed to pull container image 'whisk/does-not-exist:nope'.");
  t.ok((error as Error).cause instanceof Error, 'keeps the cause');
  await factory.ensureImage(env.actionImageNodejs); // present: no pull
});

t.test('creating from a missing image fails with what was attempted, leaving nothing behind', async (t) => {
  const factory = await testFactory(t);
  const error = await factory
    .create({ image: 'whisk/does-not-exist:nope', kind: 'blackbox', memoryMb: 128 })
    .catch((e: unknown) => e as Error);
  t.match(String(error), /creating container wsk.*_prewarm_blackbox from whisk\/does-not-exist:nope/);
  t.equal(await factory.removeInvokerContainers(), 0);
});

t.test('a hung engine call becomes a DockerTimeoutError naming the operation', async (t) => {
  await requireRuntimeImage();
  // A Unix socket that accepts and never answers stands in for a hung engine.
  const { createServer } = await import('node:net');
  const { default: Dockerode } = await import('dockerode');
  const sockets: import('node:net').Socket[] = [];
  const server = createServer((s) => sockets.push(s));
  const path = `/tmp/${uniqueName('hung-docker')}.sock`;
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const factory = new ContainerFactory({
    invokerId: 'hung',
    userMemoryMb: 1024,
    apiHost: 'https://whisk.test',
    docker: new Dockerode({ socketPath: path }),
    timeouts: { runMs: 100 },
  });
  const start = performance.now();
  const error = await factory.create(nodejsSpec(128, 'hello')).catch((e: unknown) => e);
  t.type(error, DockerTimeoutError);
  t.match(String(error), /^DockerTimeoutError: creating container wskhung_1_guest_hello from .* timed out after 100 ms$/);
  t.ok(performance.now() - start < 2000);
});
