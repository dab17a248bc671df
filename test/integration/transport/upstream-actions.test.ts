/**
 * Action documents exactly as an upstream controller writes them, run end to
 * end through both transports: each code form (small text inlined as `mem:`,
 * large text as a CouchDB `couch:` attachment, zip inlined and attached,
 * blackbox with and without code) is stored the way upstream stores it
 * (test/fixtures/upstream-action-docs.ts), then invoked with POST /invoke and
 * produced to invoker<N> on Kafka, against the real Docker engine, CouchDB
 * server and Kafka broker. Also the `<family>:default` kind, partial limits,
 * annotations of any JSON type, a message naming an older revision, and a
 * deleted action.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nano from 'nano';
import {
  ackActivationId,
  parseAcknowledgement,
  serializeActivationMessage,
  type AcknowledgementMessage,
  type ActivationMessage,
} from '../../../protocol/index.js';
import { InvokerTestbed, responseOf } from '../../helpers/invoker-harness.js';
import { env, kafkaTransportFixture } from './helpers.js';
import {
  putUpstreamAction,
  smallTextCode,
  upstreamCodeForms,
  type ActionDocumentInput,
  type StoredAction,
} from '../../fixtures/upstream-action-docs.js';

const bed = new InvokerTestbed(t);
const { controller, invokerTopic, completedTopic, completions, producer } = await kafkaTransportFixture(t, bed, 'upstream-actions-test');
const invoker = await bed.start({ KAFKA_BROKERS: env.kafkaBrokers.join(',') });

/**
 * A blackbox image whose action is baked in, as a blackbox without code is:
 * its /init takes no code, its /run answers, and it writes the log sentinels.
 * Tagged by content so that concurrent runs share one build.
 */
async function bakedBlackboxImage(): Promise<string> {
  const server = `const http = require('node:http');
const END = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\\n';
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    let answer = { OK: true };
    if (req.url === '/run') {
      const value = JSON.parse(body).value ?? {};
      answer = { form: 'blackbox-baked', echo: value.name ?? null };
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
    if (req.url === '/run') { process.stdout.write(END); process.stderr.write(END); }
  });
}).listen(8080);
`;
  const dockerfile = `FROM ${env.actionImageNodejs}\nCOPY baked.cjs /baked/baked.cjs\nCMD ["/usr/bin/node", "/baked/baked.cjs"]\n`;
  const tag = `whisk/test-blackbox-baked:${createHash('sha256').update(dockerfile).update(server).digest('hex').slice(0, 12)}`;
  const dir = await mkdtemp(join(tmpdir(), 'baked-blackbox-'));
  try {
    await writeFile(join(dir, 'Dockerfile'), dockerfile);
    await writeFile(join(dir, 'baked.cjs'), server);
    await promisify(execFile)('docker', ['build', '-q', '-t', tag, dir], { timeout: 120_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return tag;
}

const put = (input: ActionDocumentInput): Promise<StoredAction> => putUpstreamAction(bed.couchdbUrl, bed.whisksDb, input);

const forms = upstreamCodeForms();
const blackboxImage = await bakedBlackboxImage();
const actions: Array<{ form: string; stored: StoredAction; storedAs: RegExp }> = [
  { form: 'small-text', stored: await put(forms.smallText), storedAs: /^mem:/ },
  { form: 'large-text', stored: await put(forms.largeText), storedAs: /^couch:/ },
  { form: 'zip-inline', stored: await put(forms.zipInline), storedAs: /^mem:/ },
  { form: 'zip-attached', stored: await put(forms.zipAttached), storedAs: /^couch:/ },
  {
    form: 'blackbox-code',
    // Our Node.js runtime image as the user's image: the code goes to its /init.
    stored: await put({ namespace: 'guest', name: 'blackbox-code', exec: { kind: 'blackbox', image: env.actionImageNodejs, code: smallTextCode('blackbox-code') }, limits: { memory: 128 } }),
    storedAs: /^mem:/,
  },
  {
    form: 'blackbox-baked',
    stored: await put({ namespace: 'guest', name: 'blackbox-baked', exec: { kind: 'blackbox', image: blackboxImage }, limits: { memory: 128 } }),
    storedAs: /^$/,
  },
];

function message(stored: StoredAction, name: string, revision: string | null = stored.rev): ActivationMessage {
  return bed.message({ name: stored.id.split('/')[1] as string, rev: revision }, { controller, content: { name } });
}

async function viaKafka(m: ActivationMessage): Promise<AcknowledgementMessage> {
  await producer.send({ topic: invokerTopic, acks: -1, messages: [{ value: serializeActivationMessage(m) }] });
  const value = await completions.waitFor(
    (v) => ackActivationId(parseAcknowledgement(v)) === m.activationId,
    `the completion of ${m.activationId} on ${completedTopic}`,
    { timeoutMs: 60_000 },
  );
  return parseAcknowledgement(value);
}

async function viaHttp(m: ActivationMessage): Promise<AcknowledgementMessage> {
  const result = await invoker.invoke(m);
  if (result.status !== 200 || result.ack === undefined) throw new Error(`POST /invoke: ${result.status} ${result.body}`);
  return result.ack;
}

for (const { form, stored, storedAs } of actions) {
  t.test(`${form}: stored as upstream stores it, runs through POST /invoke and Kafka`, async (t) => {
    const raw = await nano(bed.couchdbUrl).use<Record<string, unknown>>(bed.whisksDb).get(stored.id);
    const code = (raw.exec as { code?: { attachmentName?: string } }).code;
    t.match(code?.attachmentName ?? '', storedAs, `exec.code is ${code === undefined ? 'absent' : code.attachmentName?.slice(0, 6)}`);
    t.equal(raw._attachments !== undefined, storedAs.source === '^couch:', 'a CouchDB attachment only for large code');

    const http = responseOf(await viaHttp(message(stored, 'http')));
    t.same(http, { statusCode: 0, result: { form, echo: 'http' }, ...(http.size !== undefined ? { size: http.size } : {}) }, 'POST /invoke');
    const kafka = responseOf(await viaKafka(message(stored, 'kafka')));
    t.same(kafka.result, { form, echo: 'kafka' }, 'Kafka');
    t.equal(kafka.statusCode, 0);
  });
}

t.test('a document of kind nodejs:default runs as the family default (nodejs:20) and is recorded so', async (t) => {
  const stored = await put({ ...forms.smallText, name: 'defaulted', exec: { kind: 'nodejs:default', code: smallTextCode('defaulted') } });
  for (const [transport, run] of [['http', viaHttp], ['kafka', viaKafka]] as const) {
    const m = message(stored, transport);
    t.same(responseOf(await run(m)).result, { form: 'defaulted', echo: transport }, transport);
    const record = await bed.waitForRecord('guest', m.activationId);
    const kind = (record.annotations as Array<{ key: string; value: unknown }>).find((a) => a.key === 'kind');
    t.equal(kind?.value, 'nodejs:20', `${transport}: the kind annotation names the real kind`);
  }
});

t.test('partial limits, annotations of any JSON type, exec.main', async (t) => {
  const stored = await put({
    namespace: 'guest',
    name: 'odd',
    exec: { kind: 'nodejs:20', code: 'function entry(p) { return { entry: true, echo: p.name }; }', main: 'entry' },
    annotations: [
      { key: 'provide-api-key', value: false },
      { key: 'web-export', value: true },
      { key: 'final', value: 1 },
      { key: 'meta', value: { owner: ['a', 'b'], n: null } },
    ],
  });
  // Upstream writes every limit; older or hand-made documents may lack some.
  const db = nano(bed.couchdbUrl).use<Record<string, unknown>>(bed.whisksDb);
  const doc = await db.get(stored.id);
  const rev = (await db.insert({ ...doc, limits: { timeout: 5000, memory: 128 } })).rev;
  for (const [transport, run] of [['http', viaHttp], ['kafka', viaKafka]] as const) {
    const response = responseOf(await run(bed.message({ name: 'odd', rev }, { controller, content: { name: transport } })));
    t.same(response.result, { entry: true, echo: transport }, transport);
  }
});

t.test('a message naming an older revision runs that revision; a deleted action is not found', async (t) => {
  const first = await put({ ...forms.largeText, name: 'evolving' }); // attached code at rev 2
  const second = await put({ ...forms.smallText, name: 'evolving', rev: first.rev }); // inlined code at rev 3
  for (const [transport, run] of [['http', viaHttp], ['kafka', viaKafka]] as const) {
    t.same(responseOf(await run(message(first, transport))).result, { form: 'large-text', echo: transport }, `${transport}: the older revision`);
    t.same(responseOf(await run(message(second, transport))).result, { form: 'small-text', echo: transport }, `${transport}: the newer revision`);
  }
  const deleted = await nano(bed.couchdbUrl).use(bed.whisksDb).destroy(second.id, second.rev);
  for (const [transport, run] of [['http', viaHttp], ['kafka', viaKafka]] as const) {
    const response = responseOf(await run(message(second, transport, deleted.rev)));
    t.same(response, { statusCode: 1, result: { error: 'Action could not be found or may have been deleted.' } }, `${transport}: the deletion revision`);
  }
});
