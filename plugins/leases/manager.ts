/**
 * The lease manager: the metadata store's lease table plus two things the table cannot do —
 * make up an id when the client sends none, and run the garbage collector before a `sync`
 * delete returns (so `ctr leases rm --sync` sees the space freed).
 *
 * @module
 */
import type { GCStats, Lease, LeaseResource, LeaseStore } from "../metadata/api.ts";
import type { CreateLeaseRequest, DeleteLeaseOptions, LeaseManager } from "./api.ts";

/** Something that runs a collection and waits for it. */
export type SyncCollect = (signal?: AbortSignal) => Promise<GCStats>;

/**
 * A random lease id as containerd makes one: the nanosecond within the current second, a
 * dash, and three random bytes in URL-safe base64 (e.g. `482911034-QmTg`).
 */
export function generateLeaseId(now: number = performance.timeOrigin + performance.now()): string {
  const nanos = Math.floor((now % 1000) * 1e6);
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  const b64 = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
  return `${nanos}-${b64}`;
}

/** {@link LeaseManager} over the metadata store's lease table. */
export class MetadataLeaseManager implements LeaseManager {
  readonly #store: LeaseStore;
  readonly #collect: SyncCollect;

  /** `collect` runs one garbage collection (the GC scheduler's scheduleAndWait). */
  constructor(store: LeaseStore, collect: SyncCollect) {
    this.#store = store;
    this.#collect = collect;
  }

  create(namespace: string, request: CreateLeaseRequest): Lease {
    const id = request.id ? request.id : generateLeaseId();
    return this.#store.create(namespace, { id, labels: request.labels ?? {} });
  }

  async delete(namespace: string, id: string, options: DeleteLeaseOptions = {}): Promise<void> {
    this.#store.delete(namespace, id);
    if (options.sync) await this.#collect(options.signal);
  }

  list(namespace: string, filters: readonly string[] = []): Lease[] {
    return this.#store.list(namespace, filters);
  }

  addResource(namespace: string, id: string, resource: LeaseResource): void {
    this.#store.addResource(namespace, id, resource);
  }

  deleteResource(namespace: string, id: string, resource: LeaseResource): void {
    this.#store.deleteResource(namespace, id, resource);
  }

  listResources(namespace: string, id: string): LeaseResource[] {
    return this.#store.listResources(namespace, id);
  }
}
