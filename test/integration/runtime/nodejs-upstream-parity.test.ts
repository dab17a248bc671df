/**
 * Where upstream's Node.js runtime (apache/openwhisk-runtime-nodejs) is
 * observable to an action, ours behaves the same, in each built-in kind's
 * image: zip and tar.gz archives made by the usual tools, upstream's archive
 * error texts, the bundled `openwhisk` client configured from the
 * environment, and the process environment.
 */
import t, { type Test } from 'tap';
import { Agent } from 'undici';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  RUNTIME_IMAGES,
  SENTINEL,
  ensureImages,
  ensureNetwork,
  runBody,
  sentinels,
  startRuntime,
  type Runtime,
} from './harness.js';

await ensureImages();
await ensureNetwork();

const agent = new Agent();
t.teardown(() => agent.close());

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'whisk-parity-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

/** Writes `files` (and symlinks) into a fresh folder and returns it. */
function tree(files: Record<string, string | { data: string; mode: number } | { link: string }>): string {
  const dir = fs.mkdtempSync(path.join(work, 'src-'));
  for (const [name, file] of Object.entries(files)) {
    const target = path.join(dir, name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    if (typeof file === 'string') fs.writeFileSync(target, file);
    else if ('link' in file) fs.symlinkSync(file.link, target);
    else fs.writeFileSync(target, file.data, { mode: file.mode });
  }
  return dir;
}

/** `tar czf` of the folder's contents, as `cd dir && tar czf action.tgz .` writes it (entries `./...`). */
function tarGz(dir: string): Buffer {
  const out = path.join(work, `${path.basename(dir)}.tgz`);
  execFileSync('tar', ['-czf', out, '-C', dir, '.']);
  return fs.readFileSync(out);
}

/** `zip -r -y` (symbolic links stored as links) of the folder's contents, as the OpenWhisk docs package actions. */
function zip(dir: string): Buffer {
  const out = path.join(work, `${path.basename(dir)}.zip`);
  execFileSync('zip', ['-q', '-r', '-y', out, '.'], { cwd: dir });
  return fs.readFileSync(out);
}

// Archives with names that `zip` and `tar` would not write, made by Python's
// zipfile and tarfile, which store names as given.
const CRAFT = `
import io, json, sys, tarfile, zipfile
kind, out, entries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if kind == 'zip':
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        for name, data in entries: z.writestr(name, data)
else:
    with tarfile.open(out, 'w:gz') as t:
        for name, data in entries:
            info = tarfile.TarInfo(name); info.size = len(data.encode()); t.addfile(info, io.BytesIO(data.encode()))
`;

function crafted(kind: 'zip' | 'tar.gz', entries: Array<[string, string]>): Buffer {
  const out = path.join(work, `crafted-${Math.random().toString(36).slice(2)}.${kind}`);
  execFileSync('python3', ['-c', CRAFT, kind, out, JSON.stringify(entries)]);
  return fs.readFileSync(out);
}

// Lists the extracted folder, and whether anything landed beside it.
const LISTING_ACTION = `
const fs = require('fs');
exports.main = () => ({
  files: fs.readdirSync('.', { recursive: true }).sort(),
  outside: ['/tmp/up.js', '/tmp/b.js', '/abs.js'].filter((f) => fs.existsSync(f)),
});
`;

function archiveInit(archive: Buffer, main = 'main') {
  return { value: { name: 'archived', main, binary: true, code: archive.toString('base64') } };
}

function plainInit(code: string) {
  return { value: { name: 'plain', main: 'main', binary: false, code } };
}

// Both archive kinds carry the same action: package.json "main" in a
// subfolder, a helper beside it, an executable file, a symbolic link, and the
// bundled client, which the action's own node_modules would shadow.
const ARCHIVED_ACTION = {
  'package.json': JSON.stringify({ name: 'archived', main: 'lib/entry.js' }),
  'lib/entry.js': `
const fs = require('fs');
const helper = require('./helper.js');
exports.main = (p) => ({
  greeting: helper.greet(p.name),
  cwd: process.cwd(),
  toolMode: (fs.statSync('bin/tool').mode & 0o777).toString(8),
  linked: fs.readFileSync('lib/alias.js', 'utf8'),
  openwhisk: typeof require('openwhisk'),
  openwhiskFrom: require.resolve('openwhisk'),
});
`,
  'lib/helper.js': 'exports.greet = (n) => "archived hello, " + n;\n',
  'lib/alias.js': { link: 'helper.js' },
  'bin/tool': { data: '#!/bin/sh\necho tool\n', mode: 0o755 },
};

async function expectArchivedAction(t: Test, rt: Runtime, archive: Buffer): Promise<void> {
  t.same(await rt.post('/init', archiveInit(archive)), { status: 200, body: { OK: true } }, 'init succeeds');
  const run = await rt.post('/run', runBody({ name: 'there' }));
  t.equal(run.status, 200, 'the run succeeds');
  t.match(
    run.body,
    {
      greeting: 'archived hello, there',
      cwd: /^\/tmp\/action-/,
      toolMode: '755',
      linked: 'exports.greet = (n) => "archived hello, " + n;\n',
      openwhisk: 'function',
      openwhiskFrom: '/node_modules/openwhisk/lib/main.js',
    },
    'runs in the extracted folder, with modes and links kept, and finds the bundled client',
  );
}

// The three texts of upstream's runner.js (apache/openwhisk-runtime-nodejs
// core/nodejsActionBase/runner.js with pull request #235's tar.gz support,
// detectFileType and extractInTmpDir), behind service.js's
// "Initialization has failed due to: " (core/nodejsActionBase/src/service.js).
const UNSUPPORTED = 'There was an error uncompressing the action archive. The file type is unsupported';
const BAD_ZIP = 'There was an error uncompressing the action Zip archive.';
const BAD_TAR_GZ = 'There was an error uncompressing the action Tar GZ archive.';

async function expectInitFailure(t: Test, rt: Runtime, archive: Buffer, text: string): Promise<void> {
  t.same(
    await rt.post('/init', archiveInit(archive)),
    { status: 502, body: { error: `Initialization has failed due to: ${text}` } },
    'upstream text',
  );
  const logs = await rt.logsWhen((l) => sentinels(l.stdout) >= 1 && sentinels(l.stderr) >= 1);
  t.same(logs.stdout, [SENTINEL], 'stdout: the sentinel alone');
  // service.js's own line, then the markers; nothing of ours besides.
  t.same(logs.stderr, [`Error during initialization: ${text}`, SENTINEL], 'stderr: upstream\'s line and the sentinel alone');
}

const OPENWHISK_ACTION = `
async function main(params) {
  const openwhisk = require('openwhisk');
  const ow = openwhisk();
  const result = {
    version: require('openwhisk/package.json').version,
    from: require.resolve('openwhisk'),
    invoke: typeof ow.actions.invoke,
    api: ow.actions.client.options.api,
    apiKey: ow.actions.client.options.apiKey,
    apiHost: process.env.__OW_API_HOST,
    owApiKey: process.env.__OW_API_KEY,
  };
  if (params.call) {
    // A real request to __OW_API_HOST: here this runtime itself, which has no
    // such path; the client reports the answer it got.
    try {
      await ow.actions.list();
      result.listed = 'resolved';
    } catch (e) {
      result.listed = { statusCode: e.statusCode, message: e.message };
    }
  }
  return result;
}`;

const ENVIRONMENT_ACTION = `
function main() {
  const fs = require('fs');
  const os = require('os');
  fs.writeFileSync(os.homedir() + '/.written-by-the-action', 'ok');
  return {
    HOME: process.env.HOME,
    PATH: process.env.PATH,
    NODE_VERSION: process.env.NODE_VERSION,
    node: process.versions.node,
    homedir: os.homedir(),
    homeWritable: fs.readFileSync(os.homedir() + '/.written-by-the-action', 'utf8'),
    cwd: process.cwd(),
  };
}`;

for (const { kind, image } of RUNTIME_IMAGES) {
  t.test(`${kind} (${image})`, async (t) => {
    t.test('a tar.gz action made by tar', async (t) => {
      const archive = tarGz(tree(ARCHIVED_ACTION));
      t.equal(archive.subarray(0, 2).toString('hex'), '1f8b', 'the fixture is a gzip file');
      await expectArchivedAction(t, await startRuntime(t, agent, image), archive);
    });

    t.test('a zip action made by zip', async (t) => {
      const archive = zip(tree(ARCHIVED_ACTION));
      await expectArchivedAction(t, await startRuntime(t, agent, image), archive);
    });

    t.test("an archive's own node_modules comes before the bundled packages", async (t) => {
      const archive = zip(
        tree({
          'index.js': "exports.main = () => ({ openwhisk: require('openwhisk') });\n",
          'node_modules/openwhisk/index.js': "module.exports = 'the action\\'s own';\n",
        }),
      );
      const rt = await startRuntime(t, agent, image);
      t.same(await rt.post('/init', archiveInit(archive)), { status: 200, body: { OK: true } });
      t.same(await rt.post('/run', runBody({})), { status: 200, body: { openwhisk: "the action's own" } });
    });

    t.test('entry names as unzip and GNU tar treat them', async (t) => {
      // unzip 6 drops `..` components (exit status 0): the entries land inside.
      const dotdot = crafted('zip', [
        ['index.js', LISTING_ACTION],
        ['../up.js', ''],
        ['a/../../b.js', ''],
      ]);
      let rt = await startRuntime(t, agent, image);
      t.same(await rt.post('/init', archiveInit(dotdot)), { status: 200, body: { OK: true } }, 'zip with ..: init succeeds');
      t.same(
        await rt.post('/run', runBody({})),
        { status: 200, body: { files: ['a', 'a/b.js', 'index.js', 'up.js'], outside: [] } },
        'zip with ..: every entry inside the folder',
      );

      // An absolute name: unzip strips it but exits 1, which fails upstream's init.
      const absolute = crafted('zip', [
        ['index.js', LISTING_ACTION],
        ['/abs.js', ''],
      ]);
      rt = await startRuntime(t, agent, image);
      t.same(
        await rt.post('/init', archiveInit(absolute)),
        { status: 502, body: { error: `Initialization has failed due to: ${BAD_ZIP}` } },
        'zip with an absolute name: refused',
      );

      // GNU tar strips a leading / with a warning only (exit status 0)...
      const tarAbsolute = crafted('tar.gz', [
        ['index.js', LISTING_ACTION],
        ['/abs.js', ''],
      ]);
      rt = await startRuntime(t, agent, image);
      t.same(await rt.post('/init', archiveInit(tarAbsolute)), { status: 200, body: { OK: true } }, 'tar.gz with /: init succeeds');
      t.same(
        await rt.post('/run', runBody({})),
        { status: 200, body: { files: ['abs.js', 'index.js'], outside: [] } },
        'tar.gz with /: the entry inside the folder',
      );

      // ...but skips a member with `..` and exits 2, which fails upstream's init.
      const tarDotdot = crafted('tar.gz', [
        ['index.js', LISTING_ACTION],
        ['../up.js', ''],
      ]);
      rt = await startRuntime(t, agent, image);
      t.same(
        await rt.post('/init', archiveInit(tarDotdot)),
        { status: 502, body: { error: `Initialization has failed due to: ${BAD_TAR_GZ}` } },
        'tar.gz with ..: refused',
      );
    });

    t.test('not an archive', async (t) => {
      await expectInitFailure(t, await startRuntime(t, agent, image), Buffer.from('function main() {}'), UNSUPPORTED);
    });

    t.test('a corrupt zip', async (t) => {
      const good = zip(tree(ARCHIVED_ACTION));
      // The local header's signature, then the archive cut short of its central directory.
      const corrupt = good.subarray(0, Math.floor(good.length / 2));
      await expectInitFailure(t, await startRuntime(t, agent, image), corrupt, BAD_ZIP);
    });

    t.test('a corrupt tar.gz', async (t) => {
      const good = tarGz(tree(ARCHIVED_ACTION));
      const corrupt = good.subarray(0, Math.floor(good.length / 2));
      await expectInitFailure(t, await startRuntime(t, agent, image), corrupt, BAD_TAR_GZ);
    });

    t.test("require('openwhisk') is configured from __OW_API_HOST and __OW_API_KEY", async (t) => {
      // The invoker puts __OW_API_HOST in the container's environment (as
      // upstream's DockerContainerFactory does); api_key comes with every run.
      // The host is the runtime itself, so that the client's request stays in the container.
      const apiHost = 'http://127.0.0.1:8080';
      const rt = await startRuntime(t, agent, image, { __OW_API_HOST: apiHost });
      t.same(await rt.post('/init', plainInit(OPENWHISK_ACTION)), { status: 200, body: { OK: true } });

      const run = await rt.post('/run', runBody({ call: true }, { api_key: 'user:password' }));
      t.equal(run.status, 200);
      t.same(
        run.body,
        {
          version: '3.21.9',
          from: '/node_modules/openwhisk/lib/main.js',
          invoke: 'function',
          api: `${apiHost}/api/v1/`,
          apiKey: 'user:password',
          apiHost,
          owApiKey: 'user:password',
          listed: {
            statusCode: 404,
            // The namespace is __OW_NAMESPACE, from the run body's namespace.
            message: `GET ${apiHost}/api/v1/namespaces/guest/actions Returned HTTP 404 (Not Found) --> "Not found."`,
          },
        },
        'the client is built from the environment and sends its requests to __OW_API_HOST',
      );

      // Upstream's service.js turns every string key of the /run body into __OW_<KEY>, api_host too.
      const other = await rt.post('/run', runBody({}, { api_host: 'https://other.example', api_key: 'other:key' }));
      t.match(
        other.body,
        { api: 'https://other.example/api/v1/', apiKey: 'other:key', apiHost: 'https://other.example' },
        'a run body api_host becomes __OW_API_HOST',
      );
    });

    t.test('HOME, PATH and NODE_VERSION', async (t) => {
      const rt = await startRuntime(t, agent, image);
      t.same(await rt.post('/init', plainInit(ENVIRONMENT_ACTION)), { status: 200, body: { OK: true } });
      const run = await rt.post('/run', runBody({}));
      t.equal(run.status, 200);
      const body = run.body as Record<string, string>;
      // Upstream's image is node:20-bullseye (core/nodejs20Action/Dockerfile): Debian's PATH,
      // and NODE_VERSION set by the node image (nodejs/docker-node 20/bullseye/Dockerfile).
      t.equal(body.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'PATH as upstream');
      t.equal(body.NODE_VERSION, body.node, 'NODE_VERSION is the running version, as upstream');
      // Upstream runs as root with HOME=/root; here the action is unprivileged and
      // /tmp is the folder that is writable even on a read-only root filesystem.
      t.equal(body.HOME, '/tmp', 'HOME is /tmp (documented deviation)');
      t.equal(body.homedir, '/tmp');
      t.equal(body.homeWritable, 'ok', 'and writable');
      t.equal(body.cwd, '/nodejsAction', 'plain actions start in /nodejsAction, as upstream');
    });
  });
}
