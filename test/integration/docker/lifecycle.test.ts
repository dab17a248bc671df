import t from 'tap';
import { LABELS } from '../../../invoker/docker/index.js';
import { docker, env, initBody, newActivationId, nodejsSpec, runBody, testFactory, texts } from './helpers.js';

const RFC3339_NS_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr): /;

t.test('create -> init -> run -> logs -> pause -> unpause -> run -> destroy', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(256, 'hello'));
  t.teardown(() => c.destroy());

  t.match(c.name, new RegExp(`^wsk${factory.invokerId}_\\d+_guest_hello$`));
  t.match(c.ip, /^\d+\.\d+\.\d+\.\d+$/);
  t.equal(c.kind, 'nodejs:20');
  t.equal(c.memoryMb, 256);

  // What the engine was asked for.
  const info = await docker.getContainer(c.id).inspect();
  const hc = info.HostConfig;
  t.equal(hc.Memory, 256 * 1024 * 1024);
  t.equal(hc.MemorySwap, 256 * 1024 * 1024);
  t.equal(hc.CpuShares, 128);
  t.same(hc.CapDrop, ['NET_RAW', 'NET_ADMIN']);
  t.same(hc.SecurityOpt, ['no-new-privileges']);
  t.equal(hc.PidsLimit, 1024);
  t.same(hc.Ulimits, [{ Name: 'nofile', Soft: 1024, Hard: 1024 }]);
  t.equal(hc.LogConfig?.Type, 'none');
  t.equal(hc.NetworkMode, env.dockerNetwork);
  t.ok(info.Config.Env.includes('__OW_API_HOST=https://whisk.test'));
  t.notOk(info.Config.Env.some((e) => e.startsWith('__OW_ALLOW_CONCURRENT')));
  t.same(
    {
      invoker: info.Config.Labels[LABELS.invoker],
      action: info.Config.Labels[LABELS.action],
      kind: info.Config.Labels[LABELS.kind],
      prewarm: info.Config.Labels[LABELS.prewarm],
    },
    { invoker: factory.invokerId, action: 'guest/hello', kind: 'nodejs:20', prewarm: 'false' },
  );

  c.beginActivation();
  const init = await c.init(
    initBody(`function main(p){ console.log('hi ' + p.name); console.error('to stderr'); return { greeting: 'Hello, ' + p.name }; }`),
    10_000,
  );
  t.same(init, { kind: 'response', status: 200, body: '{"OK":true}', bytes: 11, truncated: false });
  const run = await c.run(runBody({ name: 'World' }), 10_000);
  t.same(run, { kind: 'response', status: 200, body: '{"greeting":"Hello, World"}', bytes: 27, truncated: false });
  const logs = await c.collectLogs({ limitBytes: 10 * 1024 * 1024 });
  t.equal(logs.complete, true);
  t.equal(logs.truncated, false);
  t.same(texts(logs.lines).sort(), ['stderr: to stderr', 'stdout: hi World']);
  for (const line of logs.lines) t.match(line, RFC3339_NS_LINE);
  t.equal(logs.bytes, logs.lines.reduce((n, l) => n + Buffer.byteLength(l), 0));

  await c.pause();
  t.equal((await c.inspectExit({ waitMs: 0 })).paused, true);
  await c.unpause();

  c.beginActivation();
  const again = await c.run(runBody({ name: 'again' }), 10_000);
  t.same(again, { kind: 'response', status: 200, body: '{"greeting":"Hello, again"}', bytes: 27, truncated: false });
  const logs2 = await c.collectLogs();
  t.same(texts(logs2.lines).sort(), ['stderr: to stderr', 'stdout: hi again']);

  // The runtime's own answers pass through untouched.
  c.beginActivation();
  const reinit = await c.init(initBody('function main(){return {}}'), 5000);
  t.equal(reinit.kind === 'response' && reinit.status, 403);
  await c.collectLogs({ waitMs: 50 });

  await c.pause();
  await c.destroy();
  await c.destroy(); // idempotent
  await t.rejects(docker.getContainer(c.id).inspect(), { message: /no such container/i }, 'removed, even while paused');
});

t.test('a failed init: runtime answer and its logs', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'broken'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  const init = await c.init(initBody('this is not javascript('), 10_000);
  t.equal(init.kind, 'response');
  if (init.kind === 'response') {
    t.equal(init.status, 502);
    t.match(init.body, /Initialization has failed due to/);
  }
  const logs = await c.collectLogs();
  t.equal(logs.complete, true, 'the runtime prints sentinels after a failed init');
  t.ok(texts(logs.lines).some((l) => l.startsWith('stderr: ')));
});

t.test('prewarm containers: name and labels', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create({ image: env.actionImageNodejs, kind: 'nodejs:20', memoryMb: 128 });
  t.teardown(() => c.destroy());
  t.match(c.name, new RegExp(`^wsk${factory.invokerId}_\\d+_prewarm_nodejs20$`));
  const info = await docker.getContainer(c.id).inspect();
  t.equal(info.Config.Labels[LABELS.prewarm], 'true');
  t.equal(info.Config.Labels[LABELS.action], '');
});

t.test('intra-container concurrency: parallel runs, env flags, logs per activation', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create({ ...nodejsSpec(256, 'concurrent'), concurrency: 3 });
  t.teardown(() => c.destroy());
  const info = await docker.getContainer(c.id).inspect();
  t.ok(info.Config.Env.includes('__OW_ALLOW_CONCURRENT=true'));
  t.ok(info.Config.Env.some((e) => /^__OW_LOG_TAGS=[0-9a-f]{16}$/.test(e)), 'tags asked for, with a key');
  const ids = [1, 2, 3].map(() => newActivationId());
  c.beginActivation({ activationId: ids[0] });
  const init = await c.init(
    initBody(
      `console.log('loading');
function main(p){ console.log('run ' + p.i); return new Promise(r => setTimeout(() => { console.error('end ' + p.i); r({ i: p.i }); }, 300)); }`,
      'main',
      ids[0],
    ),
    10_000,
  );
  t.equal(init.kind === 'response' && init.status, 200);
  t.equal(c.tagsLogs, true, 'the runtime announced tags');
  for (const id of ids.slice(1)) c.beginActivation({ activationId: id });
  const start = performance.now();
  const runs = await Promise.all([1, 2, 3].map((i) => c.run(runBody({ i }, ids[i - 1]), 10_000)));
  const took = performance.now() - start;
  t.same(
    runs.map((r) => (r.kind === 'response' ? r.body : r.kind)),
    ['{"i":1}', '{"i":2}', '{"i":3}'],
  );
  t.ok(took < 850, `ran in parallel (${Math.round(took)} ms)`);
  const logs = await Promise.all(ids.map((activationId) => c.collectLogs({ activationId })));
  t.same(
    logs.map((l) => texts(l.lines)),
    [['stdout: loading', 'stdout: run 1', 'stderr: end 1'], ['stdout: run 2', 'stderr: end 2'], ['stdout: run 3', 'stderr: end 3']],
    'module-level output goes with the activation that initialized',
  );
  t.ok(logs.every((l) => l.complete));
  for (const l of logs) for (const line of l.lines) t.match(line, RFC3339_NS_LINE);
});

t.test('read-only root filesystem with a tmpfs /tmp', async (t) => {
  const factory = await testFactory(t, { hardening: { readonlyRootfs: true, capDrop: ['ALL'] } });
  const c = await factory.create(nodejsSpec(128, 'ro'));
  t.teardown(() => c.destroy());
  const info = await docker.getContainer(c.id).inspect();
  t.equal(info.HostConfig.ReadonlyRootfs, true);
  t.same(Object.keys(info.HostConfig.Tmpfs ?? {}), ['/tmp']);
  t.same(info.HostConfig.CapDrop, ['ALL']);
  c.beginActivation();
  await c.init(
    initBody(`const fs = require('fs');
function main(){
  fs.writeFileSync('/tmp/ok', 'x');
  let root = 'writable';
  try { fs.writeFileSync('/nope', 'x'); } catch (e) { root = e.code; }
  return { tmp: fs.readFileSync('/tmp/ok', 'utf8'), root };
}`),
    10_000,
  );
  const r = await c.run(runBody(), 10_000);
  t.same(r.kind === 'response' && JSON.parse(r.body), { tmp: 'x', root: 'EROFS' });
  await c.collectLogs();
});
