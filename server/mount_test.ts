import assert from "node:assert/strict";
import { cleanupTempMounts, type MountInfo, mountsUnder, parseMountInfo } from "./mount.ts";

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
