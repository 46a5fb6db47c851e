import assert from "node:assert/strict";
import { Exchange } from "../../../server/exchange.ts";
import { silentLogger } from "../../../server/log.ts";
import { withTempMount } from "../../../server/mount.ts";
import { initPlugins, registry } from "../../../server/plugin.ts";
import { SnapshotPlugin } from "../../types.ts";
import { snapshotterSuite } from "../conformance.ts";
import { NativeSnapshotter } from "./native.ts";
import { nativeConfig } from "./plugin.ts";

snapshotterSuite("native", (root) => NativeSnapshotter.open(root));

async function fresh(): Promise<{ tmp: string; root: string; sn: NativeSnapshotter }> {
  const tmp = await Deno.makeTempDir({ prefix: "native-test-" });
  const root = `${tmp}/root`;
  return { tmp, root, sn: await NativeSnapshotter.open(root) };
}

async function list(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("native mounts: rbind of the snapshot dir, rw or ro; a view of a parent binds the parent", async () => {
  const { tmp, root, sn } = await fresh();
  assert.deepEqual(await sn.prepare("a", ""), [
    { type: "bind", source: `${root}/snapshots/1`, options: ["rbind", "rw"] },
  ]);
  await sn.commit("base", "a");
  assert.deepEqual(await sn.prepare("child", "base"), [
    { type: "bind", source: `${root}/snapshots/2`, options: ["rbind", "rw"] },
  ]);
  assert.deepEqual(await sn.view("v", "base"), [
    { type: "bind", source: `${root}/snapshots/1`, options: ["rbind", "ro"] },
  ]);
  assert.deepEqual(await sn.view("empty-view", ""), [
    { type: "bind", source: `${root}/snapshots/4`, options: ["rbind", "ro"] },
  ]);
  assert.deepEqual(
    await list(`${root}/snapshots`),
    ["1", "2", "4"],
    "a view of a parent has no dir",
  );
  const st = await Deno.stat(root);
  assert.equal((st.mode ?? 0) & 0o777, 0o700);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("native prepare copies the parent: modes, owners, symlinks, hard links, devices, xattrs", async () => {
  const { tmp, root, sn } = await fresh();
  let xattrs = false;
  const m = await sn.prepare("a", "");
  await withTempMount(tmp, m, async (dir) => {
    await Deno.mkdir(`${dir}/d`);
    await Deno.chmod(`${dir}/d`, 0o1750);
    await Deno.writeTextFile(`${dir}/d/f`, "data");
    await Deno.chown(`${dir}/d/f`, 123, 456); // before chmod: chown clears setuid
    await Deno.chmod(`${dir}/d/f`, 0o4755);
    await Deno.link(`${dir}/d/f`, `${dir}/hard`);
    await Deno.symlink("d/f", `${dir}/sym`);
    const mknod = await new Deno.Command("mknod", { args: [`${dir}/null`, "c", "1", "3"] })
      .output();
    assert.ok(mknod.success);
    const fifo = await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
    assert.ok(fifo.success);
    // setfattr (package attr) may be missing: then xattrs are not checked.
    try {
      const xattr = await new Deno.Command("setfattr", {
        args: ["-n", "user.k", "-v", "v", `${dir}/d/f`],
      }).output();
      xattrs = xattr.success;
    } catch {
      xattrs = false;
    }
  });
  await sn.commit("base", "a");
  const child = await sn.prepare("child", "base");
  const dir = child[0]?.source ?? "";
  const f = await Deno.lstat(`${dir}/d/f`);
  assert.equal((f.mode ?? 0) & 0o7777, 0o4755);
  assert.equal(f.uid, 123);
  assert.equal(f.gid, 456);
  assert.equal(((await Deno.lstat(`${dir}/d`)).mode ?? 0) & 0o7777, 0o1750);
  assert.equal((await Deno.lstat(`${dir}/hard`)).ino, f.ino, "hard links stay linked");
  assert.equal(await Deno.readLink(`${dir}/sym`), "d/f");
  assert.ok((await Deno.lstat(`${dir}/null`)).isCharDevice);
  assert.ok((await Deno.lstat(`${dir}/fifo`)).isFifo);
  if (xattrs) {
    const getfattr = await new Deno.Command("getfattr", {
      args: ["--only-values", "-n", "user.k", `${dir}/d/f`],
    }).output();
    assert.equal(new TextDecoder().decode(getfattr.stdout), "v", "xattrs are copied");
  }
  // The copy is independent of the parent.
  await Deno.writeTextFile(`${dir}/d/f`, "changed");
  assert.equal(await Deno.readTextFile(`${root}/snapshots/1/d/f`), "data");
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("native remove deletes the directory at once", async () => {
  const { tmp, root, sn } = await fresh();
  await sn.prepare("a", "");
  await sn.prepare("b", "");
  await sn.remove("a");
  assert.deepEqual(await list(`${root}/snapshots`), ["2"]);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("native open sweeps new-* and rm-*; a create takes over the dir of an uncommitted id", async () => {
  const { tmp, root, sn } = await fresh();
  await sn.prepare("a", "");
  sn.close();
  // What a crash leaves: a half-made snapshot, a half-deleted one, and the dir of id 2 renamed
  // into place by a transaction that never committed.
  await Deno.mkdir(`${root}/snapshots/new-123`);
  await Deno.mkdir(`${root}/snapshots/rm-9/deep`, { recursive: true });
  await Deno.mkdir(`${root}/snapshots/2`);
  await Deno.writeTextFile(`${root}/snapshots/2/junk`, "x");
  const again = await NativeSnapshotter.open(root);
  assert.deepEqual(await list(`${root}/snapshots`), ["1", "2"]);
  const m = await again.prepare("b", "");
  assert.equal(m[0]?.source, `${root}/snapshots/2`);
  assert.deepEqual(await list(`${root}/snapshots/2`), [], "the stale content is gone");
  again.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("native prepare of a parent whose dir vanished fails cleanly: no record, no temp dir", async () => {
  const { tmp, root, sn } = await fresh();
  await sn.prepare("a", "");
  await sn.commit("base", "a");
  await Deno.remove(`${root}/snapshots/1`, { recursive: true });
  await assert.rejects(sn.prepare("child", "base"), /copying parent base of snapshot child failed/);
  await assert.rejects(sn.stat("child"), /does not exist/);
  assert.deepEqual(await list(`${root}/snapshots`), []);
  sn.close();
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("the native plugin opens the snapshotter in its plugin dir or root_path", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "native-plugin-" });
  const reg = registry.list().find((r) => r.type.name === SnapshotPlugin.name && r.id === "native");
  assert.ok(reg, "io.containerd.snapshotter.v1.native is registered");
  assert.deepEqual(nativeConfig.defaults(), { root_path: "" });
  const options = (configs: Map<string, unknown>) => ({
    ordered: [reg],
    configs,
    properties: { rootDir: tmp, stateDir: `${tmp}/state`, grpcAddress: "", ttrpcAddress: "" },
    events: new Exchange(),
    log: silentLogger(),
    signal: new AbortController().signal,
  });
  let set = await initPlugins(options(new Map()));
  let record = set.records()[0];
  assert.equal(record?.status, "ok", record?.error?.message);
  const sn = set.get(SnapshotPlugin, "native");
  assert.equal(sn.root, `${tmp}/io.containerd.snapshotter.v1.native`);
  assert.equal(record?.meta.platforms[0]?.os, "linux");
  sn.close();
  set = await initPlugins(
    options(new Map([["io.containerd.snapshotter.v1.native", { root_path: `${tmp}/elsewhere` }]])),
  );
  record = set.records()[0];
  const other = set.get(SnapshotPlugin, "native");
  assert.equal(other.root, `${tmp}/elsewhere`);
  other.close();
  await Deno.remove(tmp, { recursive: true });
});
