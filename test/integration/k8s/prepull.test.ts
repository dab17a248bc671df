/**
 * The pre-pull step of the Kubernetes init container (invoker/prepull.ts),
 * against the real Docker engine: images already present are left alone,
 * one that cannot be pulled is reported by name, and the image list comes
 * from the same runtime-manifest settings the invoker reads.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerEngine } from '../../../invoker/docker/docker-engine.js';
import { manifestFromEnvironment, manifestImages, prepullImages } from '../../../invoker/prepull.js';
import { testEnvironment } from '../../helpers/env.js';

const env = testEnvironment();
// A registry on a loopback port nobody listens on: the pull fails at once, locally.
const unpullable = '127.0.0.1:9/whisk/no-such-runtime:prepull-test';

function manifestJson(images: { kind: string; prefix: string; name: string; tag: string }[]): string {
  return JSON.stringify({
    runtimes: {
      nodejs: images.map((image, index) => ({
        kind: image.kind,
        default: index === 0,
        image: { prefix: image.prefix, name: image.name, tag: image.tag },
        deprecated: false,
        attached: { attachmentName: 'codefile', attachmentType: 'text/plain' },
      })),
    },
    blackboxes: [],
  });
}

t.test('the image list comes from RUNTIMES_MANIFEST, else RUNTIMES_MANIFEST_FILE, else the built-in kinds', async (t) => {
  const json = manifestJson([
    { kind: 'nodejs:20', prefix: 'registry.example.com/whisk', name: 'action-nodejs-v20', tag: '1' },
    { kind: 'nodejs:22', prefix: 'registry.example.com/whisk', name: 'action-nodejs-v20', tag: '1' },
    { kind: 'nodejs:24', prefix: 'registry.example.com/whisk', name: 'action-nodejs-v24', tag: '1' },
  ]);
  t.same(manifestImages(manifestFromEnvironment({ RUNTIMES_MANIFEST: json })), [
    'registry.example.com/whisk/action-nodejs-v20:1',
    'registry.example.com/whisk/action-nodejs-v24:1',
  ], 'each image once');
  const dir = mkdtempSync(join(tmpdir(), 'prepull-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'runtimes.json');
  writeFileSync(file, manifestJson([{ kind: 'nodejs:20', prefix: 'r', name: 'n', tag: 't' }]));
  t.same(manifestImages(manifestFromEnvironment({ RUNTIMES_MANIFEST_FILE: file })), ['r/n:t']);
  t.same(manifestImages(manifestFromEnvironment({ ACTION_IMAGE_NODEJS20: 'a:20', ACTION_IMAGE_NODEJS24: 'a:24' })).sort(), ['a:20', 'a:24']);
});

t.test('present images are left alone, an unpullable one is named', async (t) => {
  const result = await prepullImages([env.actionImageNodejs, unpullable], new DockerEngine());
  t.same(result.present, [env.actionImageNodejs]);
  t.same(result.pulled, []);
  t.equal(result.failed.length, 1);
  t.equal(result.failed[0]?.image, unpullable);
});

t.test('the command exits 1 naming the image it could not pull, 0 when all are there', async (t) => {
  const [prefix, rest] = [env.actionImageNodejs.slice(0, env.actionImageNodejs.lastIndexOf('/')), env.actionImageNodejs.slice(env.actionImageNodejs.lastIndexOf('/') + 1)];
  const [name, tag] = rest.split(':') as [string, string];
  const run = (manifest: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'invoker/prepull.ts'], {
      encoding: 'utf8',
      env: { ...process.env, RUNTIMES_MANIFEST: manifest },
    });
  const ok = run(manifestJson([{ kind: 'nodejs:20', prefix, name, tag }]));
  t.equal(ok.status, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout.trim()), { event: 'prepull', present: [env.actionImageNodejs], failed: [] });
  const failing = run(manifestJson([{ kind: 'nodejs:20', prefix: '127.0.0.1:9/whisk', name: 'no-such-runtime', tag: 'prepull-test' }]));
  t.equal(failing.status, 1);
  t.match(failing.stderr, `prepull: could not pull ${unpullable}`);
  const bad = run('{"runtimes": 3}');
  t.equal(bad.status, 2);
  t.match(bad.stderr, /prepull: cannot read the runtime manifest/);
});
