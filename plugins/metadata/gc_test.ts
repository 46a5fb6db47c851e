/** Tests for garbage collection: marking over label graphs, roots, leases, expiry, sweeping. */
import assert from "node:assert/strict";
import type { GCNode } from "./api.ts";
import { labelReferences, mark, nodeKey } from "./gc.ts";
import { ingest, MemoryContentStore, memoryMetadata, sha256 } from "./testing.ts";

const enc = new TextEncoder();
const ROOT = { "containerd.io/gc.root": "2024-01-01T00:00:00Z" };

function refs(namespace: string, labels: Record<string, string>): string[] {
  const out: string[] = [];
  labelReferences(namespace, labels, (n) => out.push(`${n.type}:${n.key}`));
  return out.sort();
}

Deno.test("reference labels: gc.ref.content with ., / or nothing; snapshots by snapshotter", () => {
  assert.deepEqual(
    refs("ns", {
      "containerd.io/gc.ref.content": "sha256:a",
      "containerd.io/gc.ref.content.l.0": "sha256:b",
      "containerd.io/gc.ref.content/m": "sha256:c",
      "containerd.io/gc.ref.contentx": "sha256:ignored",
      "containerd.io/gc.ref.snapshot.overlayfs": "chain1",
      "containerd.io/gc.ref.snapshot.native/extra": "chain2",
      "containerd.io/gc.root": "x",
      "other": "sha256:z",
    }),
    [
      "content:sha256:a",
      "content:sha256:b",
      "content:sha256:c",
      "snapshot:native/chain2",
      "snapshot:overlayfs/chain1",
    ],
  );
});

Deno.test("marking follows edges through cycles and stops at flat nodes", () => {
  const edges: Record<string, string[]> = { a: ["b"], b: ["c"], c: ["a", "d"], x: ["y"] };
  const node = (key: string, flat = false): GCNode => ({
    type: "content",
    namespace: "n",
    key,
    flat,
  });
  const references = (n: GCNode, emit: (n: GCNode) => void) => {
    if (n.flat) return;
    for (const k of edges[n.key] ?? []) emit(node(k));
  };
  const reachable = mark([node("a")], references);
  assert.deepEqual([...reachable.values()].map((n) => n.key).sort(), ["a", "b", "c", "d"]);
  const flat = mark([node("x", true)], references);
  assert.deepEqual([...flat.keys()], [nodeKey(node("x"))]);
  // The same node reached flat and non-flat is explored non-flat too.
  const both = mark([node("x", true), node("x")], references);
  assert.deepEqual([...both.values()].map((n) => n.key).sort(), ["x", "y"]);
});

Deno.test("unreferenced content goes; gc.root content and what it references stay", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "ns" });
    const leaf = await ingest(a, "leaf", "leaf");
    const mid = await ingest(a, "mid", "mid", { "containerd.io/gc.ref.content.l.0": leaf });
    // A cycle back to the root must not loop.
    const top = await ingest(a, "top", "top", { ...ROOT, "containerd.io/gc.ref.content.m": mid });
    a.update({ digest: leaf, labels: { "containerd.io/gc.ref.content": top } }, ["labels"]);
    const lonely = await ingest(a, "lonely", "lonely");
    const stats = await md.garbageCollect();
    assert.deepEqual(a.list([]).map((i) => i.digest).sort(), [leaf, mid, top].sort());
    assert.equal(cs.blobs.has(lonely), false);
    assert.equal(stats.removed.content, 1);
    assert.equal(stats.blobsRemoved, 1);
  } finally {
    await md.close();
  }
});

Deno.test("a lease holds its content until deleted; an expired lease holds nothing", async () => {
  const { md, cs } = memoryMetadata();
  try {
    md.leases.create("ns", { id: "keep" });
    md.leases.create("ns", {
      id: "old",
      labels: { "containerd.io/gc.expire": new Date(Date.now() - 1000).toISOString() },
    });
    md.leases.create("ns", {
      id: "future",
      labels: { "containerd.io/gc.expire": new Date(Date.now() + 3600_000).toISOString() },
    });
    const kept = await ingest(md.content({ namespace: "ns", lease: "keep" }), "1", "kept");
    const expired = await ingest(md.content({ namespace: "ns", lease: "old" }), "2", "expired");
    const future = await ingest(md.content({ namespace: "ns", lease: "future" }), "3", "future");
    await md.garbageCollect();
    assert.deepEqual(md.leases.list("ns").map((l) => l.id), ["future", "keep"]);
    assert.deepEqual(
      md.content({ namespace: "ns" }).list([]).map((i) => i.digest).sort(),
      [
        future,
        kept,
      ].sort(),
    );
    assert.equal(cs.blobs.has(expired), false);
    md.leases.delete("ns", "keep");
    await md.garbageCollect();
    assert.equal(cs.blobs.has(kept), false);
    assert.equal(cs.blobs.has(future), true);
  } finally {
    await md.close();
  }
});

Deno.test("a gc.flat lease holds its objects but not what their labels reference", async () => {
  const { md } = memoryMetadata();
  try {
    const plain = md.content({ namespace: "ns" });
    const child = await ingest(plain, "child", "child");
    md.leases.create("ns", { id: "flat", labels: { "containerd.io/gc.flat": "1" } });
    const parent = await ingest(
      md.content({ namespace: "ns", lease: "flat" }),
      "parent",
      "parent",
      { "containerd.io/gc.ref.content.0": child },
    );
    await md.garbageCollect();
    assert.deepEqual(plain.list([]).map((i) => i.digest), [parent]);
    // The same structure under a normal lease keeps both.
    const child2 = await ingest(plain, "child2", "child2");
    md.leases.create("ns", { id: "deep" });
    await ingest(md.content({ namespace: "ns", lease: "deep" }), "p2", "parent2", {
      "containerd.io/gc.ref.content.0": child2,
    });
    await md.garbageCollect();
    assert.ok(plain.list([]).some((i) => i.digest === child2));
  } finally {
    await md.close();
  }
});

Deno.test("ingests without a lease live until their expiry; leased ones until the lease goes", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "ns" });
    const w = await a.writer("cut-off");
    await w.write(enc.encode("partial"), 0);
    await w.close();
    md.leases.create("ns", { id: "L" });
    const lw = await md.content({ namespace: "ns", lease: "L" }).writer("leased");
    await lw.write(enc.encode("x"), 0);
    await lw.close();
    await md.garbageCollect();
    assert.deepEqual((await a.listStatuses([])).map((s) => s.ref), ["cut-off", "leased"]);
    md.update((tx) =>
      tx.run("UPDATE ingests SET expire_at = ? WHERE ref = 'cut-off'", Date.now() - 1)
    );
    md.leases.delete("ns", "L");
    const stats = await md.garbageCollect();
    assert.deepEqual(await a.listStatuses([]), []);
    assert.equal(cs.ingests.size, 0);
    assert.equal(stats.removed.ingest, 2);
    assert.equal(stats.ingestsRemoved, 2);
  } finally {
    await md.close();
  }
});

Deno.test("a blob leaves the disk only when no namespace references it", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const digest = await ingest(md.content({ namespace: "a" }), "r", "common", ROOT);
    await ingest(md.content({ namespace: "b" }), "r", "common");
    await md.garbageCollect();
    assert.equal(cs.blobs.has(digest), true, "a still references it");
    assert.throws(() => md.content({ namespace: "b" }).info(digest), /not found/);
    md.content({ namespace: "a" }).delete(digest);
    await md.garbageCollect();
    assert.equal(cs.blobs.has(digest), false);
  } finally {
    await md.close();
  }
});

Deno.test("blobs and ingests a crash left without rows are removed by the first collection", async () => {
  const cs = new MemoryContentStore();
  cs.blobs.set(sha256("orphan"), { data: enc.encode("orphan"), createdAt: new Date() });
  const w = await cs.writer("default/1/stale");
  await w.write(enc.encode("half"), 0);
  await w.close();
  const { md } = memoryMetadata({ content: cs });
  try {
    const stats = await md.garbageCollect();
    assert.equal(cs.blobs.size, 0);
    assert.equal(cs.ingests.size, 0);
    assert.deepEqual([stats.blobsRemoved, stats.ingestsRemoved], [1, 1]);
  } finally {
    await md.close();
  }
});

Deno.test("an open writer's ingest survives a collection that removes its row", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const w = await md.content({ namespace: "ns" }).writer("busy");
    await w.write(enc.encode("x"), 0);
    md.update((tx) => tx.run("UPDATE ingests SET expire_at = 0"));
    await md.garbageCollect(); // the disk abort is refused while the writer holds the ref
    assert.equal(cs.ingests.size, 1);
    await w.close();
    await md.garbageCollect();
    assert.equal(cs.ingests.size, 0);
  } finally {
    await md.close();
  }
});

Deno.test("images root their target; containers root their snapshot; snapshots follow parents", async () => {
  const { md } = memoryMetadata();
  const cleaned: string[] = [];
  md.registerBackendCleanup("snapshotter/overlayfs", () => {
    cleaned.push("overlayfs");
    return Promise.resolve();
  });
  try {
    const cs = md.content({ namespace: "ns" });
    const config = await ingest(cs, "config", "config", {
      "containerd.io/gc.ref.snapshot.overlayfs": "top",
    });
    const manifest = await ingest(cs, "manifest", "manifest", {
      "containerd.io/gc.ref.content.config": config,
    });
    const loose = await ingest(cs, "loose", "loose");
    md.update((tx) => {
      tx.run(
        "INSERT INTO images(namespace, name, target_digest, created_at, updated_at) VALUES ('ns', 'img', ?, 0, 0)",
        manifest,
      );
      const snap = (key: string, parent: string) =>
        tx.run(
          "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, created_at, updated_at) VALUES ('ns', 'overlayfs', ?, ?, ?, 0, 0)",
          key,
          key,
          parent,
        );
      snap("base", "");
      snap("top", "base");
      snap("container-rw", "top");
      snap("unused", "base");
      tx.run(
        "INSERT INTO containers(namespace, id, snapshotter, snapshot_key, created_at, updated_at) VALUES ('ns', 'c1', 'overlayfs', 'container-rw', 0, 0)",
      );
    });
    const stats = await md.garbageCollect();
    assert.deepEqual(cs.list([]).map((i) => i.digest).sort(), [config, manifest].sort());
    assert.ok(!cs.list([]).some((i) => i.digest === loose));
    const snaps = md.view((tx) =>
      tx.all<{ key: string }>("SELECT key FROM snapshots ORDER BY key").map((r) => r.key)
    );
    assert.deepEqual(snaps, ["base", "container-rw", "top"]);
    assert.equal(stats.removed.snapshot, 1);
    assert.deepEqual(cleaned, ["overlayfs"]);
  } finally {
    await md.close();
  }
});

Deno.test("mutation listeners hear every commit, dirty after deletions until a collection", async () => {
  const { md } = memoryMetadata();
  const heard: boolean[] = [];
  md.onMutation((dirty) => heard.push(dirty));
  try {
    const cs = md.content({ namespace: "ns" });
    const digest = await ingest(cs, "r", "x");
    assert.ok(heard.length > 0 && heard.every((d) => d === false));
    heard.length = 0;
    cs.delete(digest);
    md.leases.create("ns", { id: "l" });
    assert.deepEqual(heard, [true, true]);
    heard.length = 0;
    await md.garbageCollect();
    assert.deepEqual(heard, [], "the collector's own sweep is not a mutation");
    md.leases.create("ns", { id: "l2" });
    assert.deepEqual(heard, [false]);
  } finally {
    await md.close();
  }
});

Deno.test("collections run one at a time", async () => {
  const { md } = memoryMetadata();
  try {
    const results = await Promise.all([
      md.garbageCollect(),
      md.garbageCollect(),
      md.garbageCollect(),
    ]);
    assert.equal(results.length, 3);
  } finally {
    await md.close();
  }
});
