/**
 * Memory accounting for the pool, in MiB, for every container (stem cells,
 * being created, in use, being destroyed). Reservation is a synchronous
 * check-and-take, done before ContainerProvider.create() is called, so two
 * cold starts in the same tick can never both see the same free memory.
 */
export class MemoryLedger {
  readonly capacityMb: number;
  private used = 0;

  constructor(capacityMb: number) {
    if (!Number.isSafeInteger(capacityMb) || capacityMb <= 0) {
      throw new RangeError(`user memory must be a positive whole number of MiB, got ${capacityMb}`);
    }
    this.capacityMb = capacityMb;
  }

  get usedMb(): number {
    return this.used;
  }

  get freeMb(): number {
    return this.capacityMb - this.used;
  }

  /** Takes `mb` if it is free; false (and nothing taken) otherwise. */
  tryReserve(mb: number): boolean {
    if (mb > this.freeMb) return false;
    this.used += mb;
    return true;
  }

  release(mb: number): void {
    // Releasing more than was reserved is a bookkeeping bug; failing loudly
    // beats silently letting the pool overcommit later.
    if (mb < 0 || mb > this.used) throw new Error(`memory ledger: releasing ${mb} MB but only ${this.used} MB are reserved`);
    this.used -= mb;
  }
}
