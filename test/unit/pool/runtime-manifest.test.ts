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

const MIB = 1024 * 1024;
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
    attached: true,
    requireMain: false,
    stemCells: [
      { count: 2, memoryMb: 256, memoryBytes: 256 * MIB },
      { count: 1, memoryMb: 1024, memoryBytes: 1024 * MIB },
    ],
  });
  t.equal(manifest.imageFor('java:8'), 'java8action', 'no prefix, no tag');
  t.same(manifest.blackboxes, ['openwhisk/dockerskeleton:nightly', 'registry.example.com/team/custom']);
  t.same(manifest.kinds.get('python:3')?.stemCells, [{ count: 1, memoryMb: 512, memoryBytes: 512 * MIB }], 'older "count" field');
  t.match(manifest.kinds.get('java:8'), { attached: true, requireMain: true });
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
    { kind: 'nodejs:20', image: 'openwhisk/action-nodejs-v20:nightly', memoryMb: 256, memoryBytes: 256 * MIB, count: 2 },
    { kind: 'nodejs:20', image: 'openwhisk/action-nodejs-v20:nightly', memoryMb: 1024, memoryBytes: 1024 * MIB, count: 1 },
    { kind: 'python:3', image: 'openwhisk/action-python-v3.11:nightly', memoryMb: 512, memoryBytes: 512 * MIB, count: 1 },
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
    [{ runtimes: [] }, 'RUNTIMES_MANIFEST.runtimes', /expected an object, got an array/],
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
      /must be positive, got -1/,
    ],
    [minimal({ stemCells: [{ initialCount: 1, memory: 'lots' }] }), 'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells[0].memory', /"lots": expected a size/],
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
  t.same(manifest.stemCells(), [{ kind: 'nodejs:20', image: DEFAULT_NODEJS_IMAGE, memoryMb: 256, memoryBytes: 256 * MIB, count: 1 }]);

  const custom = defaultRuntimeManifest({ image: 'registry/x:1', stemCells: [{ count: 3, memoryMb: 128 }] });
  t.same(custom.stemCells(), [{ kind: 'nodejs:20', image: 'registry/x:1', memoryMb: 128, memoryBytes: 128 * MIB, count: 3 }]);
  t.same(defaultRuntimeManifest({ stemCells: [{ count: 0, memoryMb: 256 }] }).stemCells(), [], 'count 0: no prewarming');
  t.throws(() => defaultRuntimeManifest({ stemCells: [{ count: 1, memoryMb: 0 }] }), RuntimeManifestError);
});

// Upstream's rules (ExecManifest.scala: Runtimes.defaultRuntimes,
// resolveDefaultRuntime, StemCell, ReactivePrewarmingConfig; Size.scala ByteSize).

const family = (...kinds: Record<string, unknown>[]): unknown => ({
  runtimes: { nodejs: kinds.map((k) => ({ image: { name: 'n' }, ...k })) },
});

t.test('a family of one kind without a default flag: <family>:default resolves to it', async (t) => {
  const manifest = parseRuntimeManifest(JSON.stringify(family({ kind: 'nodejs:22' })));
  t.equal(manifest.resolveKind('nodejs:default').kind, 'nodejs:22');
  t.equal(manifest.resolveKind('nodejs:22').kind, 'nodejs:22');
  const explicitFalse = parseRuntimeManifest(JSON.stringify(family({ kind: 'nodejs:22', default: false })));
  t.equal(explicitFalse.resolveKind('nodejs:default').kind, 'nodejs:22', 'default: false is no default flag either');
});

t.test('families upstream refuses: several kinds and no default, no kinds, several defaults', async (t) => {
  const several = parseError(family({ kind: 'nodejs:20' }, { kind: 'nodejs:22', default: false }));
  t.equal(several.path, 'RUNTIMES_MANIFEST.runtimes.nodejs');
  t.match(several.message, /family "nodejs" has multiple versions, but no default/);
  t.match(parseError({ runtimes: { nodejs: [] } }).message, /family "nodejs" has no kinds, so no default/);
  t.match(parseError(family({ kind: 'nodejs:20', default: true }, { kind: 'nodejs:22', default: true })).message, /already has default kind "nodejs:20"/);
});

t.test('<family>:default only for families of [a-z0-9]+, as upstream defaultSplitter; no runtimes is no kinds', async (t) => {
  const manifest = parseRuntimeManifest(JSON.stringify({ runtimes: { 'my-lang': [{ kind: 'my-lang:1', image: { name: 'm' } }] } }));
  t.equal(manifest.resolveKind('my-lang:1').kind, 'my-lang:1');
  t.throws(() => manifest.resolveKind('my-lang:default'), UnknownKindError, 'not resolvable, as upstream');
  const odd = parseRuntimeManifest(JSON.stringify(family({ kind: 'nodejs:20', default: true }, { kind: 'nodejs:default' })));
  t.equal(odd.resolveKind('nodejs:default').kind, 'nodejs:20', 'a kind literally named nodejs:default is shadowed by the family default');
  t.equal(parseRuntimeManifest('{"blackboxes": []}').kinds.size, 0);
});

t.test('stem cells: initialCount 0 and missing fields refused, any byte-size unit accepted', async (t) => {
  const cell = (c: Record<string, unknown>) => minimal({ stemCells: [c] });
  const at = 'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells[0]';
  const refused: [unknown, string, RegExp][] = [
    [cell({ initialCount: 0, memory: '256 MB' }), `${at}.initialCount`, /must be positive, got 0/],
    [cell({ count: 0, memory: '256 MB' }), `${at}.count`, /must be positive, got 0/],
    [cell({ initialCount: 1.5, memory: '256 MB' }), `${at}.initialCount`, /expected an integer/],
    [cell({ memory: '256 MB' }), `${at}.initialCount`, /is required/],
    [cell({ initialCount: 1 }), `${at}.memory`, /is required/],
    [cell({ initialCount: 1, memory: '1000 KB' }), `${at}.memory`, /less than 1 MB/],
    [cell({ initialCount: 1, memory: 256 }), `${at}.memory`, /expected a string/],
  ];
  for (const [json, path, message] of refused) {
    const error = parseError(json);
    t.equal(error.path, path, path);
    t.match(error.message, message, String(message));
  }
  const sizes: [string, number, number][] = [
    ['300000 KB', 292, 300000 * 1024],
    ['256 MB', 256, 256 * MIB],
    ['256m', 256, 256 * MIB],
    ['1g', 1024, 1024 * MIB],
    ['268435456 B', 256, 256 * MIB],
    ['1048577 B', 1, MIB + 1],
  ];
  for (const [memory, memoryMb, memoryBytes] of sizes) {
    const manifest = parseRuntimeManifest(JSON.stringify(cell({ initialCount: 1, memory })));
    t.same(manifest.kinds.get('nodejs:20')?.stemCells, [{ count: 1, memoryMb, memoryBytes }], memory);
  }
  t.same(parseRuntimeManifest(JSON.stringify(cell({ initialCount: 2, memory: '300000 KB' }))).stemCells(), [
    { kind: 'nodejs:20', image: 'n', memoryMb: 292, memoryBytes: 300000 * 1024, count: 2 },
  ]);
});

t.test('reactive prewarming config: validated as upstream ReactivePrewarmingConfig', async (t) => {
  const reactive = (r: Record<string, unknown>) =>
    minimal({ stemCells: [{ initialCount: 1, memory: '256 MB', reactive: { minCount: 1, maxCount: 4, ttl: '2 minutes', threshold: 1, increment: 1, ...r } }] });
  const at = 'RUNTIMES_MANIFEST.runtimes.nodejs[0].stemCells[0].reactive';
  t.ok(parseRuntimeManifest(JSON.stringify(reactive({}))), 'upstream\'s own example');
  for (const ttl of ['30 s', '1.5 hours', '100ms', '1 day', '500 milliseconds']) t.ok(parseRuntimeManifest(JSON.stringify(reactive({ ttl }))), ttl);
  const refused: [Record<string, unknown>, string, RegExp][] = [
    [{ minCount: 5 }, `${at}.minCount`, /at most maxCount/],
    [{ minCount: -1 }, `${at}.minCount`, /at least 0/],
    [{ maxCount: 0, minCount: 0, increment: 0 }, `${at}.maxCount`, /must be positive/],
    [{ ttl: '0 seconds' }, `${at}.ttl`, /must be positive/],
    [{ ttl: '2 fortnights' }, `${at}.ttl`, /expected a duration/],
    [{ ttl: 120 }, `${at}.ttl`, /expected a string/],
    [{ threshold: 0 }, `${at}.threshold`, /must be positive/],
    [{ increment: 5 }, `${at}.increment`, /at most maxCount/],
    [{ increment: undefined }, `${at}.increment`, /is required/],
  ];
  for (const [r, path, message] of refused) {
    const error = parseError(reactive(r));
    t.equal(error.path, path, `${JSON.stringify(r)}: ${path}`);
    t.match(error.message, message, JSON.stringify(r));
  }
});

t.test("upstream's own ansible/files/runtimes.json loads and resolves as upstream resolves it", async (t) => {
  // test/fixtures/upstream-runtimes.json: apache/openwhisk ansible/files/runtimes.json
  // at commit 5d826dd6e1cbfe8d38fdf4b537e4e5e24bf21a22, unmodified.
  const path = fileURLToPath(new URL('../../fixtures/upstream-runtimes.json', import.meta.url));
  const manifest = await readRuntimeManifestFile(path);
  t.same([...manifest.kinds.keys()], [
    'nodejs:12', 'nodejs:14', 'python:3', 'swift:5.1', 'swift:5.3', 'swift:5.4', 'java:8',
    'php:7.3', 'php:7.4', 'php:8.0', 'ruby:2.5', 'go:1.15', 'dotnet:2.2', 'dotnet:3.1', 'rust:1.34',
  ]);
  const defaults: Record<string, string> = {
    nodejs: 'nodejs:14', python: 'python:3', swift: 'swift:5.3', java: 'java:8', php: 'php:7.4',
    ruby: 'ruby:2.5', go: 'go:1.15', dotnet: 'dotnet:2.2', rust: 'rust:1.34',
  };
  for (const [family, kind] of Object.entries(defaults)) t.equal(manifest.resolveKind(`${family}:default`).kind, kind, `${family}:default`);
  t.equal(manifest.imageFor('nodejs:default'), 'openwhisk/action-nodejs-v14:nightly');
  t.equal(manifest.imageFor('go:1.15'), 'openwhisk/action-golang-v1.15:nightly');
  t.ok([...manifest.kinds.values()].every((k) => k.attached), 'every upstream kind stores its code as an attachment');
  t.same(
    [...manifest.kinds.values()].filter((k) => k.requireMain).map((k) => k.kind),
    ['java:8', 'dotnet:2.2', 'dotnet:3.1'],
  );
  t.same(manifest.stemCells(), [{ kind: 'nodejs:14', image: 'openwhisk/action-nodejs-v14:nightly', memoryMb: 256, memoryBytes: 256 * MIB, count: 2 }]);
  t.same(manifest.blackboxes, ['openwhisk/dockerskeleton:nightly']);
  t.throws(() => manifest.resolveKind('nodejs:20'), UnknownKindError);
});
