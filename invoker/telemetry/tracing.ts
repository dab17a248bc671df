import {
  context as contextApi,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';

export const TRACER_NAME = 'openwhisk-invoker';

/**
 * The parent context of an activation: the message's `traceContext` map (what
 * the controller propagates), else a W3C `traceparent` HTTP header. A globally
 * registered propagator is honoured first; without an SDK there is none, so
 * W3C trace context is also parsed here directly.
 */
export function parentContext(carriers: Array<Readonly<Record<string, unknown>> | undefined>): Context {
  for (const carrier of carriers) {
    if (!carrier) continue;
    const headers = stringValues(carrier);
    const extracted = propagation.extract(ROOT_CONTEXT, headers);
    if (trace.getSpanContext(extracted)) return extracted;
    const traceparent = headers.traceparent;
    const spanContext = traceparent === undefined ? undefined : parseTraceparent(traceparent);
    if (spanContext) return trace.setSpanContext(ROOT_CONTEXT, spanContext);
  }
  return ROOT_CONTEXT;
}

function stringValues(carrier: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(carrier)) {
    if (typeof value === 'string') out[key.toLowerCase()] = value;
  }
  return out;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function parseTraceparent(value: string) {
  const match = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!match || match[1] === 'ff') return undefined;
  const traceId = match[2]!;
  const spanId = match[3]!;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  const flags = parseInt(match[4]!, 16) & TraceFlags.SAMPLED;
  return { traceId, spanId, traceFlags: flags, isRemote: true };
}

/**
 * One activation's spans: a root span and children for each phase. Phases run
 * inside the root's context so library instrumentation, if any is registered,
 * nests under it too.
 */
export class ActivationTrace {
  private readonly root: Span;
  private readonly rootContext: Context;
  private running: string | undefined;

  constructor(
    private readonly tracer: Tracer,
    parent: Context,
    attributes: Record<string, string | number | boolean>,
  ) {
    this.root = tracer.startSpan('activation', { kind: SpanKind.CONSUMER, attributes }, parent);
    this.rootContext = trace.setSpan(parent, this.root);
  }

  /** Runs `work` inside a child span named `phase`, recording failures. */
  async phase<T>(phase: string, work: (span: Span) => Promise<T>): Promise<T> {
    const span = this.tracer.startSpan(phase, {}, this.rootContext);
    this.running = phase;
    try {
      return await contextApi.with(trace.setSpan(this.rootContext, span), () => work(span));
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      if (this.running === phase) this.running = undefined;
      span.end();
    }
  }

  /** The phase running now (e.g. `run`), for saying where an activation was interrupted. */
  currentPhase(): string | undefined {
    return this.running;
  }

  setAttributes(attributes: Record<string, string | number | boolean>): void {
    this.root.setAttributes(attributes);
  }

  end(statusCode: number): void {
    this.root.setAttribute('whisk.status_code', statusCode);
    if (statusCode === 3) this.root.setStatus({ code: SpanStatusCode.ERROR, message: 'system error' });
    this.root.end();
  }
}

export function defaultTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}
