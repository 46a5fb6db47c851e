/**
 * The overlayfs snapshotter: each snapshot stores only its own changes (an overlay upper
 * directory) and is assembled by the kernel from its parents' directories (containerd's
 * snapshots/overlay).
 *
 * Layout under the root:
 *
 * ```
 * metadata.db               the snapshot records (storage.ts)
 * snapshots/<id>/fs         the snapshot's own layer (upperdir while active, lowerdir after)
 * snapshots/<id>/work       overlay's workdir (active snapshots only)
 * snapshots/new-*, rm-*     a snapshot being made / being deleted
 * ```
 *
 * Mounts: without a parent, `bind <id>/fs` with options `rw,rbind` (`ro,rbind` for a view).
 * With parents: `overlay` with `index=off` (when the kernel has the parameter), `workdir=`,
 * `upperdir=` (active only) and `lowerdir=` listing the parents' `fs` dirs nearest first. A view
 * of a single parent is a read-only bind of the parent's `fs`; a view of a chain is an overlay
 * of lowerdirs only.
 *
 * Removal is asynchronous by default, as in containerd's plugin: `remove` drops the record and
 * `cleanup` (run by the garbage collector) deletes the directories no record owns. With
 * `syncRemove` the directory goes at once.
 *
 * @example
 * ```ts
 * import { OverlaySnapshotter } from "./overlay.ts";
 * const sn = await OverlaySnapshotter.open(await Deno.makeTempDir());
 * await sn.prepare("base-work", "");
 * await sn.commit("base", "base-work");
 * const mounts = await sn.prepare("top", "base");
 * // [{ type: "overlay", source: "overlay", options: ["index=off", "workdir=…", "upperdir=…", "lowerdir=…"] }]
 * sn.close();
 * ```
 * @module
 */
import { resolve } from "node:path";
import { AbortedError } from "../../../server/errdefs.ts";
import { type Logger, silentLogger } from "../../../server/log.ts";
import { mountOne, readMounts, unmountAll } from "../../../server/mount.ts";
import { openMountSyscalls } from "../../../server/mount_syscall.ts";
import {
  Kind,
  type Mount,
  type SnapshotInfo,
  type Snapshotter,
  type SnapshotUpdate,
  type Usage,
  type WalkFn,
} from "../api.ts";
import {
  deleteSnapshotDir,
  detachSnapshotDir,
  diskUsage,
  existsSync,
  MetaStore,
  removeAll,
  SnapshotDirError,
  type StoredSnapshot,
  syncDir,
} from "../storage.ts";

/** Label that, with `upperdirLabel`, reports each snapshot's upper directory. */
export const UPPERDIR_LABEL = "containerd.io/snapshot/overlay.upperdir";

/** Options of {@link OverlaySnapshotter.open}. */
export interface OverlayOptions {
  /** Add {@link UPPERDIR_LABEL} to the info of every snapshot (config `upperdir_label`). */
  upperdirLabel?: boolean;
  /** Delete a removed snapshot's directory at once rather than at `cleanup` (config `sync_remove`). */
  syncRemove?: boolean;
  /** Where warnings go. Default: nowhere. */
  log?: Logger;
}

/** Whether the kernel's overlay module has the `index` parameter (then mounts say `index=off`). */
export function supportsIndex(): boolean {
  return existsSync("/sys/module/overlay/parameters/index");
}

/** True when this process runs in a user namespace other than the initial one. */
export function runningInUserNS(): boolean {
  try {
    const map = Deno.readTextFileSync("/proc/self/uid_map").trim().split(/\s+/);
    return !(map.length === 3 && map[0] === "0" && map[1] === "0" && map[2] === "4294967295");
  } catch {
    return false;
  }
}

/**
 * Whether overlay mounts need the `userxattr` option: only inside a user namespace, on a
 * kernel ≥ 5.11, with the root not on tmpfs (containerd's NeedsUserXAttr, fast path).
 */
export async function needsUserXAttr(root: string): Promise<boolean> {
  if (!runningInUserNS()) return false;
  const [major = 0, minor = 0] = Deno.osRelease().split(/[.-]/).map(Number);
  if (major < 5 || (major === 5 && minor < 11)) return false;
  const mounts = await readMounts();
  let best = { point: "", type: "" };
  for (const m of mounts) {
    const inside = root === m.mountPoint ||
      root.startsWith(m.mountPoint === "/" ? "/" : `${m.mountPoint}/`);
    if (inside && m.mountPoint.length >= best.point.length) {
      best = { point: m.mountPoint, type: m.fsType };
    }
  }
  return best.type !== "tmpfs";
}

/** What {@link overlaySupport} reads besides the mount itself; tests substitute it. */
export interface OverlayProbe {
  /** The text of /proc/filesystems. Default: read it. */
  readFilesystems?: () => Promise<string>;
}

/**
 * Check that overlayfs works with `root` as the home of its layers, the way containerd's
 * overlayutils.Supported does: an overlay of two lowerdirs plus an upperdir made in `root`
 * really mounts. Returns undefined when it works, else the reason.
 *
 * The mount is tried first: where overlay is a module not loaded yet (Debian's kernels, until
 * something mounts an overlay), the kernel loads it for the mount and /proc/filesystems does
 * not list it before. That list only explains a failed mount.
 */
export async function overlaySupport(
  root: string,
  probe: OverlayProbe = {},
): Promise<string | undefined> {
  const failed = await mountCheck(root);
  if (failed === undefined) return undefined;
  let filesystems: string;
  try {
    filesystems = await (probe.readFilesystems ?? (() => Deno.readTextFile("/proc/filesystems")))();
  } catch {
    return failed;
  }
  if (!filesystems.split("\n").some((line) => line.split("\t").at(-1) === "overlay")) {
    return `the kernel does not support overlay (no overlay in /proc/filesystems): ${failed}`;
  }
  return failed;
}

/** Mount and unmount the two-lowerdir check overlay in `root`: undefined, or why it failed. */
async function mountCheck(root: string): Promise<string | undefined> {
  await Deno.mkdir(root, { recursive: true, mode: 0o700 });
  const check = await Deno.makeTempDir({ dir: root, prefix: "multiple-lowerdir-check" });
  try {
    for (const dir of ["lower1", "lower2", "upper", "work", "merged"]) {
      await Deno.mkdir(`${check}/${dir}`, { mode: 0o755 });
    }
    const overlay = {
      type: "overlay",
      source: "overlay",
      options: [
        `lowerdir=${check}/lower2:${check}/lower1`,
        `upperdir=${check}/upper`,
        `workdir=${check}/work`,
      ],
    };
    const merged = `${check}/merged`;
    // One libc binding for one mount(2) and one umount2(2): mountAll and unmountAll would bind
    // it each and read the mount table around the unmount, ~3 ms more of every boot.
    // mountOne falls back to mount(8) (which names the reason) and the unmount to unmountAll
    // (which finds what is still mounted) when FFI is not there or a direct call fails.
    const calls = openMountSyscalls();
    try {
      try {
        await mountOne(overlay, merged, calls);
      } catch (err) {
        return `failed to mount overlay in ${root}: ${(err as Error).message}`;
      }
      let unmounted = false;
      if (calls) {
        try {
          calls.unmount(merged);
          unmounted = true;
        } catch { /* unmountAll below */ }
      }
      if (!unmounted) await unmountAll(merged);
      return undefined;
    } finally {
      calls?.close();
    }
  } finally {
    await removeAll(check).catch(() => {});
  }
}

/** The overlayfs snapshotter on one root directory. */
export class OverlaySnapshotter implements Snapshotter {
  /** The snapshotter's root directory. */
  readonly root: string;
  readonly #ms: MetaStore;
  readonly #log: Logger;
  readonly #upperdirLabel: boolean;
  readonly #syncRemove: boolean;
  readonly #indexOff: boolean;
  readonly #userxattr: boolean;

  private constructor(
    root: string,
    ms: MetaStore,
    options: OverlayOptions,
    indexOff: boolean,
    userxattr: boolean,
  ) {
    this.root = root;
    this.#ms = ms;
    this.#log = options.log ?? silentLogger();
    this.#upperdirLabel = options.upperdirLabel ?? false;
    this.#syncRemove = options.syncRemove ?? false;
    this.#indexOff = indexOff;
    this.#userxattr = userxattr;
  }

  /**
   * Open (creating when missing, mode 0700) the snapshotter at `root`, sweeping the `new-*`
   * and `rm-*` directories an interrupted create or remove left. Does not check kernel
   * support: see {@link overlaySupport}.
   */
  static async open(dir: string, options: OverlayOptions = {}): Promise<OverlaySnapshotter> {
    const root = resolve(dir); // lowerdirs and binds need absolute paths
    await Deno.mkdir(`${root}/snapshots`, { recursive: true, mode: 0o700 });
    const ms = MetaStore.open(`${root}/metadata.db`);
    for await (const entry of Deno.readDir(`${root}/snapshots`)) {
      if (entry.name.startsWith("new-") || entry.name.startsWith("rm-")) {
        await removeAll(`${root}/snapshots/${entry.name}`);
      }
    }
    return new OverlaySnapshotter(root, ms, options, supportsIndex(), await needsUserXAttr(root));
  }

  #upper(id: string): string {
    return `${this.root}/snapshots/${id}/fs`;
  }

  #work(id: string): string {
    return `${this.root}/snapshots/${id}/work`;
  }

  #withUpperdir(id: string, info: SnapshotInfo): SnapshotInfo {
    if (!this.#upperdirLabel) return info;
    return { ...info, labels: { ...info.labels, [UPPERDIR_LABEL]: this.#upper(id) } };
  }

  #mounts(s: StoredSnapshot): Mount[] {
    const [nearest] = s.parentIds;
    if (nearest === undefined) {
      // Overlay needs at least one lowerdir: a parentless snapshot is a plain bind.
      return [{
        type: "bind",
        source: this.#upper(s.id),
        options: [s.kind === Kind.VIEW ? "ro" : "rw", "rbind"],
      }];
    }
    const options: string[] = [];
    if (this.#indexOff) options.push("index=off");
    if (this.#userxattr) options.push("userxattr");
    if (s.kind === Kind.ACTIVE) {
      options.push(`workdir=${this.#work(s.id)}`, `upperdir=${this.#upper(s.id)}`);
    } else if (s.parentIds.length === 1) {
      return [{ type: "bind", source: this.#upper(nearest), options: ["ro", "rbind"] }];
    }
    options.push(`lowerdir=${s.parentIds.map((id) => this.#upper(id)).join(":")}`);
    return [{ type: "overlay", source: "overlay", options }];
  }

  /** See {@link Snapshotter.stat}. */
  stat(key: string): Promise<SnapshotInfo> {
    return Promise.resolve().then(() =>
      this.#ms.view((tx) => {
        const { id, info } = tx.getInfo(key);
        return this.#withUpperdir(id, info);
      })
    );
  }

  /** See {@link Snapshotter.update}. */
  update(info: SnapshotUpdate, fieldpaths: readonly string[] = []): Promise<SnapshotInfo> {
    return Promise.resolve().then(() =>
      this.#ms.update((tx) => {
        const updated = tx.updateInfo(info, fieldpaths);
        return this.#withUpperdir(tx.getInfo(updated.name).id, updated);
      })
    );
  }

  /** See {@link Snapshotter.usage}: an active snapshot's upper dir is measured now. */
  async usage(key: string): Promise<Usage> {
    const { id, info, usage } = this.#ms.view((tx) => tx.getInfo(key));
    if (info.kind !== Kind.ACTIVE) return usage;
    try {
      return await diskUsage(this.#upper(id));
    } catch (err) {
      throw new SnapshotDirError(
        `usage of snapshot ${key}: upper directory ${this.#upper(id)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** See {@link Snapshotter.mounts}. */
  mounts(key: string): Promise<Mount[]> {
    return Promise.resolve().then(() => this.#mounts(this.#ms.view((tx) => tx.getSnapshot(key))));
  }

  /** See {@link Snapshotter.prepare}. */
  prepare(
    key: string,
    parent = "",
    labels: Readonly<Record<string, string>> = {},
  ): Promise<Mount[]> {
    return Promise.resolve().then(() => this.#create(Kind.ACTIVE, key, parent, labels));
  }

  /** See {@link Snapshotter.view}. */
  view(key: string, parent = "", labels: Readonly<Record<string, string>> = {}): Promise<Mount[]> {
    return Promise.resolve().then(() => this.#create(Kind.VIEW, key, parent, labels));
  }

  /**
   * Make the directories and the record in one synchronous transaction: a `new-*` dir with
   * `fs` (0755, owned like the parent's `fs`) and, when active, `work` (0711), renamed to the
   * new id and fsynced before the record commits.
   */
  #create(
    kind: Kind,
    key: string,
    parent: string,
    labels: Readonly<Record<string, string>>,
  ): Mount[] {
    const snapshots = `${this.root}/snapshots`;
    let temp: string | undefined;
    let placed: string | undefined;
    try {
      const s = this.#ms.update((tx) => {
        tx.checkCreate(kind, key, parent);
        temp = Deno.makeTempDirSync({ dir: snapshots, prefix: "new-" });
        Deno.mkdirSync(`${temp}/fs`);
        Deno.chmodSync(`${temp}/fs`, 0o755);
        if (kind === Kind.ACTIVE) {
          Deno.mkdirSync(`${temp}/work`);
          Deno.chmodSync(`${temp}/work`, 0o711);
        }
        const s = tx.createSnapshot(kind, key, parent, labels);
        const [nearest] = s.parentIds;
        if (nearest !== undefined) {
          const st = Deno.statSync(this.#upper(nearest));
          Deno.chownSync(`${temp}/fs`, st.uid, st.gid);
        }
        const path = `${snapshots}/${s.id}`;
        // An id not committed before (a crash mid-create) may have left its directory.
        if (existsSync(path)) Deno.removeSync(path, { recursive: true });
        Deno.renameSync(temp, path);
        temp = undefined;
        placed = path;
        syncDir(snapshots);
        return s;
      });
      placed = undefined;
      return this.#mounts(s);
    } catch (err) {
      for (const leftover of [temp, placed]) {
        if (leftover === undefined) continue;
        try {
          Deno.removeSync(leftover, { recursive: true });
        } catch (cleanupErr) {
          this.#log.warn("failed to remove directory of a failed create", {
            path: leftover,
            error: cleanupErr,
          });
        }
      }
      throw err;
    }
  }

  /** See {@link Snapshotter.commit}: the upper dir's usage is recorded. */
  async commit(
    name: string,
    key: string,
    labels: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    const found = this.#ms.view((tx) => tx.getInfo(key));
    let usage: Usage = { size: 0, inodes: 0 };
    if (found.info.kind === Kind.ACTIVE) {
      try {
        usage = await diskUsage(this.#upper(found.id));
      } catch (err) {
        throw new SnapshotDirError(
          `commit of snapshot ${key}: upper directory ${this.#upper(found.id)} is unreadable: ${
            (err as Error).message
          }`,
          { cause: err },
        );
      }
    }
    this.#ms.update((tx) => {
      const id = tx.commitActive(key, name, usage, labels);
      if (id !== found.id) {
        throw new AbortedError(`snapshot ${key} was replaced while being committed`);
      }
    });
  }

  /**
   * See {@link Snapshotter.remove}. The key is free at once; the directory goes now with
   * `syncRemove`, else at the next `cleanup`.
   */
  async remove(key: string): Promise<void> {
    const { id } = this.#ms.update((tx) => tx.remove(key));
    if (this.#syncRemove) {
      await deleteSnapshotDir(detachSnapshotDir(this.root, id, this.#log), this.#log);
    }
  }

  /** See {@link Snapshotter.walk}. */
  async walk(fn: WalkFn, filters: readonly string[] = []): Promise<void> {
    const entries = this.#ms.view((tx) =>
      tx.walkInfo(filters).map((info) =>
        this.#upperdirLabel ? this.#withUpperdir(tx.getInfo(info.name).id, info) : info
      )
    );
    for (const info of entries) await fn(info);
  }

  /** See {@link Snapshotter.cleanup}: deletes every directory no record owns. */
  async cleanup(): Promise<void> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(`${this.root}/snapshots`)) names.push(entry.name);
    // Creates are synchronous, so no `new-*` dir is in progress here; ids are read after the
    // listing and the renames happen in the same tick, so no create can slip in between.
    const ids = this.#ms.view((tx) => tx.idMap());
    const doomed = names.filter((name) => !ids.has(name)).map((name) =>
      detachSnapshotDir(this.root, name, this.#log)
    );
    for (const path of doomed) await deleteSnapshotDir(path, this.#log);
  }

  /** See {@link Snapshotter.close}. */
  close(): void {
    this.#ms.close();
  }
}
