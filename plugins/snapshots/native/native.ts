/**
 * The native snapshotter: every snapshot is a plain directory, and a child starts as a full
 * copy of its parent (containerd's snapshots/native). It works on any filesystem and needs no
 * kernel support beyond bind mounts.
 *
 * Layout under the root:
 *
 * ```
 * metadata.db          the snapshot records (storage.ts)
 * snapshots/<id>/      one directory per active snapshot, committed snapshot and parentless view
 * snapshots/new-*      a snapshot being made (renamed to <id> when its record commits)
 * snapshots/rm-*       a snapshot being deleted
 * ```
 *
 * Mounts: an active snapshot (or a parentless view) is `bind <root>/snapshots/<id>` with
 * options `rbind,rw` (`rbind,ro` for the view); a view of a parent binds the parent's directory
 * read-only, without a copy.
 *
 * Crash safety: the parent is copied into a `new-*` directory outside any transaction; the
 * transaction that records the snapshot renames it to `<id>` and fsyncs `snapshots/` before it
 * commits. A crash leaves either a `new-*` directory (swept at open) or an `<id>` directory
 * whose id is not recorded (taken over by the next create, or swept by `cleanup`). A removal
 * commits first and deletes the directory afterwards.
 *
 * @example
 * ```ts
 * import { NativeSnapshotter } from "./native.ts";
 * const sn = await NativeSnapshotter.open(await Deno.makeTempDir());
 * const mounts = await sn.prepare("work", "");
 * // mounts: [{ type: "bind", source: ".../snapshots/1", options: ["rbind", "rw"] }]
 * await sn.commit("base", "work");
 * sn.close();
 * ```
 * @module
 */
import { resolve } from "node:path";
import { AbortedError } from "../../../server/errdefs.ts";
import { type Logger, silentLogger } from "../../../server/log.ts";
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

/** Options of {@link NativeSnapshotter.open}. */
export interface NativeOptions {
  /** Where warnings (a directory that could not be deleted, ...) go. Default: nowhere. */
  log?: Logger;
}

/**
 * Copy the contents of `src` into the existing directory `dst`, preserving modes, ownership,
 * timestamps, symlinks, hard links, device nodes and xattrs; `dst` takes `src`'s attributes.
 * Uses coreutils `cp -a` (with reflinks where the filesystem has them).
 */
export async function copyDir(src: string, dst: string): Promise<void> {
  const result = await new Deno.Command("cp", {
    args: ["-a", "--reflink=auto", "--", `${src}/.`, dst],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!result.success) {
    const reason = new TextDecoder().decode(result.stderr).trim() || `exit status ${result.code}`;
    throw new SnapshotDirError(`copy ${src} to ${dst}: ${reason}`);
  }
}

/** The native snapshotter on one root directory. */
export class NativeSnapshotter implements Snapshotter {
  /** The snapshotter's root directory. */
  readonly root: string;
  readonly #ms: MetaStore;
  readonly #log: Logger;
  /** `new-*` directories of creates in progress: cleanup leaves them alone. */
  readonly #inflight = new Set<string>();

  private constructor(root: string, ms: MetaStore, log: Logger) {
    this.root = root;
    this.#ms = ms;
    this.#log = log;
  }

  /**
   * Open (creating when missing, mode 0700) the snapshotter at `root` and sweep the
   * `new-*` and `rm-*` directories an interrupted create or remove left behind.
   */
  static async open(dir: string, options: NativeOptions = {}): Promise<NativeSnapshotter> {
    const root = resolve(dir); // mounts need absolute sources
    await Deno.mkdir(`${root}/snapshots`, { recursive: true, mode: 0o700 });
    const ms = MetaStore.open(`${root}/metadata.db`);
    const sn = new NativeSnapshotter(root, ms, options.log ?? silentLogger());
    for await (const entry of Deno.readDir(`${root}/snapshots`)) {
      if (entry.name.startsWith("new-") || entry.name.startsWith("rm-")) {
        await removeAll(`${root}/snapshots/${entry.name}`);
      }
    }
    return sn;
  }

  #dir(id: string): string {
    return `${this.root}/snapshots/${id}`;
  }

  #mounts(s: StoredSnapshot): Mount[] {
    const ro = s.kind === Kind.VIEW ? "ro" : "rw";
    const parent = s.parentIds[0];
    const source = parent === undefined || s.kind === Kind.ACTIVE
      ? this.#dir(s.id)
      : this.#dir(parent);
    return [{ type: "bind", source, options: ["rbind", ro] }];
  }

  /** See {@link Snapshotter.stat}. */
  stat(key: string): Promise<SnapshotInfo> {
    return Promise.resolve().then(() => this.#ms.view((tx) => tx.getInfo(key).info));
  }

  /** See {@link Snapshotter.update}. */
  update(info: SnapshotUpdate, fieldpaths: readonly string[] = []): Promise<SnapshotInfo> {
    return Promise.resolve().then(() => this.#ms.update((tx) => tx.updateInfo(info, fieldpaths)));
  }

  /** See {@link Snapshotter.usage}. */
  async usage(key: string): Promise<Usage> {
    const { id, info, usage } = this.#ms.view((tx) => tx.getInfo(key));
    if (info.kind !== Kind.ACTIVE) return usage;
    try {
      return await diskUsage(this.#dir(id));
    } catch (err) {
      throw new SnapshotDirError(
        `usage of snapshot ${key}: directory ${this.#dir(id)}: ${(err as Error).message}`,
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
    return this.#create(Kind.ACTIVE, key, parent, labels);
  }

  /** See {@link Snapshotter.view}. */
  view(key: string, parent = "", labels: Readonly<Record<string, string>> = {}): Promise<Mount[]> {
    return this.#create(Kind.VIEW, key, parent, labels);
  }

  async #create(
    kind: Kind,
    key: string,
    parent: string,
    labels: Readonly<Record<string, string>>,
  ): Promise<Mount[]> {
    // Fail fast (before any copying) on a taken key or a bad parent.
    const chain = this.#ms.view((tx) => tx.checkCreate(kind, key, parent));
    const copyFrom = chain[0];
    const snapshots = `${this.root}/snapshots`;
    let temp: string | undefined;
    let placed: string | undefined;
    try {
      if (kind === Kind.ACTIVE || copyFrom === undefined) {
        temp = await Deno.makeTempDir({ dir: snapshots, prefix: "new-" });
        this.#inflight.add(temp);
        await Deno.chmod(temp, 0o755);
        if (copyFrom !== undefined) {
          try {
            await copyDir(this.#dir(copyFrom), temp);
          } catch (err) {
            // The parent may have gone while copying: report that rather than cp's words.
            this.#ms.view((tx) => tx.checkCreate(kind, key, parent));
            throw new SnapshotDirError(
              `copying parent ${parent} of snapshot ${key} failed: ${(err as Error).message}`,
              {
                cause: err,
              },
            );
          }
        }
      }
      const s = this.#ms.update((tx) => {
        const s = tx.createSnapshot(kind, key, parent, labels);
        if (s.parentIds[0] !== copyFrom) {
          throw new AbortedError(
            `parent ${parent} of snapshot ${key} changed while it was being copied`,
          );
        }
        if (temp !== undefined) {
          const path = this.#dir(s.id);
          // An id not committed before (a crash mid-create) may have left its directory.
          if (existsSync(path)) Deno.removeSync(path, { recursive: true });
          Deno.renameSync(temp, path);
          placed = path;
          syncDir(snapshots);
        }
        return s;
      });
      placed = undefined;
      return this.#mounts(s);
    } catch (err) {
      if (placed !== undefined) await removeAll(placed);
      throw err;
    } finally {
      if (temp !== undefined) {
        this.#inflight.delete(temp);
        await removeAll(temp);
      }
    }
  }

  /** See {@link Snapshotter.commit}. */
  async commit(
    name: string,
    key: string,
    labels: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    const found = this.#ms.view((tx) => tx.getInfo(key));
    let usage: Usage = { size: 0, inodes: 0 };
    if (found.info.kind === Kind.ACTIVE) {
      try {
        usage = await diskUsage(this.#dir(found.id));
      } catch (err) {
        throw new SnapshotDirError(
          `commit of snapshot ${key}: directory ${this.#dir(found.id)} is unreadable: ${
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

  /** See {@link Snapshotter.remove}: the directory is deleted right after the record. */
  async remove(key: string): Promise<void> {
    const { id } = this.#ms.update((tx) => tx.remove(key));
    await deleteSnapshotDir(detachSnapshotDir(this.root, id, this.#log), this.#log);
  }

  /** See {@link Snapshotter.walk}. */
  async walk(fn: WalkFn, filters: readonly string[] = []): Promise<void> {
    const infos = this.#ms.view((tx) => tx.walkInfo(filters));
    for (const info of infos) await fn(info);
  }

  /** See {@link Snapshotter.cleanup}. */
  async cleanup(): Promise<void> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(`${this.root}/snapshots`)) names.push(entry.name);
    // Read the ids after listing: a directory listed before its record committed is kept.
    const ids = this.#ms.view((tx) => tx.idMap());
    const doomed = names
      .filter((name) => !ids.has(name) && !this.#inflight.has(`${this.root}/snapshots/${name}`))
      .map((name) => detachSnapshotDir(this.root, name, this.#log));
    for (const path of doomed) await deleteSnapshotDir(path, this.#log);
  }

  /** See {@link Snapshotter.close}. */
  close(): void {
    this.#ms.close();
  }
}
