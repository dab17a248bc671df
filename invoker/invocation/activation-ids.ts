/**
 * The activation ids this invoker is running or has just finished, so that
 * one activation id handed over twice (a push sent twice at once, a retried
 * push, the same message on HTTP and Kafka) runs once. Bounded: ids of
 * finished activations are remembered oldest-out, up to `capacity`; running
 * ones are always remembered.
 */
export class ActivationIds {
  readonly #running = new Set<string>();
  /** Finished ids in finishing order (a Set iterates in insertion order). */
  readonly #finished = new Set<string>();
  readonly #capacity: number;

  /** `capacity`: finished ids remembered (default 10 000, about a megabyte). */
  constructor(capacity = 10_000) {
    if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be a non-negative integer, got ${capacity}`);
    this.#capacity = capacity;
  }

  /** Takes the id for a run; false when it is running or finished recently. Synchronous: check and take cannot interleave. */
  claim(activationId: string): boolean {
    if (this.#running.has(activationId) || this.#finished.has(activationId)) return false;
    this.#running.add(activationId);
    return true;
  }

  /** Gives a claimed id back unused (the activation was not accepted after all): it may come again. */
  unclaim(activationId: string): void {
    this.#running.delete(activationId);
  }

  /** The claimed activation has ended: remembered among the recent ones. */
  finish(activationId: string): void {
    if (!this.#running.delete(activationId)) return;
    if (this.#capacity === 0) return;
    this.#finished.add(activationId);
    if (this.#finished.size > this.#capacity) {
      const oldest = this.#finished.values().next().value as string;
      this.#finished.delete(oldest);
    }
  }

  /** Whether the id is running ('running'), finished recently ('finished'), or unknown. */
  state(activationId: string): 'running' | 'finished' | undefined {
    if (this.#running.has(activationId)) return 'running';
    return this.#finished.has(activationId) ? 'finished' : undefined;
  }

  get running(): number {
    return this.#running.size;
  }
}
