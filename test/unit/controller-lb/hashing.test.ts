/**
 * Hash values below were computed with Java (jshell, OpenJDK): the home
 * invoker must match upstream's for the same action and namespace.
 */
import t from 'tap';
import {
  actionHash,
  homeInvoker,
  indexFor,
  javaIntAbs,
  javaStringHashCode,
  pairwiseCoprimeNumbersUntil,
  placement,
} from '../../../controller-lb/hashing.js';

t.test('String.hashCode matches Java', async (t) => {
  const java: Array<[string, number]> = [
    ['hello', 99162322],
    ['', 0],
    ['guest', 98708952],
    ['guest/hello', 86723035],
    ['whisk.system', -1796040243],
    ['guest/pkg/action', -325493648],
    ['\u{1F600}', 1772899], // a surrogate pair: two UTF-16 code units, as in Java
    ['ÄÖü', 195242],
    ['polygenelubricants', -2147483648],
  ];
  for (const [s, expected] of java) t.equal(javaStringHashCode(s), expected, JSON.stringify(s));
});

t.test('abs keeps Int.MinValue negative, as Java does', async (t) => {
  t.equal(javaIntAbs(-5), 5);
  t.equal(javaIntAbs(2147483647), 2147483647);
  t.equal(javaIntAbs(-2147483648), -2147483648);
});

t.test('home invoker as upstream: abs(nsHash ^ actionHash) % n', async (t) => {
  // Java: Math.abs("guest".hashCode() ^ "guest/hello".hashCode()) == 13198339, % 5 == 4
  t.equal(actionHash('guest', 'guest/hello'), 13198339);
  t.equal(homeInvoker('guest', 'guest/hello', 5), 4);
  t.equal(homeInvoker('guest', 'guest/hello', 1), 0);
});

t.test('a hash of Int.MinValue still lands in range', async (t) => {
  // Java: Math.abs("polygenelubricants".hashCode() ^ "".hashCode()) == -2147483648; % 3 == -2; % 4 == 0
  const hash = actionHash('polygenelubricants', '');
  t.equal(hash, -2147483648);
  t.equal(indexFor(hash, 3), 1, '-2 mod 3, made non-negative');
  t.ok(Object.is(indexFor(hash, 4), 0), 'zero, not negative zero');
  for (let n = 1; n <= 17; n++) {
    const home = homeInvoker('polygenelubricants', '', n);
    t.ok(home >= 0 && home < n, `n=${n}: ${home}`);
  }
  t.throws(() => indexFor(1, 0), RangeError);
});

t.test('pairwise coprime step sizes as upstream', async (t) => {
  t.same(pairwiseCoprimeNumbersUntil(10), [1, 3, 7]);
  t.same(pairwiseCoprimeNumbersUntil(9), [1, 2, 5, 7]);
  t.same(pairwiseCoprimeNumbersUntil(4), [1, 3]);
  t.same(pairwiseCoprimeNumbersUntil(3), [1, 2]);
  t.same(pairwiseCoprimeNumbersUntil(1), [1]);
  t.same(pairwiseCoprimeNumbersUntil(0), [1], 'never empty');
});

t.test('placement: step = steps[hash % steps.length]', async (t) => {
  const steps = pairwiseCoprimeNumbersUntil(10);
  // 13198339 % 10 == 9, 13198339 % 3 == 1 -> steps[1] == 3
  t.same(placement('guest', 'guest/hello', 10, steps), { home: 9, step: 3 });
  const p = placement('polygenelubricants', '', 10, steps);
  t.ok(p.home >= 0 && p.home < 10 && steps.includes(p.step));
});
