/**
 * Rules for the source tree (invoker/, controller-lb/, protocol/):
 * - no import cycle among relative imports, type-only imports and
 *   re-exports included (`import type`, `export ... from`);
 * - no file over 500 lines, unless its first 15 lines say "over 500 lines"
 *   and why.
 * KNOWN_CYCLES and KNOWN_LONG list the exceptions that exist today; an entry
 * that no longer applies fails the test, so the lists only shrink.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DIRS = ['invoker', 'controller-lb', 'protocol'];
const MAX_LINES = 500;
const HEADER_LINES = 15;

/** Cycles as their sorted members joined by ' <-> '. */
const KNOWN_CYCLES = new Set<string>([]);
/** Files over the limit without the header. */
const KNOWN_LONG = new Set<string>([]);

function walk(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Repository-relative, with forward slashes. */
function rel(path: string): string {
  return relative(ROOT, path).split(sep).join('/');
}

const files = DIRS.flatMap((dir) => walk(join(ROOT, dir), [])).map(rel).sort();
const known = new Set(files);
const text = new Map(files.map((file) => [file, readFileSync(join(ROOT, file), 'utf8')]));

/** `./x.js` -> `<dir>/x.ts` (or `./x` -> `x.ts` / `x/index.ts`); undefined outside the walked files. */
function resolveImport(from: string, specifier: string): string | undefined {
  const base = rel(resolve(ROOT, dirname(from), specifier));
  const candidates = base.endsWith('.js') ? [`${base.slice(0, -3)}.ts`] : [base, `${base}.ts`, `${base}/index.ts`];
  return candidates.find((candidate) => known.has(candidate));
}

function relativeImports(file: string): string[] {
  const info = ts.preProcessFile(text.get(file) ?? '', true, true);
  const targets = new Set<string>();
  for (const imported of info.importedFiles) {
    if (!imported.fileName.startsWith('.')) continue;
    const target = resolveImport(file, imported.fileName);
    if (target !== undefined) targets.add(target);
  }
  return [...targets].sort();
}

const graph = new Map(files.map((file) => [file, relativeImports(file)]));

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cyclicComponents(): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, next);
    low.set(file, next);
    next += 1;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file) as number, low.get(target) as number));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file) as number, index.get(target) as number));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || (graph.get(file) ?? []).includes(file)) components.push(component.sort());
    }
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return components;
}

/** One concrete cycle through `start` within `members`, as `a -> b -> a`. */
function cycleThrough(start: string, members: ReadonlySet<string>): string {
  const path: string[] = [];
  const seen = new Set<string>();
  const search = (file: string): boolean => {
    path.push(file);
    seen.add(file);
    for (const target of graph.get(file) ?? []) {
      if (target === start) return true;
      if (members.has(target) && !seen.has(target) && search(target)) return true;
    }
    path.pop();
    return false;
  };
  search(start);
  return [...path, start].join(' -> ');
}

t.test('the walk found the source tree', async (t) => {
  t.ok(files.length > 50, `${files.length} files`);
  t.ok(files.includes('invoker/invoker.ts') && files.includes('controller-lb/load-balancer.ts') && files.includes('protocol/index.ts'));
});

t.test('no import cycle among relative imports (type-only imports and re-exports included)', async (t) => {
  const found = new Set<string>();
  for (const component of cyclicComponents()) {
    const key = component.join(' <-> ');
    found.add(key);
    if (KNOWN_CYCLES.has(key)) continue;
    t.fail(`import cycle: ${cycleThrough(component[0] as string, new Set(component))}`);
  }
  for (const key of KNOWN_CYCLES) t.ok(found.has(key), `known cycle still there (remove it from KNOWN_CYCLES otherwise): ${key}`);
});

t.test(`no file over ${MAX_LINES} lines without its reason at the top`, async (t) => {
  for (const file of files) {
    const lines = (text.get(file) ?? '').replace(/\n$/, '').split('\n');
    const long = lines.length > MAX_LINES;
    if (KNOWN_LONG.has(file)) {
      t.ok(long, `${file} is still over ${MAX_LINES} lines (remove it from KNOWN_LONG otherwise)`);
      continue;
    }
    if (!long) continue;
    const header = lines.slice(0, HEADER_LINES).join('\n');
    t.ok(/over 500 lines/i.test(header), `${file}: ${lines.length} lines; split it, or say in its first ${HEADER_LINES} lines why it is "over 500 lines"`);
  }
});
