/**
 * An async readers–writer lock. The metadata content store takes it shared around the steps
 * that make a blob referenced (opening a shared ingest, committing a blob and its row), and
 * the GC takes it exclusive while it removes unreferenced blobs from disk, so a blob can
 * never be deleted between "it is on disk" and "its row exists" (containerd's `cs.l`).
 *
 * Waiters are served in arrival order; a waiting writer holds back later readers, so the GC
 * cannot be starved by a stream of commits.
 *
 * @example
 * ```ts
 * import { RWLock } from "./rwlock.ts";
 * const lock = new RWLock();
 * await lock.shared(async () => {  ... });
 * await lock.exclusive(async () => { ... });
 * ```
 * @module
 */

interface Waiter {
  exclusive: boolean;
  grant: () => void;
}

/** See the module doc. */
export class RWLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Waiter[] = [];

  /** Run `fn` while holding the lock shared (with other shared holders). */
  async shared<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#drain();
    }
  }

  /** Run `fn` while holding the lock alone. */
  async exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#drain();
    }
  }

  /** Holders and waiters, for tests and debug output. */
  get state(): { readers: number; writer: boolean; waiting: number } {
    return { readers: this.#readers, writer: this.#writer, waiting: this.#queue.length };
  }

  #acquire(exclusive: boolean): Promise<void> {
    if (this.#queue.length === 0 && this.#canGrant(exclusive)) {
      this.#take(exclusive);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#queue.push({
        exclusive,
        grant: () => {
          this.#take(exclusive);
          resolve();
        },
      });
    });
  }

  #canGrant(exclusive: boolean): boolean {
    return exclusive ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #take(exclusive: boolean): void {
    if (exclusive) this.#writer = true;
    else this.#readers++;
  }

  #drain(): void {
    while (this.#queue.length > 0) {
      const next = this.#queue[0] as Waiter;
      if (!this.#canGrant(next.exclusive)) return;
      this.#queue.shift();
      next.grant();
    }
  }
}
