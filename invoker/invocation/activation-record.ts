/**
 * The activation record of one activation, filled in as it progresses. It
 * starts as a system error, so whatever stops the activation half-way, the
 * record built from it is truthful.
 */
import {
  ANNOTATION_BINDING,
  ANNOTATION_CAUSED_BY,
  ANNOTATION_INIT_TIME,
  ANNOTATION_KIND,
  ANNOTATION_LIMITS,
  ANNOTATION_PATH,
  ANNOTATION_TIMEOUT,
  ANNOTATION_WAIT_TIME,
  FAILED_TO_PROVISION,
  whiskError,
  type ActivationMessage,
  type ActivationResponse,
  type Annotation,
  type WhiskActivation,
} from '../../protocol/index.js';
import type { ExecutableAction } from './core-ports.js';

/** What the record says about the action: its version, kind and limits. */
type ActionFacts = Pick<ExecutableAction, 'version' | 'kind' | 'limits'>;

export class ActivationRecord {
  private response: ActivationResponse = whiskError(FAILED_TO_PROVISION);
  private timedOut = false;
  private action: ActionFacts | undefined;
  private initStart: number | undefined;
  private initEnd: number | undefined;
  private runStart: number | undefined;
  private runEnd: number | undefined;
  private logs: string[] = [];
  private readonly extra: Annotation[] = [];
  /** Set when the activation was ended early (shutdown): the work still unwinding must not change it. */
  private sealed = false;

  constructor(
    private readonly message: Pick<ActivationMessage, 'transid' | 'action' | 'user' | 'activationId' | 'cause'>,
    private readonly now: () => number,
  ) {}

  describeAction(action: ActionFacts): void {
    if (this.sealed) return;
    this.action = action;
  }

  initialized(start: number, end: number): void {
    if (this.sealed) return;
    this.initStart = start;
    this.initEnd = end;
  }

  running(start: number): void {
    if (this.sealed) return;
    this.runStart = start;
  }

  ran(end: number, response: ActivationResponse, timedOut: boolean): void {
    if (this.sealed) return;
    this.runEnd = end;
    this.respond(response, timedOut);
  }

  respond(response: ActivationResponse, timedOut = false): void {
    if (this.sealed) return;
    this.response = response;
    this.timedOut = timedOut;
  }

  setLogs(lines: string[]): void {
    if (this.sealed) return;
    this.logs = lines;
  }

  /** An annotation after the standard ones (e.g. the controller's forced-completion marker). */
  annotate(annotation: Annotation): void {
    this.extra.push(annotation);
  }

  /** Ends the record with `response` now; later changes are ignored. */
  endWith(response: ActivationResponse): void {
    if (this.sealed) return;
    this.respond(response);
    if (this.runStart !== undefined && this.runEnd === undefined) this.runEnd = this.now();
    if (this.initStart !== undefined && this.initEnd === undefined) this.initEnd = this.now();
    this.sealed = true;
  }

  /** From the transaction's start to the start of init (cold) or run (warm); pool queueing included. */
  waitMs(): number {
    const started = this.initStart ?? this.runStart ?? this.now();
    return Math.max(0, started - this.message.transid.start);
  }

  /** The action's time limit, once the action is known. */
  timeLimitMs(): number | undefined {
    return this.action?.limits.timeoutMs;
  }

  initMs(): number | undefined {
    return this.initStart !== undefined && this.initEnd !== undefined ? this.initEnd - this.initStart : undefined;
  }

  build(): WhiskActivation {
    const end = this.runEnd ?? this.initEnd ?? this.now();
    // Cold start: the record spans init and run, as upstream reports it.
    const start = this.initStart ?? this.runStart ?? end;
    const m = this.message;
    const annotations: Annotation[] = [];
    if (this.action) {
      const l = this.action.limits;
      annotations.push({
        key: ANNOTATION_LIMITS,
        value: { timeout: l.timeoutMs, memory: l.memoryMb, logs: l.logsMb, concurrency: l.concurrency },
      });
    }
    annotations.push({ key: ANNOTATION_PATH, value: `${m.action.path}/${m.action.name}` });
    if (this.action) annotations.push({ key: ANNOTATION_KIND, value: this.action.kind });
    annotations.push({ key: ANNOTATION_TIMEOUT, value: this.timedOut });
    const initMs = this.initMs();
    if (initMs !== undefined) annotations.push({ key: ANNOTATION_INIT_TIME, value: initMs });
    if (this.initStart !== undefined || this.runStart !== undefined) {
      annotations.push({ key: ANNOTATION_WAIT_TIME, value: this.waitMs() });
    }
    if (m.cause !== undefined) annotations.push({ key: ANNOTATION_CAUSED_BY, value: 'sequence' });
    if (m.action.binding !== undefined) annotations.push({ key: ANNOTATION_BINDING, value: m.action.binding });
    annotations.push(...this.extra);

    const activation: WhiskActivation = {
      namespace: m.user.namespace.name,
      name: m.action.name,
      subject: m.user.subject,
      activationId: m.activationId,
      start,
      end,
      response: this.response,
      logs: this.logs,
      version: m.action.version ?? this.action?.version ?? '0.0.1',
      publish: false,
      annotations,
      duration: end - start,
    };
    if (m.cause !== undefined) activation.cause = m.cause;
    return activation;
  }
}
