import assert from "node:assert/strict";
import { Code, codeOf } from "../../server/errdefs.ts";
import { Exchange } from "../../server/exchange.ts";
import { silentLogger } from "../../server/log.ts";
import { type MountInfo, readMounts } from "../../server/mount.ts";
import { initPlugins, registry } from "../../server/plugin.ts";
import { SnapshotPlugin } from "../types.ts";
import {
  aufsUnsupported,
  btrfsUnsupported,
  devmapperConfig,
  lookupMount,
  zfsUnsupported,
} from "./others.ts";

const mounts: MountInfo[] = [
  { mountPoint: "/", fsType: "ext4", source: "/dev/vda", options: "rw" },
  { mountPoint: "/var/lib", fsType: "btrfs", source: "/dev/vdb", options: "rw" },
  { mountPoint: "/var/lib/containerd/zfs", fsType: "zfs", source: "tank/c", options: "rw" },
  { mountPoint: "/var/lib/containerd/zfs", fsType: "tmpfs", source: "tmpfs", options: "rw" },
  { mountPoint: "/var/lib2", fsType: "xfs", source: "/dev/vdc", options: "rw" },
];
const probe = { readMounts: () => Promise.resolve(mounts) };

Deno.test("lookupMount finds the longest mount point holding a path; the upper of stacked ones", () => {
  assert.equal(lookupMount(mounts, "/var/lib/containerd/x")?.fsType, "btrfs");
  assert.equal(lookupMount(mounts, "/var/lib2/x")?.fsType, "xfs", "no match on a name prefix");
  assert.equal(lookupMount(mounts, "/var/lib/containerd/zfs/")?.fsType, "tmpfs");
  assert.equal(lookupMount(mounts, "/etc")?.fsType, "ext4");
  assert.equal(lookupMount([], "/etc"), undefined);
});

Deno.test("btrfs and zfs want their root on their own filesystem, worded as containerd", async () => {
  assert.equal(await btrfsUnsupported("/var/lib/containerd/b", probe), undefined);
  assert.equal(
    await btrfsUnsupported("/srv/b", probe),
    "path /srv/b (ext4) must be a btrfs filesystem to be used with the btrfs snapshotter",
  );
  assert.equal(
    await zfsUnsupported("/var/lib/containerd/z", probe),
    "path /var/lib/containerd/z must be a zfs filesystem to be used with the zfs snapshotter",
  );
  const onZfs = { readMounts: () => Promise.resolve(mounts.slice(0, 3)) };
  assert.equal(await zfsUnsupported("/var/lib/containerd/zfs/x", onZfs), undefined);
});

Deno.test("aufs tries modprobe, then looks for aufs in /proc/filesystems", async () => {
  const calls: string[] = [];
  const reason = await aufsUnsupported({
    modprobe: (m) => {
      calls.push(m);
      return Promise.resolve(`exit status 1 "modprobe: FATAL: Module aufs not found\\n"`);
    },
    readFilesystems: () => Promise.resolve("nodev\tproc\nnodev\toverlay\n\text4\n"),
  });
  assert.deepEqual(calls, ["aufs"]);
  assert.equal(
    reason,
    `aufs is not supported (modprobe aufs failed: exit status 1 "modprobe: FATAL: Module aufs not found\\n")`,
  );
  assert.equal(
    await aufsUnsupported({
      modprobe: () => Promise.resolve(undefined),
      readFilesystems: () => Promise.resolve("nodev\taufs\n"),
    }),
    undefined,
  );
});

Deno.test("on this machine aufs, btrfs, zfs are skipped and devmapper fails, each with its reason", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "other-snapshotters-" });
  const ids = ["aufs", "btrfs", "devmapper", "zfs"];
  const ordered = registry.list().filter((r) =>
    r.type.name === SnapshotPlugin.name && ids.includes(r.id)
  );
  assert.deepEqual(ordered.map((r) => r.id), ids, "registered in containerd's order");
  const run = (configs: Map<string, unknown>) =>
    initPlugins({
      ordered,
      configs,
      properties: { rootDir: tmp, stateDir: `${tmp}/state`, grpcAddress: "", ttrpcAddress: "" },
      events: new Exchange(),
      log: silentLogger(),
      signal: new AbortController().signal,
    });
  const set = await run(new Map());
  const byId = new Map(set.records().map((r) => [r.registration.id, r]));
  const fsType = lookupMount(await readMounts(), tmp)?.fsType;
  assert.ok(fsType !== "btrfs" && fsType !== "zfs", "this test expects neither btrfs nor zfs");

  const btrfs = byId.get("btrfs");
  assert.equal(btrfs?.status, "skip");
  assert.equal(
    btrfs?.error?.message,
    `path ${tmp}/io.containerd.snapshotter.v1.btrfs (${fsType}) must be a btrfs filesystem to be used with the btrfs snapshotter: skip plugin`,
  );
  assert.ok((await Deno.stat(`${tmp}/io.containerd.snapshotter.v1.btrfs`)).isDirectory);
  assert.deepEqual(btrfs?.meta.exports, { root: `${tmp}/io.containerd.snapshotter.v1.btrfs` });

  const zfs = byId.get("zfs");
  assert.equal(zfs?.status, "skip");
  assert.equal(
    zfs?.error?.message,
    `path ${tmp}/io.containerd.snapshotter.v1.zfs must be a zfs filesystem to be used with the zfs snapshotter: skip plugin`,
  );

  const aufs = byId.get("aufs");
  const filesystems = await Deno.readTextFile("/proc/filesystems");
  if (!filesystems.includes("aufs")) {
    assert.equal(aufs?.status, "skip");
    assert.match(aufs?.error?.message ?? "", /^aufs is not supported.*: skip plugin$/);
  }

  const devmapper = byId.get("devmapper");
  assert.equal(
    devmapper?.status,
    "error",
    "containerd 1.6 reports an unconfigured devmapper as an error",
  );
  assert.equal(devmapper?.error?.message, "devmapper not configured");
  for (const r of set.records()) assert.equal(r.meta.platforms[0]?.os, "linux");

  const configured = await run(
    new Map([["io.containerd.snapshotter.v1.devmapper", {
      ...devmapperConfig.defaults(),
      pool_name: "containerd-pool",
    }]]),
  );
  const dm = configured.records().find((r) => r.registration.id === "devmapper");
  assert.equal(dm?.status, "error");
  assert.equal(codeOf(dm?.error), Code.Unimplemented);
  assert.match(dm?.error?.message ?? "", /devmapper snapshotter is not implemented/);
  await Deno.remove(tmp, { recursive: true });
});
