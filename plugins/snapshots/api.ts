/**
 * The snapshotter contract: containerd's `snapshots.Snapshotter`, namespace-free. A
 * snapshotter keeps a tree of filesystem snapshots by key — active ones (writable, made by
 * `prepare`), views (read-only, made by `view`) and committed ones (immutable, made by
 * `commit` of an active one, usable as parents) — and hands out the mounts that assemble each
 * one. The snapshotter plugins (io.containerd.snapshotter.v1.native, .overlayfs) provide it;
 * the metadata layer maps per-namespace names onto its keys, and the Snapshots service is a
 * thin translation of protobuf onto the metadata layer.
 *
 * Errors (server/errdefs.ts): AlreadyExistsError `snapshot <key>: already exists`;
 * NotFoundError `snapshot <key> does not exist: not found` (and for a missing parent);
 * FailedPreconditionError for a parent that is not committed, a commit of a view, mounts of a
 * committed snapshot and the removal of a snapshot that has children; InvalidArgumentError for
 * an empty key or an immutable field in `update`.
 *
 * @example
 * ```ts
 * import type { Snapshotter } from "./api.ts";
 * async function unpackInto(sn: Snapshotter, chainId: string, parent: string) {
 *   const key = `extract-${Date.now()} ${chainId}`;
 *   const mounts = await sn.prepare(key, parent, { "containerd.io/gc.root": "now" });
 *   // ... mount `mounts`, apply a layer ...
 *   await sn.commit(chainId, key);
 *   return mounts;
 * }
 * ```
 * @module
 */
import type { PluginPlatform } from "../../server/plugin.ts";

/**
 * A snapshot's kind, numbered as containerd's proto (`containerd.services.snapshots.v1.Kind`):
 * 0 unknown, 1 view, 2 active, 3 committed.
 */
export const Kind = {
  UNKNOWN: 0,
  VIEW: 1,
  ACTIVE: 2,
  COMMITTED: 3,
} as const;

/** One of the {@link Kind} numbers. */
export type Kind = typeof Kind[keyof typeof Kind];

/**
 * The lower-case name of a kind as containerd's filters and `ctr snapshots ls` spell it
 * (`view`, `active`, `committed`; `unknown` otherwise).
 */
export function kindName(kind: Kind): "view" | "active" | "committed" | "unknown" {
  switch (kind) {
    case Kind.VIEW:
      return "view";
    case Kind.ACTIVE:
      return "active";
    case Kind.COMMITTED:
      return "committed";
    default:
      return "unknown";
  }
}

/** The kind a name (any case) spells, as containerd's `ParseKind`; unknown names give 0. */
export function parseKind(name: string): Kind {
  switch (name.toLowerCase()) {
    case "view":
      return Kind.VIEW;
    case "active":
      return Kind.ACTIVE;
    case "committed":
      return Kind.COMMITTED;
    default:
      return Kind.UNKNOWN;
  }
}

/**
 * One mount that assembles (part of) a snapshot, as containerd's `types.Mount` carries it:
 * `mount -t <type> <source> <target> -o <options joined by ",">`. Applied in order onto the
 * same target (server/mount.ts `mountAll`).
 */
export interface Mount {
  /** `bind` or a filesystem type such as `overlay`. */
  type: string;
  /** A directory for binds; `overlay` for overlay mounts. */
  source: string;
  /** Mount options, e.g. `["rbind", "rw"]` or `["index=off", "workdir=…", "upperdir=…", "lowerdir=…"]`. */
  options: string[];
}

/** What `stat`, `update` and `walk` report about a snapshot (containerd's `snapshots.Info`). */
export interface SnapshotInfo {
  /** The snapshot's key (active, view) or name (committed). */
  name: string;
  /** The parent's name; "" for none. */
  parent: string;
  /** Active, view or committed. */
  kind: Kind;
  /** Creation time; a commit sets it anew, as containerd's storage does. */
  created: Date;
  /** Last change of the snapshot's record (creation, commit, label update). */
  updated: Date;
  /** The snapshot's labels (a fresh object the caller may keep). */
  labels: Record<string, string>;
}

/** What `update` reads from its argument: the name and, for the label paths, the labels. */
export interface SnapshotUpdate {
  /** The snapshot to change. */
  name: string;
  /** The labels the field paths read; absent means none. */
  labels?: Readonly<Record<string, string>>;
}

/** Disk use of a snapshot's own layer (containerd's `snapshots.Usage`). */
export interface Usage {
  /** Bytes allocated (512-byte blocks × 512), each inode counted once. */
  size: number;
  /** Distinct inodes, the snapshot's root dir included. */
  inodes: number;
}

/** Called by `walk` for each matching snapshot; may be async. Throwing stops the walk. */
export type WalkFn = (info: SnapshotInfo) => void | Promise<void>;

/** A local, namespace-free snapshotter. */
export interface Snapshotter {
  /** The directory the snapshotter keeps its metadata.db and snapshots/ in. */
  readonly root: string;
  /** The info of the snapshot `key`; NotFoundError when there is none. */
  stat(key: string): Promise<SnapshotInfo>;
  /**
   * Change a snapshot's labels and return the new info. `fieldpaths`: `labels.<k>` sets (or,
   * with no or an empty value in `info.labels`, deletes) one label; `labels` replaces all;
   * none at all replaces all. Any other path: InvalidArgumentError. `updated` becomes now.
   */
  update(info: SnapshotUpdate, fieldpaths?: readonly string[]): Promise<SnapshotInfo>;
  /**
   * Disk use of the snapshot's own layer: measured now for an active snapshot, the value
   * recorded at commit for a committed one (views report 0).
   */
  usage(key: string): Promise<Usage>;
  /** The mounts of an active snapshot or view; FailedPreconditionError for a committed one. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Create the active snapshot `key` on top of the committed snapshot `parent` ("" for none)
   * and return its mounts.
   */
  prepare(
    key: string,
    parent?: string,
    labels?: Readonly<Record<string, string>>,
  ): Promise<Mount[]>;
  /** Create the read-only view `key` of `parent` ("" for an empty one) and return its mounts. */
  view(key: string, parent?: string, labels?: Readonly<Record<string, string>>): Promise<Mount[]>;
  /**
   * Turn the active snapshot `key` into the committed snapshot `name` (labels replaced by
   * `labels`, usage recorded); `key` is gone afterwards. A view cannot be committed.
   */
  commit(name: string, key: string, labels?: Readonly<Record<string, string>>): Promise<void>;
  /** Remove a snapshot that has no children. Disk space may be freed later by `cleanup`. */
  remove(key: string): Promise<void>;
  /**
   * Call `fn` for each snapshot matching `filters` (containerd's filter syntax over `name`,
   * `parent`, `kind` and `labels.<k>`; any filter may match; none = all). The set is read
   * in one transaction before the first call, so `fn` may call back into the snapshotter.
   */
  walk(fn: WalkFn, filters?: readonly string[]): Promise<void>;
  /** Remove directories that no snapshot in the metadata store owns (left by remove or a crash). */
  cleanup(): Promise<void>;
  /** Close the metadata store; idempotent. Later calls fail. */
  close(): void;
}

/** The platform a snapshotter plugin reports to introspection: this OS and CPU, Go-style. */
export function defaultPlatform(): PluginPlatform {
  const architecture = ({
    x86_64: "amd64",
    aarch64: "arm64",
  } as Record<string, string>)[Deno.build.arch] ?? Deno.build.arch;
  return { os: Deno.build.os, architecture };
}
