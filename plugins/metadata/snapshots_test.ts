/**
 * Tests for the metadata snapshotter over a real native snapshotter on a temp dir:
 * namespacing, backend keys, errors, labels, filters, leases and the GC's two halves.
 */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../server/errdefs.ts";
import { Kind, type SnapshotInfo } from "../snapshots/api.ts";
import { NativeSnapshotter } from "../snapshots/native/native.ts";
import type { SqliteMetadataStore } from "./store.ts";
import { backendKey, inheritedLabels, MetadataSnapshotter } from "./snapshots.ts";
import { memoryMetadata } from "./testing.ts";

interface Fixture {
  md: SqliteMetadataStore;
  backend: NativeSnapshotter;
  sn: MetadataSnapshotter;
  dir: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "md-snapshots-" });
  const { md } = memoryMetadata();
  const backend = await NativeSnapshotter.open(dir);
  const sn = new MetadataSnapshotter(md, "native", backend);
  md.registerBackendCleanup(sn.store, async () => {
    await sn.collect();
  });
  return {
    md,
    backend,
    sn,
    dir,
    async [Symbol.asyncDispose]() {
      backend.close();
      await md.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function backendKeys(backend: NativeSnapshotter): Promise<string[]> {
  const keys: string[] = [];
  await backend.walk((info) => {
    keys.push(info.name);
  });
  return keys.sort();
}

async function names(sn: MetadataSnapshotter, ns: string, filters: string[] = []) {
  const out: string[] = [];
  await sn.walk({ namespace: ns }, (info) => {
    out.push(info.name);
  }, filters);
  return out;
}

const A = { namespace: "a" };
const B = { namespace: "b" };

Deno.test("snapshots are namespaced and stored under <ns>/<seq>/<key> in the backend", async () => {
  await using f = await fixture();
  const mounts = await f.sn.prepare(A, "k1");
  assert.equal(mounts.length, 1);
  assert.equal(mounts[0]?.type, "bind");
  await f.sn.commit(A, "base", "k1", { x: "1" });
  await f.sn.prepare(B, "k1");
  assert.deepEqual(await backendKeys(f.backend), [backendKey("a", 2, "base"), "b/3/k1"]);
  const info = await f.sn.stat(A, "base");
  assert.equal(info.kind, Kind.COMMITTED);
  assert.equal(info.name, "base");
  assert.equal(info.parent, "");
  assert.deepEqual(info.labels, { x: "1" });
  assert.equal((await f.sn.stat(B, "k1")).kind, Kind.ACTIVE);
  await assert.rejects(
    f.sn.stat(B, "base"),
    (err: unknown) =>
      err instanceof NotFoundError && err.message === "snapshot base does not exist",
  );
  await assert.rejects(f.sn.stat(A, "k1"), NotFoundError);
  assert.deepEqual(await names(f.sn, "a"), ["base"]);
  assert.deepEqual(await names(f.sn, "b"), ["k1"]);
  assert.deepEqual(await names(f.sn, "nobody"), []);
});

Deno.test("parents resolve in the caller's namespace; errors name the caller's keys", async () => {
  await using f = await fixture();
  await f.sn.prepare(A, "k1");
  await f.sn.commit(A, "p", "k1");
  await f.sn.prepare(A, "child", "p");
  assert.equal((await f.sn.stat(A, "child")).parent, "p");
  await assert.rejects(
    f.sn.prepare(B, "child", "p"),
    (err: unknown) =>
      err instanceof NotFoundError && err.message === "parent snapshot p does not exist",
  );
  await assert.rejects(
    f.sn.prepare(A, "child"),
    (err: unknown) => err instanceof AlreadyExistsError && err.message === 'snapshot "child"',
  );
  // A parent that is not committed: the backend's error, in the caller's names.
  await assert.rejects(f.sn.prepare(A, "grandchild", "child"), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError, String(err));
    assert.match(err.message, /parent snapshot child is active/);
    assert.doesNotMatch(err.message, /a\/\d+\//);
    return true;
  });
  await assert.rejects(
    f.sn.remove(A, "p"),
    (err: unknown) =>
      err instanceof FailedPreconditionError && err.message === "cannot remove snapshot with child",
  );
  await assert.rejects(
    f.sn.remove(A, "ghost"),
    (err: unknown) =>
      err instanceof NotFoundError && err.message === "snapshot ghost does not exist",
  );
  await assert.rejects(f.sn.commit(A, "p", "child"), AlreadyExistsError);
  await assert.rejects(f.sn.commit(A, "n", "ghost"), /snapshot ghost does not exist/);
  await assert.rejects(f.sn.prepare(A, ""), InvalidArgumentError);
  await assert.rejects(f.sn.prepare(A, "big", "", { k: "v".repeat(5000) }), InvalidArgumentError);
  // Nothing was left in the backend by the failed creates.
  assert.equal((await backendKeys(f.backend)).length, 2);
});

Deno.test("views, mounts, commit of a view, usage", async () => {
  await using f = await fixture();
  await f.sn.prepare(A, "k1");
  const active = await f.sn.mounts(A, "k1");
  const dir = active[0]!.source;
  await Deno.writeTextFile(`${dir}/hello`, "hello world");
  const usage = await f.sn.usage(A, "k1");
  assert.ok(usage.size > 0 && usage.inodes >= 2, JSON.stringify(usage));
  await f.sn.commit(A, "c", "k1");
  const view = await f.sn.view(A, "v", "c");
  assert.deepEqual(view[0]?.options, ["rbind", "ro"]);
  assert.equal((await f.sn.stat(A, "v")).kind, Kind.VIEW);
  await assert.rejects(f.sn.commit(A, "c2", "v"), FailedPreconditionError);
  await assert.rejects(f.sn.mounts(A, "c"), FailedPreconditionError);
  await assert.rejects(f.sn.mounts(A, "ghost"), NotFoundError);
  assert.ok((await f.sn.usage(A, "c")).size > 0);
});

Deno.test("labels: update masks, filters, and inherited labels reach the backend", async () => {
  await using f = await fixture();
  await f.sn.prepare(A, "k1", "", {
    a: "1",
    "containerd.io/snapshot/x": "y",
    "containerd.io/gc.root": "now",
  });
  assert.deepEqual((await f.backend.stat((await backendKeys(f.backend))[0]!)).labels, {
    "containerd.io/snapshot/x": "y",
  });
  let info = await f.sn.update(A, { name: "k1", labels: { b: "2" } }, ["labels.b"]);
  assert.deepEqual(info.labels, {
    a: "1",
    b: "2",
    "containerd.io/gc.root": "now",
    "containerd.io/snapshot/x": "y",
  });
  info = await f.sn.update(A, { name: "k1" }, ["labels.a"]);
  assert.equal(info.labels.a, undefined);
  info = await f.sn.update(A, { name: "k1", labels: { only: "1" } }, []);
  assert.deepEqual(info.labels, { only: "1" });
  assert.deepEqual((await f.backend.stat((await backendKeys(f.backend))[0]!)).labels, {});
  await assert.rejects(
    f.sn.update(A, { name: "k1" }, ["parent"]),
    /cannot update "parent" field on snapshot "k1"/,
  );
  await assert.rejects(f.sn.update(A, { name: "ghost" }, []), NotFoundError);
  await f.sn.commit(A, "c", "k1", { tier: "base" });
  await f.sn.prepare(A, "k2", "c");
  await f.sn.view(A, "v", "c");
  assert.deepEqual(await names(f.sn, "a", ["kind==active"]), ["k2"]);
  assert.deepEqual(await names(f.sn, "a", ["kind==view", "kind==committed"]), ["c", "v"]);
  assert.deepEqual(await names(f.sn, "a", ["parent==c"]), ["k2", "v"]);
  assert.deepEqual(await names(f.sn, "a", ["labels.tier==base"]), ["c"]);
  assert.deepEqual(await names(f.sn, "a", ["name~=^k"]), ["k2"]);
  assert.deepEqual(inheritedLabels({ "containerd.io/snapshot.ref": "r", a: "b" }), {
    "containerd.io/snapshot.ref": "r",
  });
});

Deno.test("a target ref that exists answers AlreadyExists and joins the lease", async () => {
  await using f = await fixture();
  f.md.leases.create("a", { id: "L" });
  await f.sn.prepare(A, "k1");
  await f.sn.commit(A, "chain", "k1");
  await assert.rejects(
    f.sn.prepare({ namespace: "a", lease: "L" }, "extract-1 chain", "", {
      "containerd.io/snapshot.ref": "chain",
    }),
    (err: unknown) =>
      err instanceof AlreadyExistsError && err.message === 'target snapshot "chain"',
  );
  assert.deepEqual(f.md.leases.listResources("a", "L"), [
    { id: "chain", type: "snapshots/native" },
  ]);
});

Deno.test("gc: unreferenced snapshots go, gc.root, leases and parents keep theirs", async () => {
  await using f = await fixture();
  f.md.leases.create("a", { id: "L" });
  const leased = { namespace: "a", lease: "L" };
  await f.sn.prepare(leased, "x");
  await f.sn.commit(leased, "base", "x");
  await f.sn.prepare(leased, "y", "base");
  await f.sn.commit(leased, "top", "y");
  assert.deepEqual(
    f.md.leases.listResources("a", "L").map((r) => r.id).sort(),
    ["base", "top"],
  );
  await f.sn.prepare(A, "rooted", "", { "containerd.io/gc.root": "now" });
  await f.sn.prepare(A, "loose");
  await f.md.garbageCollect();
  assert.deepEqual(await names(f.sn, "a"), ["base", "rooted", "top"]);
  assert.equal((await backendKeys(f.backend)).length, 3);
  // Removing a row leaves the backend snapshot until the next collection.
  await f.sn.remove(A, "rooted");
  assert.equal((await backendKeys(f.backend)).length, 3);
  await f.md.garbageCollect();
  assert.equal((await backendKeys(f.backend)).length, 2);
  // Without the lease, the chain goes — child before parent, in one run.
  f.md.leases.delete("a", "L");
  await f.md.garbageCollect();
  assert.deepEqual(await names(f.sn, "a"), []);
  assert.deepEqual(await backendKeys(f.backend), []);
  const left = [];
  for await (const e of Deno.readDir(`${f.dir}/snapshots`)) left.push(e.name);
  assert.deepEqual(left, []);
});

Deno.test("gc: a config's gc.ref.snapshot label keeps the unpacked chain", async () => {
  await using f = await fixture();
  const { ingest } = await import("./testing.ts");
  await f.sn.prepare(A, "x");
  await f.sn.commit(A, "l1", "x");
  await f.sn.prepare(A, "y", "l1");
  await f.sn.commit(A, "l2", "y");
  await ingest(f.md.content(A), "cfg", "config", {
    "containerd.io/gc.root": "now",
    "containerd.io/gc.ref.snapshot.native": "l2",
  });
  await f.md.garbageCollect();
  assert.deepEqual(await names(f.sn, "a"), ["l1", "l2"]);
});

Deno.test("the backend sweep removes snapshots no namespace names (crash leftovers)", async () => {
  await using f = await fixture();
  await f.sn.prepare(A, "kept");
  await f.backend.prepare("a/99/orphan");
  await f.backend.commit("a/100/orphan-parent", "a/99/orphan");
  await f.backend.prepare("a/101/orphan-child", "a/100/orphan-parent");
  assert.equal(await f.sn.collect(), 2);
  assert.equal((await backendKeys(f.backend)).length, 1);
  assert.deepEqual(await names(f.sn, "a"), ["kept"]);
});

Deno.test("walk hands each info once with merged fields", async () => {
  await using f = await fixture();
  await f.sn.prepare(A, "k", "", { l: "v" });
  const seen: SnapshotInfo[] = [];
  await f.sn.walk(A, (info) => {
    seen.push(info);
  });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]?.name, "k");
  assert.deepEqual(seen[0]?.labels, { l: "v" });
  assert.ok(seen[0]!.created.getTime() <= seen[0]!.updated.getTime());
});
