/**
 * The Node.js action runtime image (runtimes/nodejs) in the real Docker
 * engine, spoken to over the action runtime protocol exactly as the invoker
 * speaks it: containers on the test bridge network, HTTP to the container's
 * address on that network, logs read back from the engine.
 */
import t from 'tap';
import { Agent } from 'undici';
import zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { testEnvironment } from '../../helpers/env.js';
import {
  ensureImages,
  ensureNetwork,
  runBody,
  SENTINEL,
  sentinels,
  startRuntime as harnessStartRuntime,
  type Runtime,
  type Teardown,
} from './harness.js';

const env = testEnvironment();
const agent = new Agent();
t.teardown(() => agent.close());

await ensureImages();
await ensureNetwork();

// ---------------------------------------------------------------- helpers

/** A container of the nodejs:20 runtime image. */
const startRuntime = (t: Teardown, containerEnv: Record<string, string> = {}): Promise<Runtime> =>
  harnessStartRuntime(t, agent, env.actionImageNodejs, containerEnv);

function initBody(code: string, extra: Record<string, unknown> = {}) {
  return { value: { name: 'test', main: 'main', binary: false, code, ...extra } };
}

/** A zip archive (stored or deflated entries, Unix modes) built in memory. */
function zipArchive(files: Record<string, { data: string; deflate?: boolean } | 'dir'>): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, file] of Object.entries(files)) {
    const nameBuf = Buffer.from(name, 'utf8');
    const raw = file === 'dir' ? Buffer.alloc(0) : Buffer.from(file.data, 'utf8');
    const deflate = file !== 'dir' && file.deflate === true;
    const body = deflate ? zlib.deflateRawSync(raw) : raw;
    const crc = zlib.crc32(raw);
    const mode = file === 'dir' ? 0o040755 : 0o100644;

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(raw.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    parts.push(local, nameBuf, body);

    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE((3 << 8) | 20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt16LE(0x800, 8);
    entry.writeUInt16LE(deflate ? 8 : 0, 10);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(body.length, 20);
    entry.writeUInt32LE(raw.length, 24);
    entry.writeUInt16LE(nameBuf.length, 28);
    entry.writeUInt32LE((mode << 16) >>> 0, 38);
    entry.writeUInt32LE(offset, 42);
    central.push(entry, nameBuf);
    offset += local.length + nameBuf.length + body.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}

// ---------------------------------------------------------------- tests

const MODES_ACTION = `
const atLoad = {
  initParam: process.env.MY_INIT_PARAM,
  objectParam: process.env.MY_OBJECT_PARAM,
  nullParam: process.env.MY_NULL_PARAM,
  activationAtLoad: process.env.__OW_ACTIVATION_ID,
};
function main(params) {
  console.log('run ' + params.mode);
  console.error('run ' + params.mode);
  switch (params.mode) {
    case 'hello': return { payload: 'Hello, ' + params.name + '!' };
    case 'params': return { params };
    case 'owEnv': return {
      apiKey: process.env.__OW_API_KEY, namespace: process.env.__OW_NAMESPACE,
      actionName: process.env.__OW_ACTION_NAME, actionVersion: process.env.__OW_ACTION_VERSION,
      activationId: process.env.__OW_ACTIVATION_ID, transactionId: process.env.__OW_TRANSACTION_ID,
      deadline: process.env.__OW_DEADLINE, extra: process.env.__OW_EXTRA_KEY,
    };
    case 'atLoad': return atLoad;
    case 'appError': return { error: 'application says no' };
    case 'async': return new Promise((resolve) => setTimeout(() => resolve({ late: true }), 20));
    case 'rejectError': return Promise.reject(new Error('promise says no'));
    case 'rejectString': return Promise.reject('just a string');
    case 'rejectEmpty': return Promise.reject();
    case 'string': return 'not a dictionary';
    case 'array': return [1, 2];
    case 'nothing': return;
    case 'throw': throw new Error('kaboom');
  }
}`;

t.test('a plain action: results, parameters, environment, errors and log sentinels', async (t) => {
  const rt = await startRuntime(t);
  const init = await rt.post(
    '/init',
    initBody(MODES_ACTION, { env: { MY_INIT_PARAM: 'from-init', MY_OBJECT_PARAM: { a: 1 }, MY_NULL_PARAM: null } }),
  );
  t.same(init, { status: 200, body: { OK: true } }, 'init succeeds');

  const modes: string[] = [];
  let lastBody: { activation_id: string; transaction_id: string } | undefined;
  const run = async (mode: string, value: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => {
    modes.push(mode);
    lastBody = runBody({ mode, ...value }, extra);
    return rt.post('/run', lastBody);
  };

  t.same(await run('hello', { name: 'World' }), { status: 200, body: { payload: 'Hello, World!' } }, 'hello world');
  t.same(
    await run('params', { n: 1, nested: { list: [true, null] } }),
    { status: 200, body: { params: { mode: 'params', n: 1, nested: { list: [true, null] } } } },
    'parameters arrive as the value',
  );

  const owEnv = await run('owEnv', {}, { extra_key: 'extra-value', not_a_string: 7 });
  t.equal(owEnv.status, 200);
  const { deadline, ...owVars } = owEnv.body as Record<string, string>;
  t.match(deadline, /^\d{13}$/, '__OW_DEADLINE is the deadline');
  t.same(
    owVars,
    {
      apiKey: 'uuid:secret',
      namespace: 'guest',
      actionName: '/guest/test',
      actionVersion: '0.0.1',
      activationId: lastBody?.activation_id,
      transactionId: lastBody?.transaction_id,
      extra: 'extra-value',
    },
    'string keys of the run body are __OW_ variables',
  );
  const again = await run('owEnv');
  t.equal((again.body as { activationId: string }).activationId, lastBody?.activation_id, 'updated on every run');

  t.same(
    await run('atLoad'),
    {
      status: 200,
      body: { initParam: 'from-init', objectParam: '{"a":1}', nullParam: '' },
    },
    'init env is set before the code loads (objects as JSON, null as empty); no __OW_ run variables yet',
  );

  t.same(await run('appError'), { status: 200, body: { error: 'application says no' } }, 'application error');
  t.same(await run('async'), { status: 200, body: { late: true } }, 'a resolved promise');
  const rejected = await run('rejectError');
  t.equal(rejected.status, 200, 'a rejected promise is a 200');
  t.match(
    rejected.body,
    { error: { name: 'Error', message: 'promise says no', stack: /^Error: promise says no\n/ } },
    'with the serialized rejection as error',
  );
  t.same(await run('rejectString'), { status: 200, body: { error: 'just a string' } }, 'a rejected string');
  t.same(await run('rejectEmpty'), { status: 200, body: { error: {} } }, 'an empty rejection');
  t.same(
    await run('string'),
    { status: 502, body: { error: 'The action did not return a dictionary.' } },
    'a non-object result',
  );
  t.same(await run('array'), { status: 200, body: [1, 2] }, 'an array passes (typeof object, like upstream)');
  t.same(await run('nothing'), { status: 200, body: {} }, 'undefined becomes {}');

  t.same(
    await rt.post('/init', initBody('function main() { return {}; }')),
    { status: 403, body: { error: 'Cannot initialize the action more than once.' } },
    're-init refused',
  );

  t.same(
    await run('throw'),
    { status: 502, body: { error: 'An error has occurred: Error: kaboom' } },
    'a thrown error',
  );
  t.same(
    await rt.post('/run', runBody({ mode: 'hello' })),
    { status: 403, body: { error: 'System not ready, status is stopped.' } },
    'after a thrown error the runtime refuses runs, like upstream',
  );

  const logs = await rt.logsWhen((l) => sentinels(l.stdout) >= modes.length && sentinels(l.stderr) >= modes.length);
  t.equal(sentinels(logs.stdout), modes.length, 'one stdout sentinel per run, none for the good init');
  t.equal(sentinels(logs.stderr), modes.length, 'one stderr sentinel per run');
  const expected = modes.flatMap((m) => [`run ${m}`, SENTINEL]);
  const ours = (lines: string[]) => lines.filter((l) => l === SENTINEL || l.startsWith('run '));
  t.same(ours(logs.stdout), expected, 'stdout: each run its output, then its sentinel');
  t.same(ours(logs.stderr), expected, 'stderr: each run its output, then its sentinel');
  t.ok(
    logs.stderr.some((l) => l.startsWith('Result must be of type object but has type "string"')),
    'the non-object result is explained on stderr',
  );
});

t.test('before and around init: refusals, bad requests, exports.<main>', async (t) => {
  const rt = await startRuntime(t);
  t.same(
    await rt.post('/run', runBody({})),
    { status: 403, body: { error: 'System not initialized.' } },
    'run before init refused',
  );
  t.same(
    await rt.post('/init', { value: { main: 'main' } }),
    { status: 403, body: { error: 'Missing main/no code to execute.' } },
    'init without code refused',
  );
  t.same(await rt.send('POST', '/init', '{"value": '), { status: 500, body: { error: 'Bad request.' } }, 'bad JSON');
  t.same(await rt.send('POST', '/nowhere', '{}'), { status: 404, body: { error: 'Not found.' } }, 'unknown path');
  t.equal((await rt.send('GET', '/init')).status, 405, 'GET /init is not allowed');

  const init = await rt.post(
    '/init',
    initBody('exports.handler = (p) => ({ via: "exports", got: p.x });', { main: 'handler' }),
  );
  t.same(init, { status: 200, body: { OK: true } }, 'the runtime stays usable after refused requests');
  t.same(await rt.post('/run', runBody({ x: 42 })), { status: 200, body: { via: 'exports', got: 42 } }, 'exports.handler');
  const logs = await rt.logsWhen((l) => sentinels(l.stdout) >= 1 && sentinels(l.stderr) >= 1);
  t.equal(sentinels(logs.stdout), 1, 'refused requests write no sentinel');
  t.equal(sentinels(logs.stderr), 1);
});

t.test('module.exports.main is found as well', async (t) => {
  const rt = await startRuntime(t);
  t.same(await rt.post('/init', initBody('module.exports.main = async () => ({ via: "module.exports" });')), {
    status: 200,
    body: { OK: true },
  });
  t.same(await rt.post('/run', runBody({})), { status: 200, body: { via: 'module.exports' } });
});

t.test('a failed init answers 502 and ends the activation with both sentinels', async (t) => {
  const rt = await startRuntime(t);
  const init = await rt.post('/init', initBody('function main( {'));
  t.equal(init.status, 502);
  t.match(init.body, { error: /^Initialization has failed due to: SyntaxError/ });
  const logs = await rt.logsWhen((l) => sentinels(l.stdout) >= 1 && sentinels(l.stderr) >= 1);
  t.same(logs.stdout, [SENTINEL], 'stdout: the sentinel');
  t.match(logs.stderr[0], /^Error during initialization: /, 'stderr: the error first');
  t.equal(logs.stderr.at(-1), SENTINEL, 'stderr: then the sentinel');
  t.same(
    await rt.post('/run', runBody({})),
    { status: 403, body: { error: 'System not initialized.' } },
    'no run after a failed init',
  );
  t.same(
    await rt.post('/init', initBody('function main() { return {}; }')),
    { status: 403, body: { error: 'System not ready, status is stopped.' } },
    'no second init after a failed one',
  );
});

t.test('an entry point that is not a function fails init', async (t) => {
  const rt = await startRuntime(t);
  t.same(await rt.post('/init', initBody('function main() { return {}; }', { main: 'nope' })), {
    status: 502,
    body: { error: "Initialization has failed due to: Action entrypoint 'nope' is not a function." },
  });
});

const SLEEPER = `async function main(p) {
  const start = Date.now();
  await new Promise((resolve) => setTimeout(resolve, p.ms));
  return { start, end: Date.now() };
}`;

t.test('an overlapping run is refused without __OW_ALLOW_CONCURRENT', async (t) => {
  const rt = await startRuntime(t);
  t.equal((await rt.post('/init', initBody(SLEEPER))).status, 200);
  const first = rt.post('/run', runBody({ ms: 1000 }));
  await sleep(300);
  t.same(
    await rt.post('/run', runBody({ ms: 0 })),
    { status: 403, body: { error: 'System not ready, status is running.' } },
    'second run refused while the first runs',
  );
  t.equal((await first).status, 200, 'the first run completes');
  t.equal((await rt.post('/run', runBody({ ms: 0 }))).status, 200, 'the next run is accepted');
});

t.test('overlapping runs run in parallel with __OW_ALLOW_CONCURRENT=true', async (t) => {
  const rt = await startRuntime(t, { __OW_ALLOW_CONCURRENT: 'true' });
  t.equal((await rt.post('/init', initBody(SLEEPER))).status, 200);
  const [a, b] = await Promise.all([rt.post('/run', runBody({ ms: 700 })), rt.post('/run', runBody({ ms: 700 }))]);
  t.equal(a.status, 200);
  t.equal(b.status, 200);
  const ra = a.body as { start: number; end: number };
  const rb = b.body as { start: number; end: number };
  t.ok(ra.start < rb.end && rb.start < ra.end, 'the two runs overlapped in time');
  const logs = await rt.logsWhen((l) => sentinels(l.stdout) >= 2 && sentinels(l.stderr) >= 2);
  t.equal(sentinels(logs.stdout), 2, 'a sentinel per run');
  t.equal(sentinels(logs.stderr), 2);
});

t.test('a zip action with package.json "main", a subfolder and a deflated file', async (t) => {
  const rt = await startRuntime(t);
  const archive = zipArchive({
    'package.json': { data: JSON.stringify({ name: 'zipped', main: 'lib/entry.js' }) },
    'lib/': 'dir',
    'lib/entry.js': {
      data: `const helper = require('./helper.js');\nexports.main = (p) => ({ greeting: helper.greet(p.name), cwd: process.cwd() });\n`,
      deflate: true,
    },
    'lib/helper.js': { data: 'exports.greet = (n) => "zipped hello, " + n;\n' },
  });
  const init = await rt.post('/init', {
    value: { name: 'zipped', main: 'main', binary: true, code: archive.toString('base64') },
  });
  t.same(init, { status: 200, body: { OK: true } });
  const run = await rt.post('/run', runBody({ name: 'zip' }));
  t.equal(run.status, 200);
  t.match(run.body, { greeting: 'zipped hello, zip', cwd: /^\/tmp\/action-/ }, 'runs in the extracted folder');
});

t.test('a zip action as an ES module, with a "file.function" main', async (t) => {
  const rt = await startRuntime(t);
  const archive = zipArchive({
    'package.json': { data: JSON.stringify({ name: 'esm', type: 'module' }) },
    'handlers.js': { data: 'export async function hello(p) { return { esm: true, got: p.v }; }\n', deflate: true },
  });
  const init = await rt.post('/init', {
    value: { name: 'esm', main: 'handlers.hello', binary: true, code: archive.toString('base64') },
  });
  t.same(init, { status: 200, body: { OK: true } });
  t.same(await rt.post('/run', runBody({ v: 3 })), { status: 200, body: { esm: true, got: 3 } });
});

t.test('binary code that is no archive fails init with upstream text', async (t) => {
  // More archive cases, against every kind's image: nodejs-upstream-parity.test.ts.
  const rt = await startRuntime(t);
  t.same(
    await rt.post('/init', {
      value: { name: 'bad', main: 'main', binary: true, code: Buffer.from('not a zip').toString('base64') },
    }),
    {
      status: 502,
      body: {
        error:
          'Initialization has failed due to: There was an error uncompressing the action archive. The file type is unsupported',
      },
    },
  );
});
