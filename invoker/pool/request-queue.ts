/**
 * Bounded FIFO of requests waiting for capacity. Only the head is ever
 * served (see ContainerPool), so a small later request cannot starve a big
 * earlier one; the price is head-of-line blocking, which is what FIFO means.
 *
 * An array is enough: the queue is bounded (default 1000) and removals from
 * the middle happen only on abort.
 */
export class RequestQueue<T> {
  readonly limit: number;
  private readonly items: T[] = [];

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`queue limit must be a non-negative integer, got ${limit}`);
    this.limit = limit;
  }

  get length(): number {
    return this.items.length;
  }

  /** Appends; false when the queue is full. */
  push(item: T): boolean {
    if (this.items.length >= this.limit) return false;
    this.items.push(item);
    return true;
  }

  /**
   * Puts an already admitted request back at the head (it was placed, then
   * lost its container): exempt from the limit, it was counted once already.
   */
  unshift(item: T): void {
    this.items.unshift(item);
  }

  peek(): T | undefined {
    return this.items[0];
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  remove(item: T): boolean {
    const i = this.items.indexOf(item);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  /** Empties the queue, returning what was in it, in order. */
  takeAll(): T[] {
    return this.items.splice(0, this.items.length);
  }
}
