import assert from "node:assert/strict";
import { cleanupTempMounts, type MountInfo, mountsUnder, parseMountInfo } from "./mount.ts";
import { isMounted, mountAll, MountError, readMounts, unmountAll, withTempMount } from "./mount.ts";

const sample = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 8:1 /src /var/lib/x/tmpmounts/m1 rw,relatime shared:1 - ext4 /dev/sda1 rw
91 90 0:50 / /var/lib/x/tmpmounts/m1/proc rw - proc proc rw
92 22 0:51 / /var/lib/x/tmpmounts/with\\040space rw - tmpfs tmp\\040fs rw
93 22 0:52 / /var/lib/x/tmpmountsX rw - tmpfs tmpfs rw
bad line
`;

Deno.test("parseMountInfo reads mount points, types and sources, unescaping octal", () => {
  const mounts = parseMountInfo(sample);
  assert.equal(mounts.length, 5);
  assert.deepEqual(mounts[3], {
    mountPoint: "/var/lib/x/tmpmounts/with space",
    options: "rw",
    fsType: "tmpfs",
    source: "tmp fs",
  });
});

Deno.test("mountsUnder lists mounts strictly below a dir, deepest first", () => {
  assert.deepEqual(mountsUnder(parseMountInfo(sample), "/var/lib/x/tmpmounts"), [
    "/var/lib/x/tmpmounts/m1/proc",
    "/var/lib/x/tmpmounts/with space",
    "/var/lib/x/tmpmounts/m1",
  ]);
});

Deno.test("cleanupTempMounts unmounts each leftover, reports failures and removes empty dirs", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/a`);
  await Deno.mkdir(`${dir}/b`);
  const mounts: MountInfo[] = [
    { mountPoint: `${dir}/a`, fsType: "tmpfs", source: "x", options: "rw" },
    { mountPoint: `${dir}/b`, fsType: "tmpfs", source: "x", options: "rw" },
  ];
  const calls: string[] = [];
  const mounted = new Map([[`${dir}/a`, 2], [`${dir}/b`, 1]]);
  const warnings = await cleanupTempMounts(dir, {
    readMounts: () => Promise.resolve(mounts),
    unmount: (target) => {
      calls.push(target);
      if (target.endsWith("/b")) return Promise.reject(new Error(`unmount ${target}: busy`));
      const left = (mounted.get(target) ?? 0) - 1;
      mounted.set(target, left);
      return left < 0 ? Promise.reject(new Error("not mounted")) : Promise.resolve();
    },
  });
  assert.deepEqual(warnings, [`failed to unmount leftover temp mount: unmount ${dir}/b: busy`]);
  assert.equal(
    calls.filter((c) => c.endsWith("/a")).length,
    3,
    "stacked mount unmounted twice, then stop",
  );
  const left = [];
  for await (const e of Deno.readDir(dir)) left.push(e.name);
  assert.deepEqual(left, []);
  await Deno.remove(dir, { recursive: true });
});

// --- mountAll / unmountAll / withTempMount (real mounts: need root) ---

const asRoot = Deno.uid() === 0;

async function leftUnder(dir: string): Promise<string[]> {
  return (await readMounts()).map((m) => m.mountPoint).filter((p) =>
    p === dir || p.startsWith(`${dir}/`)
  );
}

async function entries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test({
  name: "withTempMount binds a dir rw under <root>/tmpmounts and always unmounts and removes it",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    const src = `${root}/src`;
    await Deno.mkdir(src);
    await Deno.writeTextFile(`${src}/a`, "A");
    let seen = "";
    const out = await withTempMount(
      root,
      [{ type: "bind", source: src, options: ["rbind", "rw"] }],
      async (dir) => {
        seen = dir;
        assert.ok(dir.startsWith(`${root}/tmpmounts/`));
        assert.equal(await Deno.readTextFile(`${dir}/a`), "A");
        await Deno.writeTextFile(`${dir}/b`, "B");
        assert.ok(await isMounted(dir));
        return 42;
      },
    );
    assert.equal(out, 42);
    assert.equal(await Deno.readTextFile(`${src}/b`), "B", "writes went through the bind");
    assert.deepEqual(await leftUnder(`${root}/tmpmounts`), []);
    assert.deepEqual(await entries(`${root}/tmpmounts`), [], `${seen} removed`);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "a read-only bind refuses writes",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    await Deno.mkdir(`${root}/src`);
    await withTempMount(
      root,
      [{ type: "bind", source: `${root}/src`, options: ["rbind", "ro"] }],
      async (dir) => {
        await assert.rejects(Deno.writeTextFile(`${dir}/x`, "x"), /Read-only file system/);
        const info = (await readMounts()).find((m) => m.mountPoint === dir);
        assert.match(info?.options ?? "", /(^|,)ro(,|$)/);
      },
    );
    assert.deepEqual(await leftUnder(root), []);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "an overlay mount merges lowerdirs (nearest first) with an upperdir that takes the writes",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    for (const d of ["l1", "l2", "upper", "work"]) await Deno.mkdir(`${root}/${d}`);
    await Deno.writeTextFile(`${root}/l1/f`, "bottom");
    await Deno.writeTextFile(`${root}/l1/only1`, "1");
    await Deno.writeTextFile(`${root}/l2/f`, "top");
    const mounts = [{
      type: "overlay",
      source: "overlay",
      options: [
        "index=off",
        `workdir=${root}/work`,
        `upperdir=${root}/upper`,
        `lowerdir=${root}/l2:${root}/l1`,
      ],
    }];
    await withTempMount(root, mounts, async (dir) => {
      assert.equal(await Deno.readTextFile(`${dir}/f`), "top");
      assert.equal(await Deno.readTextFile(`${dir}/only1`), "1");
      await Deno.writeTextFile(`${dir}/new`, "n");
      await Deno.remove(`${dir}/only1`);
    });
    assert.equal(await Deno.readTextFile(`${root}/upper/new`), "n");
    const whiteout = await Deno.lstat(`${root}/upper/only1`);
    assert.ok(whiteout.isCharDevice, "a deletion leaves a whiteout in the upperdir");
    assert.equal(await Deno.readTextFile(`${root}/l1/only1`), "1", "lowerdirs untouched");
    assert.deepEqual(await leftUnder(root), []);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "an overlay with more lowerdirs than fit a page of mount data still mounts",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    const base = `${root}/${"long-directory-name-".repeat(3)}`;
    const lowers: string[] = [];
    for (let i = 0; i < 120; i++) {
      const d = `${base}/${i}/fs`;
      await Deno.mkdir(d, { recursive: true });
      await Deno.writeTextFile(`${d}/file-${i}`, String(i));
      lowers.unshift(d);
    }
    const lowerdir = `lowerdir=${lowers.join(":")}`;
    assert.ok(lowerdir.length > 4096, "the option string is longer than a page");
    await withTempMount(
      root,
      [{ type: "overlay", source: "overlay", options: [lowerdir] }],
      async (dir) => {
        assert.equal((await entries(dir)).length, 120);
        assert.equal(await Deno.readTextFile(`${dir}/file-119`), "119");
      },
    );
    assert.deepEqual(await leftUnder(root), []);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "withTempMount unmounts and removes its dir when fn throws, and rethrows fn's error",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    await Deno.mkdir(`${root}/src`);
    const boom = new Error("boom");
    await assert.rejects(
      withTempMount(
        root,
        [{ type: "bind", source: `${root}/src`, options: ["rbind", "rw"] }],
        () => {
          throw boom;
        },
      ),
      (err) => err === boom,
    );
    assert.deepEqual(await leftUnder(root), []);
    assert.deepEqual(await entries(`${root}/tmpmounts`), []);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "a failed mount is a MountError naming the mount and target; nothing is left behind",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    await Deno.mkdir(`${root}/src`);
    let ran = false;
    const err = await withTempMount(root, [
      { type: "bind", source: `${root}/src`, options: ["rbind", "rw"] },
      { type: "bind", source: `${root}/missing`, options: ["rbind", "rw"] },
    ], () => {
      ran = true;
    }).catch((e) => e);
    assert.ok(err instanceof MountError, String(err));
    assert.match(
      err.message,
      /bind mount of .*\/missing on .*\/tmpmounts\/containerd-mount\S+ failed: /,
    );
    assert.equal(ran, false);
    assert.deepEqual(await leftUnder(root), [], "the first mount was rolled back");
    assert.deepEqual(await entries(`${root}/tmpmounts`), []);
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test({
  name: "unmountAll takes off stacked mounts, and detaches a busy one lazily",
  ignore: !asRoot,
  async fn() {
    const root = await Deno.makeTempDir();
    for (const d of ["a", "b", "target"]) await Deno.mkdir(`${root}/${d}`);
    await Deno.writeTextFile(`${root}/b/file`, "b");
    await mountAll([
      { type: "bind", source: `${root}/a`, options: ["bind"] },
      { type: "bind", source: `${root}/b`, options: ["bind"] },
    ], `${root}/target`);
    assert.equal((await leftUnder(`${root}/target`)).length, 2);
    const busy = await Deno.open(`${root}/target/file`);
    try {
      await unmountAll(`${root}/target`);
      assert.deepEqual(await leftUnder(root), []);
    } finally {
      busy.close();
    }
    await unmountAll(`${root}/target`); // nothing mounted: a no-op
    await Deno.remove(root, { recursive: true });
  },
});
