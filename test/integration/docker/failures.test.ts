import t from 'tap';
import { LOG_COLLECTION_ISSUE } from '../../../protocol/error-texts.js';
import { docker, initBody, nodejsSpec, runBody, testFactory, texts } from './helpers.js';

t.test('an action that exhausts its memory is OOM-killed', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(64, 'oom'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  const init = await c.init(
    initBody(`function main(){ const keep = []; for (;;) keep.push(Buffer.alloc(1 << 20, 1)); }`),
    10_000,
  );
  t.equal(init.kind === 'response' && init.status, 200);
  const run = await c.run(runBody(), 30_000);
  t.equal(run.kind, 'connection-failed', 'the runtime died under the request');
  const state = await c.inspectExit();
  t.equal(state.oomKilled, true, 'inspect reports OOMKilled');
  t.equal(state.running, false);
  t.equal(state.exitCode, 137);
  t.equal(c.exited, true);
  const logs = await c.collectLogs();
  t.equal(logs.complete, false, 'no sentinels from a killed runtime');
  t.equal(texts(logs.lines).at(-1), `stderr: ${LOG_COLLECTION_ISSUE}`);
});

t.test('an action that exceeds its time limit: run times out, container still there', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'slow'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(initBody(`function main(){ console.log('started'); return new Promise(() => {}); }`), 10_000);
  const start = performance.now();
  const run = await c.run(runBody(), 500);
  const took = performance.now() - start;
  t.same(run, { kind: 'timeout' });
  t.ok(took >= 490 && took < 1500, `timed out after ${Math.round(took)} ms`);
  const logs = await c.collectLogs({ waitMs: 100 });
  t.equal(logs.complete, false);
  t.same(texts(logs.lines), ['stdout: started', `stderr: ${LOG_COLLECTION_ISSUE}`]);
  const state = await c.inspectExit({ waitMs: 0 });
  t.equal(state.running, true, 'the core decides to destroy it, not us');
});

t.test('an action whose init exceeds the time limit', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'slowinit'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  const init = await c.init(initBody(`const end = Date.now() + 3000; while (Date.now() < end); function main(){ return {}; }`), 300);
  t.same(init, { kind: 'timeout' });
});

t.test('an action that exits mid-run: connection failure and its exit code', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'exit'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(initBody(`function main(){ console.log('bye'); process.exit(3); }`), 10_000);
  const run = await c.run(runBody(), 10_000);
  t.equal(run.kind, 'connection-failed');
  const state = await c.inspectExit();
  t.same({ running: state.running, exitCode: state.exitCode, oomKilled: state.oomKilled }, { running: false, exitCode: 3, oomKilled: false });
  const logs = await c.collectLogs();
  t.equal(logs.complete, false);
  t.same(texts(logs.lines), ['stdout: bye', `stderr: ${LOG_COLLECTION_ISSUE}`], 'output written before dying is kept');
});

t.test('a runtime killed mid-run (SIGKILL from outside): connection failure', async (t) => {
  // An action cannot SIGKILL its own process: the runtime is PID 1 in its
  // container and the kernel ignores signals to PID 1 it has no handler for,
  // even SIGKILL, when sent from inside. So the kill comes from the engine,
  // as the OOM killer or an operator would do it.
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'kill'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  await c.init(initBody(`function main(){ console.log('working'); return new Promise(() => {}); }`), 10_000);
  setTimeout(() => void docker.getContainer(c.id).kill({ signal: 'SIGKILL' }), 200);
  const run = await c.run(runBody(), 10_000);
  t.equal(run.kind, 'connection-failed');
  const state = await c.inspectExit();
  t.same({ running: state.running, exitCode: state.exitCode, oomKilled: state.oomKilled }, { running: false, exitCode: 137, oomKilled: false });
  const logs = await c.collectLogs();
  t.same(texts(logs.lines), ['stdout: working', `stderr: ${LOG_COLLECTION_ISSUE}`]);
});

t.test('an action that exits during init: connection failure at once, not at the timeout', async (t) => {
  const factory = await testFactory(t);
  const c = await factory.create(nodejsSpec(128, 'exitinit'));
  t.teardown(() => c.destroy());
  c.beginActivation();
  const start = performance.now();
  const init = await c.init(initBody(`console.log('loading'); process.exit(5); function main(){ return {}; }`), 20_000);
  const took = performance.now() - start;
  t.equal(init.kind, 'connection-failed');
  t.ok(took < 5000, `failed after ${Math.round(took)} ms`);
  const state = await c.inspectExit();
  t.equal(state.exitCode, 5);
  const logs = await c.collectLogs();
  t.same(texts(logs.lines), ['stdout: loading', `stderr: ${LOG_COLLECTION_ISSUE}`]);
});
