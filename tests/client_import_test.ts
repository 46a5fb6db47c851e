/**
 * The typed client's importArchive against the real binary, with Debian's ctr as the
 * reference: the same make-test-image OCI archive (3 layers) imported by the client into
 * namespace `a` and by `ctr -n b images import` into namespace `b` of one daemon gives the
 * same image record, the same blobs with the same labels and the same snapshot chain.
 * Also: the Images/Snapshots wrappers, and docker-save archives refused clearly.
 */
import assert from "node:assert/strict";
import {
  chainIDs,
  connect,
  type ContentInfo,
  importArchive,
  NotFoundError,
  NotImplementedError,
} from "../client/mod.ts";
import { ctr, ctrMissing, makeTestImageTool, sh, startDaemon } from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool();

function missing(): string | undefined {
  const c = ctrMissing();
  if (c) return c;
  if (!MAKE_TEST_IMAGE) return "SKIP: make-test-image is missing";
  if (Deno.uid() !== 0) return "SKIP: mounting snapshots needs root";
  return undefined;
}
const skip = missing();
if (skip) console.error(`client_import_test: ${skip}`);

async function makeImage(dir: string, format: "oci" | "docker"): Promise<string> {
  const out = `${dir}/${format}.tar`;
  const r = await sh(MAKE_TEST_IMAGE!, ["--format", format, "--layers", "3", out]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** Snapshot rows of `ctr snapshots ls`: KEY PARENT KIND, sorted. */
async function ctrSnapshots(address: string, ns: string): Promise<string[]> {
  const r = await ctr(address, ["snapshots", "ls"], { namespace: ns });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trimEnd().split("\n").slice(1).map((l) => l.trim().split(/\s+/).join(" "))
    .sort();
}

function blobs(list: ContentInfo[]): { digest: string; size: number; labels: unknown }[] {
  return list.map((b) => ({ digest: b.digest, size: b.size, labels: b.labels }))
    .sort((x, y) => x.digest.localeCompare(y.digest));
}

Deno.test({
  name: "importArchive matches ctr images import",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const daemon = await startDaemon();
    const work = await Deno.makeTempDir({ prefix: "cts-client-import-" });
    await using client = connect({ address: daemon.address });
    try {
      const oci = await makeImage(work, "oci");
      const a = client.withNamespace("a");
      const b = client.withNamespace("b");

      const progress: string[] = [];
      const [img] = await importArchive(a, oci, { onProgress: (p) => progress.push(p.stage) });
      const r = await ctr(daemon.address, ["images", "import", oci], { namespace: "b" });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.ok(img);

      await t.step("same image record", async () => {
        const [ia, ib] = await Promise.all([a.images.get(img.name), b.images.get(img.name)]);
        assert.equal(ia.name, "docker.io/library/testbox:latest");
        assert.deepEqual(ia.target, ib.target);
        assert.deepEqual(ia.labels, ib.labels);
        assert.deepEqual(img.target, ia.target);
        assert.deepEqual((await a.images.list()).map((i) => i.name), [img.name]);
        assert.equal(img.layers.length, 3);
        assert.deepEqual(img.chainIDs, chainIDs(img.diffIDs));
        assert.ok(progress.includes("blob") && progress.includes("layer"));
      });

      await t.step("same blobs and labels", async () => {
        // Run a collection now, so the unreferenced index.json blob is gone from both
        // namespaces whatever the scheduler's timing.
        assert.equal((await ctr(daemon.address, ["leases", "create", "--id", "gc-now"])).code, 0);
        assert.equal((await ctr(daemon.address, ["leases", "rm", "--sync", "gc-now"])).code, 0);
        const [ca, cb] = await Promise.all([a.content.list(), b.content.list()]);
        assert.deepEqual(blobs(ca), blobs(cb));
        const config = ca.find((c) => c.digest === img.config.digest);
        assert.equal(
          config?.labels["containerd.io/gc.ref.snapshot.overlayfs"],
          img.chainIDs.at(-1),
        );
      });

      await t.step("same snapshot chain", async () => {
        const [sa, sb] = await Promise.all([
          ctrSnapshots(daemon.address, "a"),
          ctrSnapshots(daemon.address, "b"),
        ]);
        assert.equal(sa.length, 3);
        assert.deepEqual(sa, sb);
        const listed = await a.snapshots.list();
        assert.deepEqual(
          listed.map((s) => `${s.name} ${s.parent || ""} ${s.kind}`.replace("  ", " ")).sort(),
          sa.map((l) => l.replace(/ Committed$/, " committed")),
        );
        const top = await a.snapshots.stat(img.chainIDs.at(-1)!);
        assert.equal(top.parent, img.chainIDs[1]);
        assert.equal(top.kind, "committed");
      });

      await t.step("no leases left; re-import skips existing snapshots", async () => {
        assert.deepEqual(await a.leases.list(), []);
        const skipped: boolean[] = [];
        await importArchive(a, oci, {
          onProgress: (p) => p.stage === "layer" && skipped.push(p.skipped === true),
        });
        assert.deepEqual(skipped, [true, true, true]);
        assert.deepEqual(await a.leases.list(), []);
      });

      await t.step("snapshots prepare/mounts/usage/view/remove", async () => {
        const opts = { snapshotter: "overlayfs" };
        const top = img.chainIDs.at(-1)!;
        const mounts = await a.snapshots.prepare("work", top, opts);
        assert.equal(mounts[0]?.type, "overlay");
        assert.deepEqual(await a.snapshots.mounts("work", opts), mounts);
        const view = await a.snapshots.view("look", top, opts);
        assert.ok(view.length > 0);
        assert.equal((await a.snapshots.stat("look")).kind, "view");
        const usage = await a.snapshots.usage(top, opts);
        assert.ok(usage.inodes >= 0);
        await a.snapshots.commit("work-done", "work", opts);
        await a.snapshots.remove("work-done", opts);
        await a.snapshots.remove("look", opts);
        await assert.rejects(a.snapshots.stat("look"), NotFoundError);
      });

      await t.step("images create/update/delete", async () => {
        const target = img.target;
        const created = await a.images.create({ name: "example.com/copy:1", target });
        assert.equal(created.target.digest, target.digest);
        const updated = await a.images.update(
          { name: "example.com/copy:1", target, labels: { k: "v" } },
          { fields: ["labels.k"] },
        );
        assert.deepEqual(updated.labels, { k: "v" });
        await a.images.delete("example.com/copy:1", { sync: true });
        await assert.rejects(a.images.get("example.com/copy:1"), NotFoundError);
      });

      await t.step("docker-save archives are refused", async () => {
        const docker = await makeImage(work, "docker");
        await assert.rejects(
          importArchive(client.withNamespace("c"), docker),
          (err: unknown) => err instanceof NotImplementedError && /docker-save/.test(err.message),
        );
      });
    } finally {
      await client.close();
      await daemon.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
