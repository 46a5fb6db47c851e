/**
 * `containerd.services.snapshots.v1.Snapshots`: prepare, view, commit and inspect
 * snapshots of a snapshotter (`ctr snapshots`). Every call names the snapshotter
 * (default `overlayfs`, as ctr).
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const mounts = await client.snapshots.prepare("work", "", { snapshotter: "native" });
 * await client.snapshots.commit("layer-1", "work", { snapshotter: "native" });
 * ```
 * @module
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type Info,
  Kind,
  Snapshots,
} from "../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Mount } from "../proto/gen/containerd/types/mount_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** The snapshotter used when none is named. */
export const DEFAULT_SNAPSHOTTER = "overlayfs";

/** A mount as snapshotters return it. */
export interface MountInfo {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** A snapshot's kind. */
export type SnapshotKind = "view" | "active" | "committed" | "unknown";

/** A snapshot's info. */
export interface SnapshotInfo {
  name: string;
  /** "" without parent. */
  parent: string;
  kind: SnapshotKind;
  createdAt?: Date;
  updatedAt?: Date;
  labels: Record<string, string>;
}

/** Options naming the snapshotter. */
export interface SnapshotOptions extends CallOptions {
  /** Default {@link DEFAULT_SNAPSHOTTER}. */
  snapshotter?: string;
}

/** Options of calls creating a snapshot. */
export interface SnapshotCreateOptions extends SnapshotOptions {
  labels?: Record<string, string>;
}

/** Disk usage of a snapshot. */
export interface SnapshotUsage {
  size: number;
  inodes: number;
}

const KINDS: Record<number, SnapshotKind> = {
  [Kind.VIEW]: "view",
  [Kind.ACTIVE]: "active",
  [Kind.COMMITTED]: "committed",
};

function toMount(m: Mount): MountInfo {
  return { type: m.type, source: m.source, target: m.target, options: [...m.options] };
}

function toInfo(info: Info | undefined): SnapshotInfo {
  const out: SnapshotInfo = {
    name: info?.name ?? "",
    parent: info?.parent ?? "",
    kind: KINDS[info?.kind ?? -1] ?? "unknown",
    labels: { ...info?.labels },
  };
  if (info?.createdAt) out.createdAt = timestampDate(info.createdAt);
  if (info?.updatedAt) out.updatedAt = timestampDate(info.updatedAt);
  return out;
}

/**
 * The Snapshots service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * for (const s of await client.snapshots.list()) console.log(s.name, s.kind, s.parent);
 * ```
 */
export class SnapshotsClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.snapshots`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Create an active snapshot `key` on `parent` ("" for none); returns its mounts.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const mounts = await client.snapshots.prepare("work", "");
   * ```
   */
  async prepare(
    key: string,
    parent = "",
    options: SnapshotCreateOptions = {},
  ): Promise<MountInfo[]> {
    const res = await this.#rpc.unary(Snapshots.method.prepare, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
      parent,
      labels: { ...options.labels },
    }, options);
    return res.mounts.map(toMount);
  }

  /**
   * Create a read-only view `key` of `parent`; returns its mounts.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const mounts = await client.snapshots.view("look", "sha256:...");
   * ```
   */
  async view(key: string, parent = "", options: SnapshotCreateOptions = {}): Promise<MountInfo[]> {
    const res = await this.#rpc.unary(Snapshots.method.view, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
      parent,
      labels: { ...options.labels },
    }, options);
    return res.mounts.map(toMount);
  }

  /**
   * The mounts of an active snapshot or view.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const mounts = await client.snapshots.mounts("work");
   * ```
   */
  async mounts(key: string, options: SnapshotOptions = {}): Promise<MountInfo[]> {
    const res = await this.#rpc.unary(Snapshots.method.mounts, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
    }, options);
    return res.mounts.map(toMount);
  }

  /**
   * Commit active snapshot `key` as `name`.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.snapshots.commit("layer-1", "work");
   * ```
   */
  async commit(name: string, key: string, options: SnapshotCreateOptions = {}): Promise<void> {
    await this.#rpc.unary(Snapshots.method.commit, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      name,
      key,
      labels: { ...options.labels },
    }, options);
  }

  /**
   * Remove a snapshot; NotFoundError when absent, FailedPreconditionError with children.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.snapshots.remove("work");
   * ```
   */
  async remove(key: string, options: SnapshotOptions = {}): Promise<void> {
    await this.#rpc.unary(Snapshots.method.remove, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
    }, options);
  }

  /**
   * A snapshot's info; NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { kind, parent } = await client.snapshots.stat("work");
   * ```
   */
  async stat(key: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const res = await this.#rpc.unary(Snapshots.method.stat, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
    }, options);
    return toInfo(res.info);
  }

  /**
   * Snapshots matching any of `filters` (fields kind, name, parent, labels).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const committed = await client.snapshots.list({ filters: ["kind==committed"] });
   * ```
   */
  async list(options: SnapshotOptions & { filters?: string[] } = {}): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    const stream = this.#rpc.serverStream(Snapshots.method.list, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      filters: options.filters ?? [],
    }, options);
    for await (const res of stream) for (const info of res.info) out.push(toInfo(info));
    return out;
  }

  /**
   * Disk usage of a snapshot.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { size, inodes } = await client.snapshots.usage("work");
   * ```
   */
  async usage(key: string, options: SnapshotOptions = {}): Promise<SnapshotUsage> {
    const res = await this.#rpc.unary(Snapshots.method.usage, {
      snapshotter: options.snapshotter ?? DEFAULT_SNAPSHOTTER,
      key,
    }, options);
    return { size: Number(res.size), inodes: Number(res.inodes) };
  }
}

/**
 * The definition `client.use()` builds {@link SnapshotsClient} from.
 *
 * @example
 * ```ts
 * import { connect, snapshotsService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const snapshots = client.use(snapshotsService); // same as client.snapshots
 * ```
 */
export const snapshotsService: ServiceDef<SnapshotsClient> = defineService(
  "snapshots",
  (rpc) => new SnapshotsClient(rpc),
);
