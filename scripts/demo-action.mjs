// Creates (or updates) the demo action guest/hello in the whisks database.
import nano from 'nano';

const couch = nano(process.argv[2] ?? 'http://127.0.0.1:5984');
await couch.db.create('whisks').catch((e) => {
  if (e.statusCode !== 412) throw e;
});
const db = couch.use('whisks');
const id = 'guest/hello';
const existing = await db.get(id).catch(() => undefined);
const code = `function main(params) {
  console.log('hello from the action, params: ' + JSON.stringify(params));
  return { payload: 'Hello, ' + (params.name || 'stranger') + '!' };
}`;
const result = await db.insert({
  _id: id,
  ...(existing ? { _rev: existing._rev } : {}),
  entityType: 'action',
  namespace: 'guest',
  name: 'hello',
  version: '0.0.1',
  publish: false,
  exec: { kind: 'nodejs:20', code, binary: false },
  limits: { timeout: 60000, memory: 256, logs: 10, concurrency: 1 },
  parameters: [],
  annotations: [],
});
console.log(`stored ${id} at revision ${result.rev}`);
