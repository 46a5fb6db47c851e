/**
 * The GC plugin's contract (io.containerd.gc.v1): what deletes with `sync` (leases, images)
 * call to wait for a collection. Kept apart from the scheduler so users depend on the
 * interface only.
 *
 * @module
 */
import type { GCStats } from "../metadata/api.ts";

/** Re-exported so users of the GC contract need not import the metadata API. */
export type { GCStats };

/** The GC plugin's instance. */
export interface GarbageCollector {
  /** Schedule a collection now and resolve with its stats once it ran. */
  scheduleAndWait(signal?: AbortSignal): Promise<GCStats>;
}
