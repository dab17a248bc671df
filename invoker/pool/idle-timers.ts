/**
 * Per-container pause and removal timers. Every timer is unref'd (an idle
 * pool must not keep the process alive) and all of a container's timers are
 * cleared together when it is leased again or destroyed.
 */
export type IdleTimerKind = 'pause' | 'remove';

export class IdleTimers<K> {
  private readonly timers = new Map<K, Map<IdleTimerKind, NodeJS.Timeout>>();

  schedule(owner: K, kind: IdleTimerKind, delayMs: number, fire: () => void): void {
    let own = this.timers.get(owner);
    if (own === undefined) {
      own = new Map();
      this.timers.set(owner, own);
    }
    const previous = own.get(kind);
    if (previous !== undefined) clearTimeout(previous);
    const timer = setTimeout(() => {
      const current = this.timers.get(owner);
      current?.delete(kind);
      if (current?.size === 0) this.timers.delete(owner);
      fire();
    }, delayMs);
    timer.unref();
    own.set(kind, timer);
  }

  clear(owner: K): void {
    const own = this.timers.get(owner);
    if (own === undefined) return;
    for (const timer of own.values()) clearTimeout(timer);
    this.timers.delete(owner);
  }

  clearAll(): void {
    for (const own of this.timers.values()) for (const timer of own.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
