/** The accounting check, as tap assertions, and the table as a comment. */
import type { Test } from 'tap';
import { accountingTable, type Accounting } from './load.js';

export interface CheckOptions {
  /** Assertions that wait for a fix not yet on this code: assertion name -> todo reason. */
  todo?: Partial<Record<'lost' | 'completed' | 'refused' | 'systemErrors' | 'ranTwice', string>>;
  /** Refusals that are this scenario's known fault (no activation id was given, so nothing is owed). */
  allowRefused?: boolean;
}

export function checkAccounting(t: Test, scenario: string, a: Accounting, options: CheckOptions = {}): void {
  const todo = options.todo ?? {};
  const opt = (key: keyof NonNullable<CheckOptions['todo']>) => (todo[key] !== undefined ? { todo: todo[key] } : {});
  t.comment(`${scenario}\n${accountingTable([{ scenario, a }])}`);
  t.ok(a.accepted > 0, `${scenario}: the controller accepted activations`);
  t.same(a.lost, [], `${scenario}: every accepted activation has a stored record (accepted ${a.accepted} = stored ${a.stored})`, opt('lost'));
  t.same(a.notCompleted, [], `${scenario}: every caller got its record, from the blocking answer or GET /activations (completed ${a.completed})`, opt('completed'));
  t.same(a.duplicates, [], `${scenario}: no activation id stored twice`);
  t.same(a.unexpected, [], `${scenario}: no record of an activation the controller did not accept`);
  t.same(a.ranTwice, [], `${scenario}: no activation ran twice`, opt('ranTwice'));
  t.same(a.systemErrors.other, [], `${scenario}: every system error is a forced-completion record`, opt('systemErrors'));
  if (options.allowRefused !== true) t.same(a.refused, {}, `${scenario}: nothing refused`, opt('refused'));
}
