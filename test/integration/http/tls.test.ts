/**
 * HTTPS and mTLS on the invoker's HTTP server, with a throwaway CA, server
 * and client certificates made by the `openssl` CLI for this run only.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { COMPLETION, MESSAGE_BYTES, startHarness } from '../../unit/http/fixtures/harness.js';

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by a CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
}

function makePki(dir: string): Pki {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string) => {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`);
  };
  const leaf = (name: string, caName: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`,
      '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  ca('test-ca');
  ca('stranger-ca');
  leaf('server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  return {
    ca: read('test-ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    strangerCert: read('stranger.crt'),
    strangerKey: read('stranger.key'),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'invoker-http-tls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const pki = makePki(dir);

t.test('HTTPS: /invoke acknowledges and answers over TLS', async (t) => {
  const h = await startHarness({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  t.teardown(() => h.server.close());
  const agent = new Agent({ connect: { ca: pki.ca } });
  t.teardown(() => agent.close());

  t.match(h.base, /^https:/);
  const response = await request(`${h.base}/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: MESSAGE_BYTES,
    dispatcher: agent,
  });
  t.equal(response.statusCode, 200);
  (await h.handler.next()).resolve();
  t.equal(await response.body.text(), COMPLETION);

  // Plain HTTP to the TLS port gets no answer it could mistake for one.
  const plain = request(h.base.replace('https:', 'http:') + '/ping', { dispatcher: new Agent() });
  await t.rejects(plain);
});

t.test('mTLS: /invoke needs a client certificate from the configured CA', async (t) => {
  const h = await startHarness({ tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca } });
  t.teardown(() => h.server.close());
  const agents = identities(t);

  const invoke = (dispatcher: Agent) =>
    request(`${h.base}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: MESSAGE_BYTES, dispatcher });

  const response = await invoke(agents.client);
  t.equal(response.statusCode, 200, 'with a certificate from the CA: acknowledged');
  (await h.handler.next()).resolve();
  t.equal(await response.body.text(), COMPLETION);

  const without = await invoke(agents.none);
  t.equal(without.statusCode, 401, 'without a certificate: 401');
  t.match(JSON.parse(await without.body.text()), {
    error: /^POST \/invoke requires a client certificate signed by the invoker's client CA: no client certificate presented$/,
  });

  const stranger = await invoke(agents.stranger);
  t.equal(stranger.statusCode, 403, 'a certificate from another CA: 403');
  t.match(JSON.parse(await stranger.body.text()), { error: /POST \/invoke requires a client certificate .*: client certificate not accepted \(\w+\)/ });

  t.equal(h.handler.calls.length, 1, 'only the authenticated call reached the handler');
  t.ok(
    h.lines.some((l) => l.msg === 'refused POST /invoke: no client certificate presented'),
    'the refusal is logged',
  );
});

t.test('mTLS: probes and /metrics answer without a client certificate', async (t) => {
  const h = await startHarness({ tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca } });
  t.teardown(() => h.server.close());
  const agents = identities(t);

  for (const [name, dispatcher] of [['no certificate', agents.none], ['a stranger certificate', agents.stranger], ['the client certificate', agents.client]] as const) {
    for (const path of ['/ping', '/health/live', '/health/ready', '/metrics']) {
      const response = await request(`${h.base}${path}`, { dispatcher });
      const body = await response.body.text();
      t.equal(response.statusCode, 200, `GET ${path} with ${name}`);
      if (path === '/ping') t.equal(body, 'pong');
    }
  }
});

t.test('mTLS: the admin routes and /pool need the certificate as well as their credentials', async (t) => {
  const h = await startHarness({
    tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca },
    adminUser: 'ops',
    adminPassword: 's3cret',
  });
  t.teardown(() => h.server.close());
  const agents = identities(t);
  const admin = { authorization: `Basic ${Buffer.from('ops:s3cret').toString('base64')}` };

  const routes = [
    { method: 'GET', path: '/isEnabled', headers: admin },
    { method: 'POST', path: '/disable', headers: admin },
    { method: 'POST', path: '/enable', headers: admin },
    { method: 'GET', path: '/pool', headers: {} },
  ] as const;
  for (const route of routes) {
    const refused = await request(`${h.base}${route.path}`, { method: route.method, headers: route.headers, dispatcher: agents.none });
    t.equal(refused.statusCode, 401, `${route.method} ${route.path} without a certificate, with credentials`);
    t.match(JSON.parse(await refused.body.text()), { error: new RegExp(`^${route.method} \\${route.path} requires a client certificate`) });
    const stranger = await request(`${h.base}${route.path}`, { method: route.method, headers: route.headers, dispatcher: agents.stranger });
    await stranger.body.text();
    t.equal(stranger.statusCode, 403, `${route.method} ${route.path} with a stranger certificate`);
  }
  t.equal(h.enabled.value, true, 'no refused /disable took effect');

  for (const route of routes) {
    const answered = await request(`${h.base}${route.path}`, { method: route.method, headers: route.headers, dispatcher: agents.client });
    await answered.body.text();
    t.equal(answered.statusCode, 200, `${route.method} ${route.path} with the certificate and credentials`);
  }
  const noCredentials = await request(`${h.base}/isEnabled`, { dispatcher: agents.client });
  await noCredentials.body.text();
  t.equal(noCredentials.statusCode, 401, 'the certificate does not replace the admin credentials');
  t.match(noCredentials.headers['www-authenticate'], /^Basic/);
});

/** One undici agent per client identity (connections are not shared between them). */
function identities(t: { teardown(fn: () => unknown): void }): { client: Agent; stranger: Agent; none: Agent } {
  const agents = {
    client: new Agent({ connect: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } }),
    stranger: new Agent({ connect: { ca: pki.ca, cert: pki.strangerCert, key: pki.strangerKey } }),
    none: new Agent({ connect: { ca: pki.ca } }),
  };
  for (const agent of Object.values(agents)) t.teardown(() => agent.close());
  return agents;
}
