/**
 * The lease manager's contract (io.containerd.lease.v1): what the Leases service and other
 * plugins (images import, unpack) call to hold resources during multi-step work. Kept apart
 * from the implementation so users depend on the interface only.
 *
 * @module
 */
import type { Lease, LeaseResource } from "../metadata/api.ts";

/** Re-exported so users of the lease contract need not import the metadata API. */
export type { Lease, LeaseResource };

/** Options of {@link LeaseManager.create}. */
export interface CreateLeaseRequest {
  /** The lease id; generated ({@link generateLeaseId}) when empty or absent. */
  id?: string;
  labels?: Record<string, string>;
}

/** Options of {@link LeaseManager.delete}. */
export interface DeleteLeaseOptions {
  /** Run a garbage collection before resolving. */
  sync?: boolean;
  /** Gives up waiting for the collection (the lease stays deleted). */
  signal?: AbortSignal;
}

/** The lease manager's contract (the plugin's instance). */
export interface LeaseManager {
  /** Create a lease; AlreadyExistsError when the id is taken. */
  create(namespace: string, request: CreateLeaseRequest): Lease;
  /** Delete a lease (NotFoundError when missing); with `sync`, after a collection ran. */
  delete(namespace: string, id: string, options?: DeleteLeaseOptions): Promise<void>;
  /** Leases matching containerd filters on id and labels. */
  list(namespace: string, filters?: readonly string[]): Lease[];
  /** Hold a resource (`content`, `ingests`, `snapshots/<sn>`). */
  addResource(namespace: string, id: string, resource: LeaseResource): void;
  /** Release a resource. */
  deleteResource(namespace: string, id: string, resource: LeaseResource): void;
  /** What the lease holds. */
  listResources(namespace: string, id: string): LeaseResource[];
}
