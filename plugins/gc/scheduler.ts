/**
 * When to collect garbage: containerd's gc/scheduler. Collections are cheap to skip and
 * costly to run, so the scheduler runs one only when something can have become garbage (a
 * deletion, or enough mutations), no more often than the pause threshold allows, and at once
 * for callers that must see the result (`ScheduleAndWait`, used by `--sync` deletes).
 *
 * The rules, as containerd's run loop:
 * - a deletion (a mutation reported dirty) makes a collection due (`deletionThreshold` 0), or
 *   once `deletionThreshold` deletions happened, urgent;
 * - `mutationThreshold` mutations make one due;
 * - a due collection runs no earlier than `interval` after the last one, where the interval
 *   is `avg/pauseThreshold - avg` (avg = mean collection time), so collecting takes at most
 *   `pauseThreshold` of the time; an urgent one runs after `scheduleDelay`;
 * - the first collection runs `startupDelay` after boot;
 * - with nothing due, no timer runs (containerd ticks every interval and skips; the
 *   collections happen at the same times).
 *
 * @example
 * ```ts
 * import { GCScheduler } from "./scheduler.ts";
 * const scheduler = new GCScheduler(metadataStore, { pauseThreshold: 0.02, deletionThreshold: 0,
 *   mutationThreshold: 100, scheduleDelayMs: 0, startupDelayMs: 100 });
 * await scheduler.scheduleAndWait(); // a collection that started after this call
 * scheduler.close();
 * ```
 * @module
 */
import { type Logger, silentLogger } from "../../server/log.ts";
import type { GCStats, MutationListener } from "../metadata/api.ts";
import type { GarbageCollector } from "./api.ts";

/** The contract this scheduler implements (the GC plugin's instance type). */
export type { GarbageCollector };

/** What the scheduler drives: the metadata store (or a fake in tests). */
export interface GCCollector {
  /** Subscribe to committed mutations; returns an unsubscribe. */
  onMutation(listener: MutationListener): () => void;
  /** Run one collection. */
  garbageCollect(): Promise<GCStats>;
}

/** The scheduler's knobs in milliseconds (see the module doc). */
export interface SchedulerOptions {
  /** Share of time collections may take; clamped to [0, 0.5]. Default 0.02. */
  pauseThreshold: number;
  /** Deletions that force a collection; 0 = any deletion schedules one. Default 0. */
  deletionThreshold: number;
  /** Mutations that make a tick collect; 0 = mutations alone never do. Default 100. */
  mutationThreshold: number;
  /** Delay from a trigger to the collection. Default 0. */
  scheduleDelayMs: number;
  /** Delay from boot to the first collection; 0 = none. Default 100. */
  startupDelayMs: number;
  /** Where failures go. Default silent. */
  log?: Logger;
}

/** Thrown to `scheduleAndWait` callers when the collection they waited for failed. */
export class GCFailedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GCFailedError";
  }
}

interface Waiter {
  resolve: (stats: GCStats) => void;
  reject: (err: Error) => void;
}

/** See the module doc. */
export class GCScheduler implements GarbageCollector {
  readonly #collector: GCCollector;
  readonly #pauseThreshold: number;
  readonly #deletionThreshold: number;
  readonly #mutationThreshold: number;
  readonly #scheduleDelay: number;
  readonly #log: Logger;
  readonly #unsubscribe: () => void;

  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the scheduled collection fires (ms epoch); undefined when none is scheduled. */
  #nextCollection: number | undefined;
  #lastCollection: number | undefined;
  #interval = 1000;
  #gcTime = 0;
  #collections = 0;
  #triggered = false;
  #deletions = 0;
  #mutations = 0;
  #running = false;
  #closed = false;
  /** Waiters for the next collection to start. */
  #waiters: Waiter[] = [];

  /** Start scheduling for `collector` (the first run after `startupDelayMs`). */
  constructor(collector: GCCollector, options: SchedulerOptions) {
    this.#collector = collector;
    this.#pauseThreshold = Math.min(Math.max(options.pauseThreshold, 0), 0.5);
    this.#deletionThreshold = Math.max(options.deletionThreshold, 0);
    this.#mutationThreshold = Math.max(options.mutationThreshold, 0);
    this.#scheduleDelay = Math.max(options.scheduleDelayMs, 0);
    this.#log = options.log ?? silentLogger();
    this.#unsubscribe = collector.onMutation((dirty) => this.#event(true, dirty));
    const startup = Math.max(options.startupDelayMs, 0);
    if (startup > 0) this.#schedule(startup);
  }

  /** Numbers for debug output and tests. */
  get stats(): {
    collections: number;
    intervalMs: number;
    deletions: number;
    mutations: number;
    scheduled: boolean;
  } {
    return {
      collections: this.#collections,
      intervalMs: this.#interval,
      deletions: this.#deletions,
      mutations: this.#mutations,
      scheduled: this.#nextCollection !== undefined,
    };
  }

  scheduleAndWait(signal?: AbortSignal): Promise<GCStats> {
    if (this.#closed) return Promise.reject(new GCFailedError("gc scheduler is closed"));
    return new Promise<GCStats>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (stats) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(stats);
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(signal?.reason ?? new DOMException("aborted", "AbortError"));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#event(false, false);
    });
  }

  /** Stop scheduling; pending waiters fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextCollection = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(new GCFailedError("gc scheduler closed before collecting"));
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#nextCollection = Date.now() + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#tick();
    }, delay);
  }

  #event(mutation: boolean, dirty: boolean): void {
    if (this.#closed) return;
    if (dirty) this.#deletions++;
    if (mutation) this.#mutations++;
    else this.#triggered = true;
    // While a collection runs, the end of the run decides what comes next.
    if (this.#running) return;
    this.#plan();
  }

  /**
   * Schedule the next collection if one is due: at once (after schedule_delay) when asked
   * for or when the deletion threshold is reached; otherwise, after a deletion or enough
   * mutations, no earlier than the pause threshold allows after the last collection. With
   * nothing to do no timer runs (containerd ticks and skips; the timing is the same).
   */
  #plan(): void {
    const urgent = this.#triggered ||
      (this.#deletionThreshold > 0 && this.#deletions >= this.#deletionThreshold);
    const due = (this.#deletionThreshold === 0 && this.#deletions > 0) ||
      (this.#mutationThreshold > 0 && this.#mutations >= this.#mutationThreshold);
    const now = Date.now();
    let at: number;
    if (urgent) {
      at = now + this.#scheduleDelay;
    } else if (due && this.#nextCollection === undefined) {
      const paced = this.#lastCollection === undefined
        ? now
        : this.#lastCollection + this.#interval;
      at = Math.max(now + this.#scheduleDelay, paced);
    } else {
      return;
    }
    if (this.#nextCollection === undefined || this.#nextCollection > at) {
      this.#schedule(Math.max(at - now, 0));
    }
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    this.#nextCollection = undefined;
    if (
      !this.#triggered && this.#lastCollection !== undefined && this.#deletions === 0 &&
      (this.#mutationThreshold === 0 || this.#mutations < this.#mutationThreshold)
    ) {
      return;
    }
    this.#running = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    // Counters restart now: events from here on are after this collection's mark.
    this.#triggered = false;
    this.#deletions = 0;
    this.#mutations = 0;
    let failed = false;
    try {
      const started = performance.now();
      const stats = await this.#collector.garbageCollect();
      this.#gcTime += stats.metaMs;
      this.#collections++;
      if (this.#pauseThreshold > 0) {
        const avg = this.#gcTime / this.#collections;
        this.#interval = Math.max(avg / this.#pauseThreshold - avg, 1);
      }
      this.#log.debug("garbage collected", {
        d: `${(performance.now() - started).toFixed(3)}ms`,
        removed: stats.removed,
      });
      for (const w of waiters) w.resolve(stats);
    } catch (err) {
      failed = true;
      this.#log.error("garbage collection failed", { error: err });
      const failure = new GCFailedError(
        `garbage collection failed: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
      for (const w of waiters) w.reject(failure);
    } finally {
      this.#running = false;
      this.#lastCollection = Date.now();
    }
    if (this.#closed) return;
    if (failed) {
      // Retry after the usual interval plus a second, as containerd does.
      this.#deletions++;
      this.#schedule(this.#interval + 1000);
      return;
    }
    // Events that arrived during the run (a sync delete, a deletion) plan the next one.
    this.#plan();
  }
}
