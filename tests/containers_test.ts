/**
 * Containers, end to end: the real binary on temp dirs driven by Debian's ctr 1.6.20.
 *
 * - `ctr containers create IMG c1 /bin/sh` (prepares the snapshot, reads /etc/passwd through
 *   Snapshots/Mounts, then Containers/Create), `ls` (ListStream), `ls -q`, `ls` with filters,
 *   `info` (spec JSON), `label`, a second create refused, `rm` (also removes its snapshot).
 * - `ctr events` prints /containers/create, /containers/update and /containers/delete.
 * - The namespace cannot be removed while it holds a container.
 * - GC: a container keeps its snapshot across a collection; once the record alone is deleted
 *   (Containers/Delete without Snapshots/Remove), the next collection removes the snapshot.
 * - `ctr snapshots rm` of a container's snapshot succeeds (as in containerd: the container
 *   is only a GC root), and `ctr containers rm` then still succeeds.
 *
 * Until the tasks service exists ctr's Tasks/Get before a delete answers Unimplemented; ctr
 * 1.6.20 treats any error there as "no task" and deletes the container, so rm works either way.
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { dial } from "../client/connection.ts";
import { Containers } from "../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { ctr, ctrMissing, lines, makeTestImageTool, ok, sh, startDaemon } from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool();
const IMAGE = "docker.io/library/testbox:latest";

function missing(): string | undefined {
  const ctrSkip = ctrMissing();
  if (ctrSkip) return ctrSkip;
  if (MAKE_TEST_IMAGE === undefined) return "SKIP: shared/tools/make-test-image is missing";
  if (Deno.uid() !== 0) return "SKIP: mounting snapshots needs root";
  return undefined;
}

const skip = missing();
if (skip) console.error(`containers_test: ${skip}`);

/** The snapshot keys `ctr snapshots ls` prints (first column, header dropped). */
async function snapshotKeys(address: string): Promise<string[]> {
  const out = await ok(ctr(address, ["snapshots", "ls"]));
  return lines(out.stdout).slice(1).map((l) => l.split(/\s+/)[0] ?? "");
}

/** Run a garbage collection and wait for it: delete a fresh lease with --sync. */
async function collect(address: string, id: string): Promise<void> {
  await ok(ctr(address, ["leases", "create", "--id", id]));
  await ok(ctr(address, ["leases", "rm", "--sync", id]));
}

async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await sh("umount", ["-l", point]);
}

Deno.test({
  name: "ctr containers create/ls/info/label/rm; duplicate refused; GC roots the snapshot",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "containers-test-" });
    const daemon = await startDaemon();
    const a = daemon.address;
    try {
      await ok(sh(MAKE_TEST_IMAGE as string, [`${work}/img.tar`]), "make-test-image");
      await ok(ctr(a, ["images", "import", `${work}/img.tar`]));

      // events: started before the create, stopped after the rm below
      const events = new Deno.Command("/usr/bin/ctr", {
        args: ["-a", a, "events", "topic~=/containers/"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const eventText = new Response(events.stdout).text();
      await new Promise((r) => setTimeout(r, 500));

      // create
      await ok(ctr(a, ["containers", "create", IMAGE, "c1", "/bin/sh"]));
      assert.ok((await snapshotKeys(a)).includes("c1"));

      // ls (ListStream), ls -q, filters
      const ls = lines((await ok(ctr(a, ["containers", "ls"]))).stdout);
      assert.deepEqual(ls[0]?.split(/\s+/), ["CONTAINER", "IMAGE", "RUNTIME"]);
      assert.deepEqual(ls.slice(1).map((l) => l.split(/\s+/)), [
        ["c1", IMAGE, "io.containerd.runc.v2"],
      ]);
      assert.deepEqual(lines((await ok(ctr(a, ["containers", "ls", "-q"]))).stdout), ["c1"]);
      assert.deepEqual(
        lines((await ok(ctr(a, ["containers", "ls", "-q", "runtime.name==io.other"]))).stdout),
        [],
      );

      // info prints the record with the spec as JSON
      const info = JSON.parse((await ok(ctr(a, ["containers", "info", "c1"]))).stdout);
      assert.equal(info.ID, "c1");
      assert.equal(info.Image, IMAGE);
      assert.equal(info.Runtime.Name, "io.containerd.runc.v2");
      assert.equal(info.Snapshotter, "overlayfs");
      assert.equal(info.SnapshotKey, "c1");
      assert.deepEqual(info.Spec.process.args, ["/bin/sh"]);
      assert.equal(info.Spec.root.path, "rootfs");

      // label, then filter on it
      const labelled = await ok(ctr(a, ["containers", "label", "c1", "a=b"]));
      assert.match(labelled.stdout, /a=b/);
      const info2 = JSON.parse((await ok(ctr(a, ["containers", "info", "c1"]))).stdout);
      assert.equal(info2.Labels.a, "b");
      assert.deepEqual(info2.Spec, info.Spec);
      assert.deepEqual(
        lines((await ok(ctr(a, ["containers", "ls", "-q", "labels.a==b"]))).stdout),
        ["c1"],
      );

      // a second create of the same id is refused
      const dup = await ctr(a, ["containers", "create", IMAGE, "c1", "/bin/sh"]);
      assert.notEqual(dup.code, 0);
      assert.match(dup.stderr, /already exists/);

      // missing containers
      const info404 = await ctr(a, ["containers", "info", "nope"]);
      assert.notEqual(info404.code, 0);
      assert.match(info404.stderr, /container "nope" in namespace "default": not found/);

      // the namespace holds a container
      const nsRm = await ctr(a, ["namespaces", "rm", "default"]);
      assert.notEqual(nsRm.code, 0);
      assert.match(nsRm.stderr, /must be empty, but it still has .*containers/);

      // GC keeps a container's snapshot
      await collect(a, "gc-1");
      assert.ok((await snapshotKeys(a)).includes("c1"));

      // rm removes the record and the snapshot
      await ok(ctr(a, ["containers", "rm", "c1"]));
      assert.deepEqual(lines((await ok(ctr(a, ["containers", "ls", "-q"]))).stdout), []);
      assert.ok(!(await snapshotKeys(a)).includes("c1"));
      await new Promise((r) => setTimeout(r, 300));
      events.kill("SIGTERM");
      await events.status;
      const topics = lines(await eventText).map((l) => l.split(/\s+/)[5]);
      assert.deepEqual(topics, ["/containers/create", "/containers/update", "/containers/delete"]);
      assert.match(await eventText, /\/containers\/create \{"id":"c1","image":"docker\.io/);

      // snapshots rm of a container's snapshot is allowed (containerd does the same); rm works
      await ok(ctr(a, ["containers", "create", IMAGE, "c3", "/bin/sh"]));
      await ok(ctr(a, ["snapshots", "rm", "c3"]));
      await ok(ctr(a, ["containers", "rm", "c3"]));
      assert.deepEqual(lines((await ok(ctr(a, ["containers", "ls", "-q"]))).stdout), []);

      // record deleted alone: the next GC removes the snapshot it held
      await ok(ctr(a, ["containers", "create", IMAGE, "c2", "/bin/sh"]));
      await collect(a, "gc-c2");
      assert.ok((await snapshotKeys(a)).includes("c2"));
      const conn = dial({ address: a });
      try {
        const client = createClient(Containers, conn.transport);
        await client.delete({ id: "c2" }, { headers: { "containerd-namespace": "default" } });
      } finally {
        await conn.close();
      }
      // (the scheduler may already have collected after the deletion; --sync waits for a run)
      await collect(a, "gc-2");
      assert.ok(!(await snapshotKeys(a)).includes("c2"));
    } finally {
      await daemon.stop();
      await unmountBelow(daemon.dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
