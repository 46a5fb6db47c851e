/** Tests for the namespaces table: create, labels, implicit creation, delete rules. */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../server/errdefs.ts";
import { ingest, memoryMetadata } from "./testing.ts";

Deno.test("namespaces are created with labels, listed sorted, and refused twice", () => {
  const { md } = memoryMetadata();
  try {
    assert.deepEqual(md.namespaces.create("zeta", { a: "1", empty: "" }), {
      name: "zeta",
      labels: { a: "1" },
    });
    md.namespaces.create("alpha");
    md.namespaces.create("mid", { z: "26", b: "2" });
    assert.deepEqual(md.namespaces.list(), [
      { name: "alpha", labels: {} },
      { name: "mid", labels: { b: "2", z: "26" } },
      { name: "zeta", labels: { a: "1" } },
    ]);
    assert.deepEqual(md.namespaces.labels("zeta"), { a: "1" });
    assert.throws(
      () => md.namespaces.create("zeta"),
      (err: unknown) =>
        err instanceof AlreadyExistsError && err.message === 'namespace "zeta": already exists',
    );
    assert.throws(() => md.namespaces.create("bad name"), InvalidArgumentError);
    assert.throws(() => md.namespaces.create("x", { k: "v".repeat(5000) }), InvalidArgumentError);
  } finally {
    md.close();
  }
});

Deno.test("a missing namespace reads as one without labels and is not created by reading", () => {
  const { md } = memoryMetadata();
  try {
    assert.deepEqual(md.namespaces.labels("ghost"), {});
    assert.equal(md.namespaces.exists("ghost"), false);
    assert.deepEqual(md.namespaces.list().map((ns) => ns.name), []);
    assert.deepEqual(md.content({ namespace: "ghost" }).list([]), []);
    assert.deepEqual(md.leases.list("ghost"), []);
    assert.deepEqual(md.namespaces.list().map((ns) => ns.name), []);
  } finally {
    md.close();
  }
});

Deno.test("label updates follow the field mask; an empty value removes a label", () => {
  const { md } = memoryMetadata();
  try {
    md.namespaces.create("ns", { a: "1", b: "2" });
    assert.deepEqual(md.namespaces.update("ns", { c: "3" }, ["labels.c"]).labels, {
      a: "1",
      b: "2",
      c: "3",
    });
    assert.deepEqual(md.namespaces.update("ns", {}, ["labels.a"]).labels, { b: "2", c: "3" });
    assert.deepEqual(md.namespaces.update("ns", { x: "9" }, ["labels"]).labels, { x: "9" });
    assert.deepEqual(md.namespaces.update("ns", { y: "8" }, []).labels, { y: "8" });
    assert.throws(() => md.namespaces.update("ns", {}, ["name"]), /cannot update "name" field/);
    // containerd's SetLabel creates the namespace when it is missing.
    md.namespaces.update("fresh", { k: "v" }, ["labels.k"]);
    assert.deepEqual(md.namespaces.labels("fresh"), { k: "v" });
  } finally {
    md.close();
  }
});

Deno.test("writes in other stores create their namespace implicitly", async () => {
  const { md } = memoryMetadata();
  try {
    md.leases.create("from-lease", { id: "l" });
    await ingest(md.content({ namespace: "from-content" }), "ref", "data");
    assert.deepEqual(md.namespaces.list().map((ns) => ns.name), ["from-content", "from-lease"]);
  } finally {
    md.close();
  }
});

Deno.test("a namespace holding objects cannot be deleted; the message lists what it holds", async () => {
  const { md } = memoryMetadata();
  try {
    const digest = await ingest(md.content({ namespace: "busy" }), "r", "x");
    md.update((tx) => {
      tx.run(
        "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, created_at, updated_at) VALUES ('busy', 'overlayfs', 'k', '1', 0, 0)",
      );
      tx.run(
        "INSERT INTO images(namespace, name, created_at, updated_at) VALUES ('busy', 'img', 0, 0)",
      );
    });
    assert.throws(
      () => md.namespaces.delete("busy"),
      (err: unknown) =>
        err instanceof FailedPreconditionError &&
        err.message ===
          'namespace "busy" must be empty, but it still has images, blobs, snapshots on "overlayfs" snapshotter: failed precondition',
    );
    md.update((tx) => {
      tx.run("DELETE FROM snapshots");
      tx.run("DELETE FROM images");
    });
    assert.throws(() => md.namespaces.delete("busy"), /still has blobs: failed precondition/);
    md.content({ namespace: "busy" }).delete(digest);
    md.namespaces.delete("busy");
    assert.deepEqual(md.namespaces.list().map((ns) => ns.name), []);
  } finally {
    md.close();
  }
});

Deno.test("deleting a missing namespace is NotFound; leases and ingests go with a namespace", async () => {
  const { md } = memoryMetadata();
  try {
    assert.throws(
      () => md.namespaces.delete("nope"),
      (err: unknown) =>
        err instanceof NotFoundError && err.message === 'namespace "nope": not found',
    );
    md.leases.create("ns", { id: "l1" });
    const w = await md.content({ namespace: "ns" }).writer("partial");
    await w.write(new TextEncoder().encode("abc"), 0);
    await w.close();
    md.namespaces.delete("ns");
    assert.equal(md.view((tx) => tx.all("SELECT * FROM leases").length), 0);
    assert.equal(md.view((tx) => tx.all("SELECT * FROM ingests").length), 0);
  } finally {
    md.close();
  }
});
