/**
 * The snapshotters containerd builds in but this daemon does not implement — aufs, btrfs,
 * devmapper, zfs — registered so that introspection (`ctr plugins ls`) lists them as
 * containerd does, each with the reason it did not load on this machine, checked the way
 * containerd checks it:
 *
 * - aufs: `modprobe aufs`, then /proc/filesystems must list aufs; else skipped with
 *   `aufs is not supported (modprobe aufs failed: …)`.
 * - btrfs: the plugin root (created 0700, as containerd does) must be on btrfs; else skipped
 *   with `path <root> (<fstype>) must be a btrfs filesystem to be used with the btrfs
 *   snapshotter`.
 * - devmapper: without `pool_name` in its config it fails with `devmapper not configured` — a
 *   plain error, not a skip, exactly as containerd 1.6 reports it.
 * - zfs: the plugin root must be on zfs; else skipped with `path <root> must be a zfs
 *   filesystem to be used with the zfs snapshotter`.
 *
 * When a check passes (the machine could run it) init fails with NotImplementedError naming
 * the snapshotter, so the user sees why it is not there.
 *
 * @module
 */
import { NotImplementedError } from "../../server/errdefs.ts";
import { lookPath } from "../../server/look_path.ts";
import { type MountInfo, readMounts } from "../../server/mount.ts";
import { register, SkipPluginError } from "../../server/plugin.ts";
import { configSchema, field, type SectionSchema } from "../../server/schema.ts";
import { SnapshotPlugin } from "../types.ts";
import { defaultPlatform, type Snapshotter } from "./api.ts";

/** What the checks read from the machine; tests substitute them. */
export interface MachineProbe {
  /** The mount table. Default: /proc/self/mountinfo. */
  readMounts?: () => Promise<MountInfo[]>;
  /** The text of /proc/filesystems. */
  readFilesystems?: () => Promise<string>;
  /** Run `modprobe <module>`: undefined on success, else the failure text. */
  modprobe?: (module: string) => Promise<string | undefined>;
}

/** The mount holding `path`: the longest mount point that is `path` or one of its parents. */
export function lookupMount(mounts: readonly MountInfo[], path: string): MountInfo | undefined {
  const clean = path.replace(/\/+$/, "") || "/";
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const point = m.mountPoint;
    const holds = point === "/" || clean === point || clean.startsWith(`${point}/`);
    // ">=": of two mounts on one point, the later (upper) one is what the path sees.
    if (holds && (best === undefined || point.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

async function fsTypeOf(path: string, probe: MachineProbe): Promise<string> {
  const mounts = await (probe.readMounts ?? readMounts)();
  const found = lookupMount(mounts, path);
  if (!found) throw new Error(`failed to find the mount info for ${JSON.stringify(path)}`);
  return found.fsType;
}

async function runModprobe(module: string): Promise<string | undefined> {
  // Looked up first, as Go's exec does: a missing modprobe (containers, minimal hosts) is
  // known in ~0.3 ms where a failed spawn took ~4 ms of every boot.
  if (lookPath("modprobe") === undefined) {
    return `exec: "modprobe": executable file not found in $PATH ""`;
  }
  try {
    const out = await new Deno.Command("modprobe", {
      args: [module],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.success) return undefined;
    const text = new TextDecoder().decode(new Uint8Array([...out.stdout, ...out.stderr]));
    return `exit status ${out.code} ${JSON.stringify(text)}`;
  } catch (err) {
    // Worded as Go's os/exec, which containerd's message embeds.
    if (err instanceof Deno.errors.NotFound) {
      return `exec: "modprobe": executable file not found in $PATH ""`;
    }
    return `exec: "modprobe": ${(err as Error).message} ""`;
  }
}

/** Why btrfs cannot be used at `root` (undefined when it is on btrfs). */
export async function btrfsUnsupported(
  root: string,
  probe: MachineProbe = {},
): Promise<string | undefined> {
  const type = await fsTypeOf(root, probe);
  if (type === "btrfs") return undefined;
  return `path ${root} (${type}) must be a btrfs filesystem to be used with the btrfs snapshotter`;
}

/** Why zfs cannot be used at `root` (undefined when it is on zfs). */
export async function zfsUnsupported(
  root: string,
  probe: MachineProbe = {},
): Promise<string | undefined> {
  const type = await fsTypeOf(root, probe);
  if (type === "zfs") return undefined;
  return `path ${root} must be a zfs filesystem to be used with the zfs snapshotter`;
}

/** Why aufs cannot be used (undefined when the kernel has it), after trying to load it. */
export async function aufsUnsupported(probe: MachineProbe = {}): Promise<string | undefined> {
  const failed = await (probe.modprobe ?? runModprobe)("aufs");
  const filesystems =
    await (probe.readFilesystems ?? (() => Deno.readTextFile("/proc/filesystems")))();
  if (filesystems.split("\n").some((line) => line.includes("aufs"))) return undefined;
  return `aufs is not supported${failed === undefined ? "" : ` (modprobe aufs failed: ${failed})`}`;
}

function notImplemented(id: string, root: string): NotImplementedError {
  return new NotImplementedError(
    `the ${id} snapshotter is not implemented by containerd-ts (root ${root}); use overlayfs or native`,
  );
}

/** The config section of aufs, btrfs and zfs: containerd's `root_path`. */
export const rootPathConfig: SectionSchema<{ root_path: string }> = configSchema({
  root_path: field.string(""),
});

/** The devmapper config section, with containerd's keys and defaults. */
export const devmapperConfig: SectionSchema<{
  root_path: string;
  pool_name: string;
  base_image_size: string;
  async_remove: boolean;
  discard_blocks: boolean;
  fs_type: string;
  fs_options: string;
}> = configSchema({
  root_path: field.string(""),
  pool_name: field.string(""),
  base_image_size: field.string(""),
  async_remove: field.boolean(false),
  discard_blocks: field.boolean(false),
  fs_type: field.string(""),
  fs_options: field.string(""),
});

register({
  type: SnapshotPlugin,
  id: "aufs",
  config: rootPathConfig,
  async init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports = { ...ctx.meta.exports, root };
    const reason = await aufsUnsupported();
    if (reason !== undefined) throw new SkipPluginError(reason);
    throw notImplemented("aufs", root);
  },
});

register({
  type: SnapshotPlugin,
  id: "btrfs",
  config: rootPathConfig,
  async init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports = { ...ctx.meta.exports, root };
    // containerd makes the root before looking at its filesystem.
    await Deno.mkdir(root, { recursive: true, mode: 0o700 });
    const reason = await btrfsUnsupported(root);
    if (reason !== undefined) throw new SkipPluginError(reason);
    throw notImplemented("btrfs", root);
  },
});

register({
  type: SnapshotPlugin,
  id: "devmapper",
  config: devmapperConfig,
  init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    // containerd 1.6 reports this as an error, not a skip; `ctr plugins ls` shows "error".
    if (ctx.config.pool_name === "") return Promise.reject(new Error("devmapper not configured"));
    return Promise.reject(notImplemented("devmapper", ctx.config.root_path || ctx.root));
  },
});

register({
  type: SnapshotPlugin,
  id: "zfs",
  config: rootPathConfig,
  async init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports = { ...ctx.meta.exports, root };
    const reason = await zfsUnsupported(root);
    if (reason !== undefined) throw new SkipPluginError(reason);
    throw notImplemented("zfs", root);
  },
});
