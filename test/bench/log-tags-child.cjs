'use strict';
// Child of log-tags.bench.ts: the runtime side of per-activation log tags,
// with stdout and stderr on pipes as in a container. One mode per process,
// so that each starts from the same JIT state:
//   plain   no hook installed (an untagged runtime)
//   tagged  the hook installed: writes outside any activation, inside one,
//           and the end of an activation with its tagged sentinels
// Results (ns) go to fd 3 as JSON.
const fs = require('node:fs');
const path = require('node:path');
const { createLogTags } = require(path.join(__dirname, '../../runtimes/nodejs/proxy/log-tags.cjs'));

const [mode, linesArg, activationsArg] = process.argv.slice(2);
const LINES = Number(linesArg || 100000);
const ACTIVATIONS = Number(activationsArg || 20000);
const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';
const LINE = 'fetched 17 records from the database in 12 ms, cursor 4711';
const FOUR = `${LINE}\n${LINE}\n${LINE}\n${LINE}`;
const ID = 'a8b3c0f1d2e34f5a9b6c7d8e9f0a1b2c';

function perCall(n, fn) {
  fn(Math.ceil(n / 10)); // warm-up
  const start = process.hrtime.bigint();
  fn(n);
  return Number(process.hrtime.bigint() - start) / n;
}

const lines = (n) => {
  for (let i = 0; i < n; i++) console.log(LINE);
};
const fourLines = (n) => {
  for (let i = 0; i < n; i++) console.log(FOUR);
};
const bareSentinels = (n) => {
  for (let i = 0; i < n; i++) {
    process.stdout.write(SENTINEL);
    process.stderr.write(SENTINEL);
  }
};

const out = {};
if (mode === 'plain') {
  out.lineNs = perCall(LINES, lines);
  out.fourLinesNs = perCall(LINES / 4, fourLines) / 4;
  out.endNs = perCall(ACTIVATIONS, bareSentinels);
} else {
  const tags = createLogTags('0123456789abcdef', { installMonitor: false });
  out.outsideLineNs = perCall(LINES, lines);
  out.lineNs = perCall(LINES, (n) => tags.run(ID, () => lines(n)));
  out.fourLinesNs = perCall(LINES / 4, (n) => tags.run(ID, () => fourLines(n))) / 4;
  let k = 0;
  // One activation's context and its two tagged sentinels, instead of the two bare ones.
  out.endNs = perCall(ACTIVATIONS, (n) => {
    for (let i = 0; i < n; i++) tags.run(`${ID.slice(0, 24)}${String(k++).padStart(8, '0')}`, () => tags.end());
  });
}
fs.writeSync(3, JSON.stringify(out));
