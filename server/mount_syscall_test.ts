import assert from "node:assert/strict";
import { directMountPlan, MountSyscallError, openMountSyscalls } from "./mount_syscall.ts";
import { readMounts } from "./mount.ts";

Deno.test("directMountPlan takes data-only overlays and read-write binds, nothing else", () => {
  const overlay = ["lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"];
  assert.deepEqual(directMountPlan({ type: "overlay", source: "overlay", options: overlay }), {
    fstype: "overlay",
    flags: 0,
    data: "lowerdir=/l2:/l1,upperdir=/u,workdir=/w",
  });
  assert.deepEqual(
    directMountPlan({ type: "bind", source: "/s", options: ["rbind", "rw"] }),
    { fstype: "", flags: 0x1000 | 0x4000, data: "" },
  );
  assert.deepEqual(
    directMountPlan({ type: "none", source: "/s", options: ["bind"] }),
    { fstype: "", flags: 0x1000, data: "" },
  );
  // Flag words, read-only binds, other filesystems and a page of data go to mount(8).
  assert.equal(
    directMountPlan({ type: "overlay", source: "overlay", options: [...overlay, "ro"] }),
    undefined,
  );
  assert.equal(
    directMountPlan({ type: "bind", source: "/s", options: ["rbind", "ro"] }),
    undefined,
  );
  assert.equal(
    directMountPlan({ type: "tmpfs", source: "tmpfs", options: ["size=1m"] }),
    undefined,
  );
  const longer = [`lowerdir=${Array.from({ length: 600 }, (_, i) => `/l/${i}/fs`).join(":")}`];
  assert.ok(longer[0]!.length >= 4096, "more than a page");
  assert.equal(directMountPlan({ type: "overlay", source: "overlay", options: longer }), undefined);
});

Deno.test({
  name: "mount(2) binds a directory and umount2(2) takes it off; failures carry errno",
  ignore: Deno.uid() !== 0,
  async fn() {
    const root = await Deno.makeTempDir();
    const calls = openMountSyscalls();
    assert.ok(calls, "libc's mount is bound");
    try {
      await Deno.mkdir(`${root}/src`);
      await Deno.mkdir(`${root}/dst`);
      await Deno.writeTextFile(`${root}/src/file`, "seen");
      const plan = directMountPlan({ type: "bind", source: `${root}/src`, options: ["rbind"] })!;
      calls.mount(`${root}/src`, `${root}/dst`, plan);
      assert.equal(await Deno.readTextFile(`${root}/dst/file`), "seen");
      assert.ok((await readMounts()).some((m) => m.mountPoint === `${root}/dst`));
      calls.unmount(`${root}/dst`);
      assert.ok(!(await readMounts()).some((m) => m.mountPoint === `${root}/dst`));
      assert.throws(
        () => calls.unmount(`${root}/dst`),
        (err: unknown) => err instanceof MountSyscallError && err.errno === 22, // EINVAL
      );
      assert.throws(
        () => calls.mount(`${root}/missing`, `${root}/dst`, plan),
        (err: unknown) =>
          err instanceof MountSyscallError && err.errno === 2 && err.message.includes(root),
      );
    } finally {
      calls.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
