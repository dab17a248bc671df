/**
 * Parameters reach the action container exactly as the controller sent them:
 * a real invoker over POST /invoke, a real container of our Node.js runtime.
 *
 * The action sees the bytes of its /run request: it wraps the JSON.parse its
 * runtime parses the request body with (at load time, so before any /run)
 * and returns the last text it was given. Inside the action the numbers
 * would already be doubles; the text shows what crossed the wire.
 *
 * Upstream (apache/openwhisk ContainerProxy.scala partitionArguments and
 * WhiskAction.scala containerInitializer): an array content is the /run
 * value as it is; numbers are BigDecimal, so they pass unchanged, and init
 * arguments become env strings via BigDecimal.toString / compactPrint.
 */
import t from 'tap';
import { RawJson, serializeActivationMessage, type ActivationMessage } from '../../../protocol/index.js';
import { InvokerTestbed } from '../../helpers/invoker-harness.js';
import { activationOf } from './helpers.js';

const CODE = `
const parse = JSON.parse;
let lastText;
JSON.parse = function (text, reviver) { lastText = String(text); return parse(text, reviver); };
function main(params) {
  return {
    body: lastText,
    isArray: Array.isArray(params),
    env: { INIT_ONE: process.env.INIT_ONE, INIT_SCI: process.env.INIT_SCI, INIT_OBJ: process.env.INIT_OBJ, INIT_BIG: process.env.INIT_BIG },
  };
}`;

const bed = new InvokerTestbed(t);
await bed.createDatabases();
const invoker = await bed.start();
const { rev } = await bed.putAction({ name: 'exact', code: CODE });

interface Seen {
  body: string;
  isArray: boolean;
  env: Record<string, string | undefined>;
}

async function invoke(content: string, initArgs: string[] = []): Promise<Seen> {
  const message: ActivationMessage = { ...bed.message({ name: 'exact', rev }), content: RawJson.parse(content), initArgs };
  const answer = await invoker.invoke(serializeActivationMessage(message));
  if (answer.status !== 200) throw new Error(`POST /invoke answered ${answer.status}: ${answer.body}`);
  const response = activationOf(answer.ack).response;
  if (response.statusCode !== 0) throw new Error(`the action failed: ${JSON.stringify(response)}`);
  return response.result as unknown as Seen;
}

const NUMBERS = '"big":12345678901234567890,"odd":9007199254740993,"fine":0.12345678901234567890123,"huge":1E+400,"one":1.0,"sci":1E+21';

t.test('object content: every number reaches /run byte for byte; init arguments become upstream env strings', async (t) => {
  // The first activation initializes the container, so /init carries the init arguments.
  const seen = await invoke(`{${NUMBERS},"INIT_ONE":1.0,"INIT_SCI":1E+21,"INIT_OBJ":{"z":1.50,"a":[1E+400]},"INIT_BIG":12345678901234567890}`, [
    'INIT_ONE',
    'INIT_SCI',
    'INIT_OBJ',
    'INIT_BIG',
  ]);
  t.ok(seen.body.startsWith(`{"value":{${NUMBERS}},`), seen.body);
  t.same(seen.env, { INIT_ONE: '1.0', INIT_SCI: '1E+21', INIT_OBJ: '{"a":[1E+400],"z":1.50}', INIT_BIG: '12345678901234567890' });
  t.equal(seen.isArray, false);
});

t.test('array content (a sequence component returned one) is the /run value, byte for byte', async (t) => {
  const list = '[12345678901234567890,9007199254740993,0.12345678901234567890123,1E+400,-1E-400,{"k":1.0},"s",null]';
  const seen = await invoke(list);
  t.ok(seen.body.startsWith(`{"value":${list},`), seen.body);
  t.equal(seen.isArray, true, 'the action got an array');
});

t.test('null content is none: the action gets {}', async (t) => {
  const base = serializeActivationMessage({ ...bed.message({ name: 'exact', rev }) });
  const answer = await invoker.invoke(base.replace('"content":{}', '"content":null'));
  t.equal(answer.status, 200);
  const seen = activationOf(answer.ack).response.result as unknown as Seen;
  t.ok(seen.body.startsWith('{"value":{},'), seen.body);
});
