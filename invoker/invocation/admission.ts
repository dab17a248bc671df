/**
 * Whether the invoker takes new activations (enabled, not draining) and how
 * many the Kafka feed may peek. The budget follows upstream's maxPeek: one
 * activation per 128 MiB of user memory (the smallest action), so a backlog
 * stays in Kafka instead of in the invoker's memory. HTTP pushes are sized by
 * the controller's memory semaphores and wait in the pool's bounded queue.
 */
import type { Admission } from './activation-handler.js';

export const MIN_ACTION_MEMORY_MB = 128;

export class InvokerAdmission implements Admission {
  private enabled = true;
  private draining = false;
  private readonly listeners = new Set<() => void>();
  private readonly maxInFlight: number;

  constructor(
    userMemoryMb: number,
    private readonly inFlight: () => number,
  ) {
    this.maxInFlight = Math.max(1, Math.floor(userMemoryMb / MIN_ACTION_MEMORY_MB));
  }

  accepting(): boolean {
    return this.enabled && !this.draining;
  }

  refusalReason(): string | undefined {
    if (this.draining) return 'the invoker is shutting down';
    if (!this.enabled) return 'the invoker is disabled';
    return undefined;
  }

  isEnabled(): boolean {
    return this.enabled;
  }

  isDraining(): boolean {
    return this.draining;
  }

  freeSlots(): number {
    return this.accepting() ? Math.max(0, this.maxInFlight - this.inFlight()) : 0;
  }

  enable(): void {
    this.enabled = true;
    this.changed();
  }

  disable(): void {
    this.enabled = false;
    this.changed();
  }

  /** One-way: a draining invoker never takes work again. */
  startDraining(): void {
    this.draining = true;
    this.changed();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Capacity may have freed (an activation finished). */
  changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/** What announces the invoker to the controllers (the Kafka health pings). */
export interface Announcer {
  enable(): void;
  disable(): Promise<void>;
}

/**
 * The admin routes' /enable and /disable: admission follows at once, the
 * announcement follows too, except that draining is one-way: an /enable
 * during the drain must not announce the invoker to the controllers again
 * (its feed has stopped).
 */
export function admissionControls(
  admission: InvokerAdmission,
  announcer: Announcer | undefined,
): { enable(): void; disable(): void; isEnabled(): boolean } {
  return {
    enable() {
      admission.enable();
      if (!admission.isDraining()) announcer?.enable();
    },
    disable() {
      admission.disable();
      void announcer?.disable();
    },
    isEnabled: () => admission.isEnabled(),
  };
}
