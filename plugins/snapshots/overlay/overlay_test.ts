import assert from "node:assert/strict";
import { Exchange } from "../../../server/exchange.ts";
import { silentLogger } from "../../../server/log.ts";
import { mountAll, readMounts, unmountAll, withTempMount } from "../../../server/mount.ts";
import { initPlugins, registry } from "../../../server/plugin.ts";
import { SnapshotPlugin } from "../../types.ts";
import { snapshotterSuite } from "../conformance.ts";
import { OverlaySnapshotter, overlaySupport, supportsIndex, UPPERDIR_LABEL } from "./overlay.ts";
import { overlayConfig } from "./plugin.ts";

snapshotterSuite("overlayfs", (root) => OverlaySnapshotter.open(root));
// The removal-sensitive cases again with sync_remove; the slow layer cases once is enough.
snapshotterSuite(
  "overlayfs-sync-remove",
  (root) => OverlaySnapshotter.open(root, { syncRemove: true }),
  { skip: ["Layers128Mount", "LayerFileUpdate"] },
);

async function fresh(
  options: Parameters<typeof OverlaySnapshotter.open>[1] = {},
): Promise<{ tmp: string; root: string; sn: OverlaySnapshotter }> {
  const tmp = await Deno.makeTempDir({ prefix: "overlay-test-" });
  const root = `${tmp}/root`;
  return { tmp, root, sn: await OverlaySnapshotter.open(root, options) };
}

async function list(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("overlay mounts: bind without parent, overlay nearest-lowerdir-first with one", async () => {
  const { tmp, root, sn } = await fresh();
  const s = `${root}/snapshots`;
  const index = supportsIndex() ? ["index=off"] : [];
  assert.deepEqual(await sn.prepare("a", ""), [
    { type: "bind", source: `${s}/1/fs`, options: ["rw", "rbind"] },
  ]);
  assert.deepEqual(await sn.view("empty", ""), [
    { type: "bind", source: `${s}/2/fs`, options: ["ro", "rbind"] },
  ]);
  await sn.commit("l1", "a");
  assert.deepEqual(await sn.prepare("b", "l1"), [{
    type: "overlay",
    source: "overlay",
    options: [...index, `workdir=${s}/3/work`, `upperdir=${s}/3/fs`, `lowerdir=${s}/1/fs`],
  }]);
  assert.deepEqual(await sn.view("v1", "l1"), [
    { type: "bind", source: `${s}/1/fs`, options: ["ro", "rbind"] },
  ], "a view of one layer binds it read-only");
  await sn.commit("l2", "b");
  assert.deepEqual(await sn.prepare("c", "l2"), [{
    type: "overlay",
    source: "overlay",
    options: [
      ...index,
      `workdir=${s}/5/work`,
      `upperdir=${s}/5/fs`,
      `lowerdir=${s}/3/fs:${s}/1/fs`,
    ],
  }]);
  assert.deepEqual(await sn.view("v2", "l2"), [{
    type: "overlay",
    source: "overlay",
    options: [...index, `lowerdir=${s}/3/fs:${s}/1/fs`],
  }], "a view of a chain is an overlay of lowerdirs only");
  assert.deepEqual(await list(`${s}/5`), ["fs", "work"]);
  assert.deepEqual(await list(`${s}/6`), ["fs"], "views have no workdir");
  assert.equal(((await Deno.stat(`${s}/5/fs`)).mode ?? 0) & 0o777, 0o755);
  assert.equal(((await Deno.stat(`${s}/5/work`)).mode ?? 0) & 0o777, 0o711);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlay: a child's upper dir is owned like its parent's", async () => {
  const { tmp, root, sn } = await fresh();
  await sn.prepare("a", "");
  await Deno.chown(`${root}/snapshots/1/fs`, 1000, 1001);
  await sn.commit("base", "a");
  await sn.prepare("child", "base");
  const st = await Deno.stat(`${root}/snapshots/2/fs`);
  assert.equal(st.uid, 1000);
  assert.equal(st.gid, 1001);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlay: written files show through the overlay of a child, deletions as whiteouts", async () => {
  const { tmp, root, sn } = await fresh();
  const base = await sn.prepare("a", "");
  await withTempMount(tmp, base, async (dir) => {
    await Deno.writeTextFile(`${dir}/keep`, "k");
    await Deno.writeTextFile(`${dir}/drop`, "d");
  });
  await sn.commit("base", "a");
  const child = await sn.prepare("child", "base");
  await withTempMount(tmp, child, async (dir) => {
    assert.equal(await Deno.readTextFile(`${dir}/keep`), "k");
    await Deno.remove(`${dir}/drop`);
    await Deno.writeTextFile(`${dir}/added`, "a");
    const mount = (await readMounts()).find((m) => m.mountPoint === dir);
    assert.equal(mount?.fsType, "overlay");
  });
  assert.deepEqual(await list(`${root}/snapshots/2/fs`), ["added", "drop"]);
  assert.ok((await Deno.lstat(`${root}/snapshots/2/fs/drop`)).isCharDevice, "whiteout");
  assert.deepEqual(
    await list(`${root}/snapshots/1/fs`),
    ["drop", "keep"],
    "the parent is untouched",
  );
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlay remove is asynchronous by default: the key is free at once, cleanup frees disk", async () => {
  const { tmp, root, sn } = await fresh();
  await sn.prepare("a", "");
  await sn.remove("a");
  assert.deepEqual(await list(`${root}/snapshots`), ["1"], "the dir waits for cleanup");
  await sn.prepare("a", "");
  await sn.cleanup();
  assert.deepEqual(await list(`${root}/snapshots`), ["2"]);
  sn.close();

  const sync = await fresh({ syncRemove: true });
  await sync.sn.prepare("a", "");
  await sync.sn.remove("a");
  assert.deepEqual(await list(`${sync.root}/snapshots`), []);
  sync.sn.close();
  await Deno.remove(tmp, { recursive: true });
  await Deno.remove(sync.tmp, { recursive: true });
});

Deno.test("overlay upperdir_label reports each snapshot's upper dir in stat, update and walk", async () => {
  const { tmp, root, sn } = await fresh({ upperdirLabel: true });
  await sn.prepare("a", "", { l: "1" });
  const upper = `${root}/snapshots/1/fs`;
  assert.deepEqual((await sn.stat("a")).labels, { l: "1", [UPPERDIR_LABEL]: upper });
  assert.deepEqual((await sn.update({ name: "a", labels: { m: "2" } })).labels, {
    m: "2",
    [UPPERDIR_LABEL]: upper,
  });
  const walked: Record<string, string>[] = [];
  await sn.walk((info) => {
    walked.push(info.labels);
  });
  assert.deepEqual(walked, [{ m: "2", [UPPERDIR_LABEL]: upper }]);
  sn.close();
  const plain = await OverlaySnapshotter.open(root);
  assert.deepEqual((await plain.stat("a")).labels, { m: "2" }, "the label is never stored");
  plain.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlaySupport mounts a two-lowerdir overlay in the root and leaves nothing behind", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "overlay-support-" });
  assert.equal(await overlaySupport(`${tmp}/root`), undefined);
  assert.deepEqual(await list(`${tmp}/root`), []);
  assert.deepEqual((await readMounts()).filter((m) => m.mountPoint.startsWith(tmp)), []);
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlaySupport mounts even when /proc/filesystems does not list overlay yet (a module the mount loads)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "overlay-support-" });
  let asked = 0;
  const reason = await overlaySupport(`${tmp}/root`, {
    readFilesystems: () => {
      asked++;
      return Promise.resolve("nodev\tsysfs\n\text4\n");
    },
  });
  assert.equal(reason, undefined);
  assert.equal(asked, 0, "the list only explains a failed mount");
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("overlaySupport gives the mount's failure as the reason and leaves nothing behind", async () => {
  // A root inside an overlay: the kernel refuses an overlay as the check's upperdir, so the
  // direct mount(2) fails, mount(8) is tried and names the cause.
  const tmp = await Deno.makeTempDir({ prefix: "overlay-support-" });
  for (const dir of ["l", "u", "w", "m"]) await Deno.mkdir(`${tmp}/${dir}`);
  await mountAll([{
    type: "overlay",
    source: "overlay",
    options: [`lowerdir=${tmp}/l`, `upperdir=${tmp}/u`, `workdir=${tmp}/w`],
  }], `${tmp}/m`);
  try {
    const reason = await overlaySupport(`${tmp}/m/root`);
    assert.match(reason ?? "", new RegExp(`^failed to mount overlay in ${tmp}/m/root: .+`));
    // Where the kernel does not list overlay, the reason says so first.
    const unlisted = await overlaySupport(`${tmp}/m/root`, {
      readFilesystems: () => Promise.resolve("nodev\tsysfs\n\text4\n"),
    });
    assert.match(
      unlisted ?? "",
      new RegExp(
        `^the kernel does not support overlay \\(no overlay in /proc/filesystems\\): failed to mount overlay in ${tmp}/m/root: .+`,
      ),
    );
    assert.deepEqual(await list(`${tmp}/m/root`), []);
    assert.deepEqual(
      (await readMounts()).filter((m) => m.mountPoint.startsWith(tmp)).map((m) => m.mountPoint),
      [`${tmp}/m`],
    );
  } finally {
    await unmountAll(`${tmp}/m`);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the overlayfs plugin checks support, exports root and applies its config", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "overlay-plugin-" });
  const reg = registry.list().find((r) =>
    r.type.name === SnapshotPlugin.name && r.id === "overlayfs"
  );
  assert.ok(reg, "io.containerd.snapshotter.v1.overlayfs is registered");
  assert.deepEqual(overlayConfig.defaults(), {
    root_path: "",
    upperdir_label: false,
    sync_remove: false,
  });
  const set = await initPlugins({
    ordered: [reg],
    configs: new Map([["io.containerd.snapshotter.v1.overlayfs", {
      root_path: "",
      upperdir_label: true,
      sync_remove: false,
    }]]),
    properties: { rootDir: tmp, stateDir: `${tmp}/state`, grpcAddress: "", ttrpcAddress: "" },
    events: new Exchange(),
    log: silentLogger(),
    signal: new AbortController().signal,
  });
  const record = set.records()[0];
  assert.equal(record?.status, "ok", record?.error?.message);
  const root = `${tmp}/io.containerd.snapshotter.v1.overlayfs`;
  assert.deepEqual(record?.meta.exports, { root });
  const sn = set.get(SnapshotPlugin, "overlayfs");
  await sn.prepare("a", "");
  assert.equal((await sn.stat("a")).labels[UPPERDIR_LABEL], `${root}/snapshots/1/fs`);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});
