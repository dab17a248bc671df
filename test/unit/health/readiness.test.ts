/**
 * The readiness checks: not ready until started, Docker required, the store
 * optional, Kafka from the join's state (required or degraded by setting).
 */
import t from 'tap';
import { createReadiness, type ReadinessParts } from '../../../invoker/health/readiness.js';

function parts(overrides: Partial<ReadinessParts> = {}): ReadinessParts {
  return {
    docker: { ping: async () => 'OK' },
    records: { health: () => ({ healthy: true }) },
    kafkaOptional: false,
    draining: () => false,
    ...overrides,
  };
}

t.test('still starting until marked started', async (t) => {
  const readiness = createReadiness(parts());
  t.match(await readiness.checks(), [{ name: 'startup', ok: false, detail: 'still starting' }, { name: 'docker', ok: true }, { name: 'store', ok: true }]);
  readiness.markStarted();
  const checks = await readiness.checks();
  t.same(checks, [{ name: 'startup', ok: true }, { name: 'docker', ok: true }, { name: 'store', ok: true }], 'no kafka check without Kafka');
});

t.test('docker is required, the store optional', async (t) => {
  const readiness = createReadiness(
    parts({
      docker: { ping: () => Promise.reject(new Error('socket gone')) },
      records: { health: () => ({ healthy: false, lastError: 'ECONNREFUSED' }) },
    }),
  );
  readiness.markStarted();
  const checks = await readiness.checks();
  t.same(checks[1], { name: 'docker', ok: false, detail: 'socket gone' });
  t.same(checks[2], { name: 'store', ok: false, detail: 'ECONNREFUSED', optional: true });
});

t.test('kafka: starting until joined, then the probe problem; optional only when degraded is allowed', async (t) => {
  let joined = false;
  let problem: string | undefined = 'not yet connected';
  const kafka = { joined: () => joined, problem: () => problem };
  const required = createReadiness(parts({ kafka }));
  const degraded = createReadiness(parts({ kafka, kafkaOptional: true }));
  t.same((await required.checks())[3], { name: 'kafka', ok: false, detail: 'starting: not yet connected' });
  t.same((await degraded.checks())[3], { name: 'kafka', ok: false, detail: 'starting: not yet connected', optional: true });
  joined = true;
  problem = undefined;
  t.same((await required.checks())[3], { name: 'kafka', ok: true });
  problem = 'the broker does not answer: timeout';
  t.same((await required.checks())[3], { name: 'kafka', ok: false, detail: 'the broker does not answer: timeout' });
});

t.test('draining comes from the given part', async (t) => {
  let draining = false;
  const readiness = createReadiness(parts({ draining: () => draining }));
  t.equal(readiness.draining(), false);
  draining = true;
  t.equal(readiness.draining(), true);
});
