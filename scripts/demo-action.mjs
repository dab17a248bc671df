// The classic OpenWhisk walkthrough, through the controller's REST API with
// the real `openwhisk` npm client (what `wsk action create`, `wsk action
// invoke --result` and `wsk activation get` do):
//   1. write action.js, 2. create (or update) myAction from it,
//   3. invoke it blocking with --result semantics, print the result,
//   4. fetch the activation by its id and print it, with its log line.
// Usage: node scripts/demo-action.mjs <apihost> <api key> <directory for action.js>
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import openwhisk from 'openwhisk';

const [apihost = 'http://127.0.0.1:3233', apiKey, dir = '.'] = process.argv.slice(2);
if (apiKey === undefined) {
  console.error('usage: demo-action.mjs <apihost> <uuid:key> [dir]');
  process.exit(2);
}
const ow = openwhisk({ apihost, api_key: apiKey });

const file = join(dir, 'action.js');
writeFileSync(file, "function main() { console.log('Hello World'); return { hello: 'world' }; }\n");
console.log(`$ cat ${file}`);
console.log("function main() { console.log('Hello World'); return { hello: 'world' }; }");

const step = (text) => console.log(`\n$ ${text}`);
const code = (await import('node:fs')).readFileSync(file, 'utf8');

step('wsk action create myAction action.js');
const created = await ow.actions.create({ name: 'myAction', action: code, overwrite: true });
console.log(`ok: created action myAction (kind ${created.exec.kind}, version ${created.version})`);

step('wsk action invoke myAction --result');
const startedAt = Date.now();
const result = await ow.actions.invoke({ name: 'myAction', blocking: true, result: true });
console.log(JSON.stringify(result, null, 4));

step('wsk activation list --limit 1 myAction');
// The invoker stores the record right after answering; give it a moment.
let latest;
for (let i = 0; i < 100 && latest === undefined; i++) {
  [latest] = await ow.activations.list({ name: 'myAction', limit: 1, since: startedAt });
  if (latest === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
}
if (latest === undefined) throw new Error('no activation of myAction was listed');
console.log(`${new Date(latest.start).toISOString()}  ${latest.activationId}  ${latest.statusCode === 0 ? 'success' : 'error'}  guest/myAction`);

step(`wsk activation get ${latest.activationId}`);
const activation = await ow.activations.get({ name: latest.activationId });
console.log(JSON.stringify(activation, null, 4));

step(`wsk activation logs ${latest.activationId}`);
const { logs } = await ow.activations.logs({ name: latest.activationId });
console.log(logs.join('\n'));
if (!logs.some((line) => line.endsWith('Hello World'))) throw new Error('the activation has no "Hello World" log line');
