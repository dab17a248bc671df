/**
 * Initialized containers by warmKey, for the warm-reuse lookup.
 */
export interface WarmCandidate {
  readonly warmKey: string | undefined;
  readonly inFlight: number;
  readonly lastUsedAt: number;
}

export class WarmIndex<E extends WarmCandidate> {
  private readonly byKey = new Map<string, Set<E>>();

  add(key: string, entry: E): void {
    let set = this.byKey.get(key);
    if (set === undefined) {
      set = new Set();
      this.byKey.set(key, set);
    }
    set.add(entry);
  }

  remove(key: string, entry: E): void {
    const set = this.byKey.get(key);
    if (set === undefined) return;
    set.delete(entry);
    if (set.size === 0) this.byKey.delete(key);
  }

  /**
   * The most recently used container for `key` that has a free run slot
   * (in-flight < concurrency) and passes `usable`. Most recently used first
   * keeps a working set hot and lets the rest go idle, pause and expire.
   */
  find(key: string, concurrency: number, usable: (entry: E) => boolean): E | undefined {
    const set = this.byKey.get(key);
    if (set === undefined) return undefined;
    let best: E | undefined;
    for (const entry of set) {
      if (entry.inFlight >= concurrency || !usable(entry)) continue;
      if (best === undefined || entry.lastUsedAt > best.lastUsedAt) best = entry;
    }
    return best;
  }
}
