/**
 * Runtime manifests with upstream's rules, through a real invoker with real
 * containers: a family of one kind without a `default` flag resolves
 * `<family>:default`, a stem cell sized in KB is created (rounded down to
 * whole MiB, as upstream's ByteSize.toMB) but, as upstream's, serves no
 * action whose limit is not that exact size, and manifests upstream refuses
 * stop the invoker at startup.
 */
import t from 'tap';
import { InvokerTestbed } from '../../helpers/invoker-harness.js';
import { putUpstreamAction, smallTextCode } from '../../fixtures/upstream-action-docs.js';
import { activationOf, annotation, eventually, hasAnnotation, poolOf } from './helpers.js';
import { removeContainersAtTeardown } from '../transport/helpers.js';

/** Our Node.js runtime image as an upstream ImageName. */
function imageOf(reference: string): Record<string, string> {
  const match = /^(?:(.*)\/)?([^/:]+)(?::([^/]+))?$/.exec(reference);
  if (match === null) throw new Error(`cannot split image ${reference}`);
  return { ...(match[1] ? { prefix: match[1] } : {}), name: match[2] as string, ...(match[3] ? { tag: match[3] } : {}) };
}

t.test('one kind, no default flag, a 300000 KB stem cell: nodejs:default runs, the stem cell waits', async (t) => {
  const bed = new InvokerTestbed(t);
  removeContainersAtTeardown(t, bed.invokerId);
  await bed.createDatabases();
  const manifest = {
    runtimes: {
      nodejs: [{ kind: 'nodejs:20', image: imageOf(bed.env.actionImageNodejs), stemCells: [{ initialCount: 1, memory: '300000 KB' }] }],
    },
  };
  const invoker = await bed.start({ RUNTIMES_MANIFEST: JSON.stringify(manifest) });
  const prewarmed = await eventually('the stem cell', () => poolOf(invoker), (pool) => pool.some((c) => c.state === 'prewarm'), 60_000);
  t.match(prewarmed.find((c) => c.state === 'prewarm'), { kind: 'nodejs:20', memoryMb: 292 }, '300000 KB is 292 MiB rounded down');

  const stored = await putUpstreamAction(bed.couchdbUrl, bed.whisksDb, {
    namespace: 'guest',
    name: 'defaulted',
    exec: { kind: 'nodejs:default', code: smallTextCode('defaulted') },
    limits: { memory: 292 },
  });
  const message = bed.message({ name: 'defaulted', rev: stored.rev }, { content: { name: 'manifest' } });
  const activation = activationOf((await invoker.invoke(message)).ack);
  t.same(activation.response.result, { form: 'defaulted', echo: 'manifest' }, 'nodejs:default is the lone kind');
  t.equal(annotation(activation, 'kind'), 'nodejs:20', 'recorded as the real kind');
  t.ok(hasAnnotation(activation, 'initTime'), 'initialized');
  const pool = await poolOf(invoker);
  t.equal(pool.filter((c) => c.state === 'prewarm').length, 1, 'the stem cell was not taken: a 292 MB action is not 300000 KB (upstream ByteSize equality)');
});

t.test('manifests upstream refuses stop the invoker at startup', async (t) => {
  const bed = new InvokerTestbed(t);
  await bed.createDatabases();
  const image = imageOf(bed.env.actionImageNodejs);
  const refused: Array<[string, unknown, RegExp]> = [
    [
      'several kinds, no default',
      { runtimes: { nodejs: [{ kind: 'nodejs:20', image }, { kind: 'nodejs:24', image }] } },
      /RUNTIMES_MANIFEST\.runtimes\.nodejs: family "nodejs" has multiple versions, but no default/,
    ],
    [
      'initialCount 0',
      { runtimes: { nodejs: [{ kind: 'nodejs:20', image, stemCells: [{ initialCount: 0, memory: '256 MB' }] }] } },
      /stemCells\[0\]\.initialCount: must be positive, got 0/,
    ],
  ];
  for (const [what, manifest, message] of refused) {
    await t.rejects(bed.start({ RUNTIMES_MANIFEST: JSON.stringify(manifest) }), message, what);
  }
});
