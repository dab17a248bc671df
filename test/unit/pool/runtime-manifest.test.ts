/**
 * Runtime manifest parsing (upstream runtimes.json format) and the built-in manifest.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_NODEJS_IMAGE,
  defaultRuntimeManifest,
  parseMemoryMb,
  parseRuntimeManifest,
  readRuntimeManifestFile,
  RuntimeManifestError,
  UnknownKindError,
} from '../../../invoker/runtime-manifest.js';

const fixturePath = fileURLToPath(new URL('../../fixtures/runtimes.json', import.meta.url));
const fixture = readFileSync(fixturePath, 'utf8');

/** The error a parse throws, for asserting its path and message. */
function parseError(json: unknown): RuntimeManifestError {
  try {
    parseRuntimeManifest(typeof json === 'string' ? json : JSON.stringify(json), 'RUNTIMES_MANIFEST');
  } catch (error) {
    if (error instanceof RuntimeManifestError) return error;
    throw error;
  }
  throw new Error('expected a RuntimeManifestError');
}

const minimal = (kind: Record<string, unknown>): unknown => ({
  runtimes: { nodejs: [{ kind: 'nodejs:20', image: { name: 'n' }, ...kind }] },
});

t.test('parses the upstream-like fixture', async (t) => {
  const manifest = parseRuntimeManifest(fixture, 'runtimes.json');
  t.same([...manifest.kinds.keys()], ['nodejs:18', 'nodejs:20', 'python:3', 'java:8']);
  t.same(manifest.kinds.get('nodejs:20'), {
    kind: 'nodejs:20',
    family: 'nodejs',
    image: 'openwhisk/action-nodejs-v20:nightly',
    default: true,
    deprecated: false,
    stemCells: [
      { count: 2, memoryMb: 256 },
      { count: 1, memoryMb: 1024 },
    ],
  });
  t.equal(manifest.imageFor('java:8'), 'java8action', 'no prefix, no tag');
  t.same(manifest.blackboxes, ['openwhisk/dockerskeleton:nightly', 'registry.example.com/team/custom']);
  t.same(manifest.kinds.get('python:3')?.stemCells, [{ count: 1, memoryMb: 512 }], 'older "count" field');
});

t.test('resolveKind and imageFor: exact kinds and <family>:default', async (t) => {
  const manifest = parseRuntimeManifest(fixture);
  t.equal(manifest.resolveKind('nodejs:default').kind, 'nodejs:20');
  t.equal(manifest.resolveKind('nodejs:18').kind, 'nodejs:18');
  t.equal(manifest.imageFor('python:default'), 'openwhisk/action-python-v3.11:nightly');
  t.throws(() => manifest.resolveKind('go:1.21'), UnknownKindError);
  t.throws(() => manifest.resolveKind('ruby:default'), /unknown action kind "ruby:default" \(this invoker runs: nodejs:18, nodejs:20, python:3, java:8\)/);
});

t.test('stem cells flattened for the pool', async (t) => {
  const manifest = parseRuntimeManifest(fixture);
  t.same(manifest.stemCells(), [
    { kind: 'nodejs:20', image: 'openwhisk/action-nodejs-v20:nightly', memoryMb: 256, count: 2 },
    { kind: 'nodejs:20', image: 'openwhisk/action-nodejs-v20:nightly', memoryMb: 1024, count: 1 },
    { kind: 'python:3', image: 'openwhisk/action-python-v3.11:nightly', memoryMb: 512, count: 1 },
  ]);
});

t.test('reads a manifest file; a missing file names the path', async (t) => {
  const manifest = await readRuntimeManifestFile(fixturePath);
  t.equal(manifest.kinds.size, 4);
  await t.rejects(readRuntimeManifestFile('/nonexistent/runtimes.json'), {
    name: 'RuntimeManifestError',
    path: '/nonexistent/runtimes.json',
    message: /cannot read the file/,
  });
});

t.test('memory strings: upstream pattern, 1024-based units, whole MiB', async (t) => {
  t.equal(parseMemoryMb('256 MB', 'm'), 256);
  t.equal(parseMemoryMb('256MB', 'm'), 256);
  t.equal(parseMemoryMb('256 mb', 'm'), 256);
  t.equal(parseMemoryMb('256m', 'm'), 256);
  t.equal(parseMemoryMb('1 GB', 'm'), 1024);
  t.equal(parseMemoryMb('2g', 'm'), 2048);
  t.equal(parseMemoryMb('262144 KB', 'm'), 256);
  t.equal(parseMemoryMb('268435456 B', 'm'), 256);
  t.throws(() => parseMemoryMb('256 TB', 'x.memory'), /runtime manifest x\.memory: "256 TB": expected a size/);
  t.throws(() => parseMemoryMb('1000 KB', 'x.memory'), /not a whole number of MiB/);
  t.throws(() => parseMemoryMb('99999999999999999999 GB', 'x.memory'), /size too large/);
  t.throws(() => parseMemoryMb('0 MB', 'x.memory'), /greater than 0/);
  t.throws(() => parseMemoryMb(256, 'x.memory'), /expected a string, got a number/);
});

t.test('errors name the JSON path', async (t) => {
  const cases: [unknown, string, RegExp][] = [
    ['{not json', 'RUNTIMES_MANIFEST', /invalid JSON/],
    [[], 'RUNTIMES_MANIFEST', /expected an object, got an array/],
    [{}, 'RUNTIMES_MANIFEST.runtimes', /expected an object, got nothing/],
    [{ runtimes: { nodejs: {} } }, 'RUNTIMES_MANIFEST.runtimes.nodejs', /expected an array/],
    [{ runtimes: { nodejs: [{ image: { name: 'n' } }] } }, 'RUNTIMES_MANIFEST.runtimes.nodejs[0].kind', /expected a string, got nothing/],
    [minimal({ image: undefined }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].image', /expected an object/],
    [minimal({ image: { prefix: 'p' } }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].image.name', /expected a string/],
    [minimal({ image: { name: 'n', tag: 7 } }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].image.tag', /expected a string, got a number/],
    [minimal({ default: 'yes' }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].default', /expected a boolean/],
    [minimal({ stemCells: {} }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells', /expected an array/],
    [
      minimal({ stemCells: [{ initialCount: 1, memory: '256 MB' }, { initialCount: -1, memory: '256 MB' }] }),
      'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells[1].initialCount',
      /non-negative integer/,
    ],
    [minimal({ stemCells: [{ initialCount: 1, memory: 'lots' }] }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells[0].memory', /"lots": expected a size/],
    [minimal({ kind: 'nodejs:default' }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].kind', /reserved/],
    [
      { runtimes: { nodejs: [{ kind: 'nodejs:20', image: { name: 'a' } }], other: [{ kind: 'nodejs:20', image: { name: 'b' } }] } },
      'RUNTIMES_MANIFEST.runtimes.other[0].kind',
      /already defined in family "nodejs"/,
    ],
    [
      {
        runtimes: {
          nodejs: [
            { kind: 'nodejs:18', default: true, image: { name: 'a' } },
            { kind: 'nodejs:20', default: true, image: { name: 'b' } },
          ],
        },
      },
      'RUNTIMES_MANIFEST.runtimes.nodejs[1].default',
      /already has default kind "nodejs:18"/,
    ],
    [{ runtimes: {}, blackboxes: [{ prefix: 'p' }] }, 'RUNTIMES_MANIFEST.blackboxes[0].name', /expected a string/],
  ];
  for (const [json, path, message] of cases) {
    const error = parseError(json);
    t.equal(error.path, path, path);
    t.match(error.message, message, path);
    t.ok(error.message.startsWith(`runtime manifest ${path}: `), error.message);
  }
});

t.test('the built-in manifest: nodejs:20 from the project image, configurable stem cells', async (t) => {
  const manifest = defaultRuntimeManifest();
  t.equal(manifest.resolveKind('nodejs:default').kind, 'nodejs:20');
  t.equal(manifest.imageFor('nodejs:20'), DEFAULT_NODEJS_IMAGE);
  t.equal(DEFAULT_NODEJS_IMAGE, 'whisk/action-nodejs-v20:local');
  t.equal(manifest.imageFor('nodejs:24'), 'whisk/action-nodejs-v24:local', 'nodejs:24 is built in too');
  t.same([...manifest.kinds.keys()], ['nodejs:20', 'nodejs:24']);
  t.same(manifest.blackboxes, []);
  t.same(manifest.stemCells(), [{ kind: 'nodejs:20', image: DEFAULT_NODEJS_IMAGE, memoryMb: 256, count: 1 }]);

  const custom = defaultRuntimeManifest({ image: 'registry/x:1', stemCells: [{ count: 3, memoryMb: 128 }] });
  t.same(custom.stemCells(), [{ kind: 'nodejs:20', image: 'registry/x:1', memoryMb: 128, count: 3 }]);
  t.same(defaultRuntimeManifest({ stemCells: [{ count: 0, memoryMb: 256 }] }).stemCells(), [], 'count 0: no prewarming');
  t.throws(() => defaultRuntimeManifest({ stemCells: [{ count: 1, memoryMb: 0 }] }), RuntimeManifestError);
});
