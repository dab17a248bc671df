/**
 * Sequences (upstream SequenceActions), run by the controller: each
 * component is invoked in order (blocking, `cause` = the sequence's
 * activation id), the result of one is the input of the next (an array
 * result is passed on as is), the first failing component ends the
 * sequence, and the sequence gets an activation record of its own:
 * response = the last component's, logs = the components' activation ids,
 * annotations `topmost`, `path`, `kind: sequence`, `causedBy` (nested) and
 * `limits` (the largest component memory), duration = the components' sum.
 * Creation checks upstream's rules: at most `maxSequenceLength` atomic
 * actions (nested sequences counted inline), at least one component, every
 * component exists, no cycle back to the sequence itself.
 */
import {
  activationDocument,
  generateActivationId,
  serializeActivationDocument,
  storesActivations,
  whiskError,
  type ActivationResponse,
  type Identity,
  type JsonObject,
  type JsonValue,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { ActionLookup, ActionRecord } from '../action-store.js';
import type { ActivationRecordWriter } from '../activation-store.js';
import { ApiError, Messages } from './errors.js';
import { invokeAction, type InvokeDeps, type InvokeOptions, type InvokeOutcome } from './invoke.js';

export interface SequenceDeps extends InvokeDeps {
  actions: ActionLookup;
  records: ActivationRecordWriter;
  maxSequenceLength: number;
  now: () => number;
}

/** `/ns/name` -> {path, name}; packaged components are not supported. */
function componentName(component: string): { path: string; name: string } | undefined {
  const parts = component.replace(/^\//, '').split('/');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') return undefined;
  return { path: parts[0] as string, name: parts[1] as string };
}

function checkComponentAccess(identity: Identity, component: { path: string; name: string }): void {
  if (component.path !== identity.namespace.name) {
    throw new ApiError(403, Messages.notAuthorizedToAccessResource(`${component.path}/${component.name}`));
  }
}

/** Validates a sequence's components at create/update time; throws ApiError 400/403. */
export async function checkSequence(deps: SequenceDeps, identity: Identity, sequenceDocId: string, components: readonly string[]): Promise<void> {
  if (components.length > deps.maxSequenceLength) throw new ApiError(400, Messages.sequenceIsTooLong);
  if (components.length === 0) throw new ApiError(400, Messages.sequenceNoComponent);
  for (const c of components) {
    const name = componentName(c);
    if (name !== undefined) checkComponentAccess(identity, name);
  }
  const count = await countAtomic(deps, sequenceDocId, components, 0);
  if (count > deps.maxSequenceLength) throw new ApiError(400, Messages.sequenceIsTooLong);
}

async function countAtomic(deps: SequenceDeps, sequenceDocId: string, components: readonly string[], depth: number): Promise<number> {
  if (components.length > deps.maxSequenceLength || depth > deps.maxSequenceLength) throw new ApiError(400, Messages.sequenceIsTooLong);
  let total = 0;
  for (const c of components) {
    const name = componentName(c);
    if (name === undefined) throw new ApiError(400, Messages.sequenceComponentNotFound);
    if (`${name.path}/${name.name}` === sequenceDocId) throw new ApiError(400, Messages.sequenceIsCyclic);
    let action: ActionRecord | undefined;
    try {
      action = await deps.actions.get(name.path, name.name);
    } catch {
      throw new ApiError(500);
    }
    if (action === undefined) throw new ApiError(400, Messages.sequenceComponentNotFound);
    total += action.kind === 'sequence' ? await countAtomic(deps, sequenceDocId, action.components ?? [], depth + 1) : 1;
    if (total > deps.maxSequenceLength) throw new ApiError(400, Messages.sequenceIsTooLong);
  }
  return total;
}

interface Accounting {
  /** Atomic actions invoked so far, across nested sequences. */
  atomic: number;
}

interface SequenceRun {
  activation: WhiskActivation;
}

/** Milliseconds a component may take before the sequence gives up on it (upstream: its time limit + 1 min). */
const COMPONENT_GRACE_MS = 60_000;

/**
 * Invokes a sequence. Blocking (`waitMs`): the record, or the id after the
 * wait (the sequence goes on). Non-blocking: the id at once.
 */
export async function invokeSequence(
  deps: SequenceDeps,
  identity: Identity,
  sequence: ActionRecord,
  payload: JsonObject | undefined,
  options: InvokeOptions,
): Promise<InvokeOutcome> {
  for (const c of sequence.components ?? []) {
    const name = componentName(c);
    if (name !== undefined) checkComponentAccess(identity, name);
  }
  const activationId = generateActivationId();
  const running = runSequence(deps, identity, sequence, payload, options, activationId, true, { atomic: 0 }).catch((error: unknown) => {
    deps.logger.error({ transid: options.transid.id, activationId, error: (error as Error).message }, 'sequence failed');
    return undefined;
  });
  if (options.waitMs === undefined) return { kind: 'accepted', activationId };
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([running, new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), options.waitMs)))]);
  clearTimeout(timer);
  if (outcome === 'waiting' || outcome === undefined) return { kind: 'accepted', activationId };
  return { kind: 'activation', activationId, activation: outcome.activation };
}

async function runSequence(
  deps: SequenceDeps,
  identity: Identity,
  sequence: ActionRecord,
  payload: JsonValue | undefined,
  options: InvokeOptions,
  activationId: string,
  topmost: boolean,
  accounting: Accounting,
): Promise<SequenceRun> {
  const start = deps.now();
  const logs: string[] = [];
  let duration = 0;
  let maxMemory = 0;
  let response: ActivationResponse | undefined;
  let input: JsonValue | undefined = payload;

  for (const component of sequence.components ?? []) {
    const name = componentName(component);
    let action: ActionRecord | undefined;
    try {
      action = name === undefined ? undefined : await deps.actions.get(name.path, name.name);
    } catch {
      action = undefined;
    }
    if (action === undefined) {
      response = whiskError(Messages.sequenceComponentNotFound);
      break;
    }
    if (action.kind !== 'sequence' && ++accounting.atomic > deps.maxSequenceLength) {
      response = whiskError(Messages.sequenceIsTooLong);
      break;
    }
    let activation: WhiskActivation | undefined;
    if (action.kind === 'sequence') {
      const nestedId = generateActivationId();
      logs.push(nestedId);
      activation = (await runSequence(deps, identity, action, input, { ...options, cause: activationId }, nestedId, false, accounting)).activation;
    } else {
      const outcome = await invokeAction(deps, identity, action, input, {
        transid: options.transid,
        waitMs: action.limits.timeoutMs + COMPONENT_GRACE_MS,
        cause: activationId,
        blocking: true,
      }).catch((error: unknown): InvokeOutcome => ({
        kind: 'failed',
        activationId: '',
        error: error instanceof ApiError ? error.message : (error as Error).message,
      }));
      if (outcome.activationId !== '') logs.push(outcome.activationId);
      if (outcome.kind !== 'activation') {
        response = whiskError(outcome.kind === 'accepted' ? Messages.sequenceRetrieveActivationTimeout(outcome.activationId) : Messages.sequenceActivationFailure);
        break;
      }
      activation = outcome.activation;
    }
    duration += activation.duration ?? Math.max(0, activation.end - activation.start);
    const limits = activation.annotations.find((a) => a.key === 'limits')?.value as JsonObject | undefined;
    maxMemory = Math.max(maxMemory, typeof limits?.['memory'] === 'number' ? limits['memory'] : action.limits.memoryMb);
    response = activation.response;
    if (response.statusCode !== 0) break;
    input = response.result;
  }

  const end = deps.now();
  const annotations = [
    { key: 'topmost', value: topmost },
    { key: 'path', value: `${sequence.path}/${sequence.name}` },
    { key: 'kind', value: 'sequence' },
    ...(topmost ? [] : [{ key: 'causedBy', value: 'sequence' }]),
    {
      key: 'limits',
      value: { timeout: sequence.limits.timeoutMs, memory: maxMemory > 0 ? maxMemory : sequence.limits.memoryMb, logs: 10, concurrency: sequence.limits.concurrency },
    },
  ];
  const activation: WhiskActivation = {
    namespace: identity.namespace.name,
    name: sequence.name,
    subject: identity.subject,
    activationId,
    start,
    end,
    ...(topmost || options.cause === undefined ? {} : { cause: options.cause }),
    response: response ?? whiskError(Messages.sequenceNoComponent),
    logs,
    version: sequence.version,
    publish: false,
    annotations,
    duration,
  };
  if (storesActivations(identity)) {
    try {
      await deps.records.put(JSON.parse(serializeActivationDocument(activationDocument(activation, deps.now()))) as JsonObject);
    } catch (error) {
      deps.logger.error({ activationId, error: (error as Error).message }, 'storing the sequence activation record failed');
    }
  }
  return { activation };
}
