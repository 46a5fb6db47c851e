/** Tests for the leases table: create, list with filters, resources, delete. */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
} from "../../server/errdefs.ts";
import { parseLeaseResource } from "./leases.ts";
import { memoryMetadata, sha256 } from "./testing.ts";

Deno.test("leases are created once per namespace, listed with labels, filtered", async () => {
  const { md } = memoryMetadata();
  try {
    const lease = md.leases.create("ns", { id: "one", labels: { app: "x" } });
    assert.equal(lease.id, "one");
    assert.deepEqual(lease.labels, { app: "x" });
    assert.ok(Math.abs(lease.createdAt.getTime() - Date.now()) < 5000);
    md.leases.create("ns", { id: "two" });
    md.leases.create("other", { id: "one" });
    assert.throws(
      () => md.leases.create("ns", { id: "one" }),
      (err: unknown) =>
        err instanceof AlreadyExistsError && err.message === 'lease "one": already exists',
    );
    assert.deepEqual(md.leases.list("ns").map((l) => l.id), ["one", "two"]);
    assert.deepEqual(md.leases.list("ns", ["labels.app==x"]).map((l) => l.id), ["one"]);
    assert.deepEqual(md.leases.list("ns", ["id==two", "id==one"]).map((l) => l.id), ["one", "two"]);
    assert.throws(() => md.leases.list("ns", ["id=="]), InvalidArgumentError);
    assert.throws(() => md.leases.create("ns", { id: "" }), /lease id must be provided/);
  } finally {
    await md.close();
  }
});

Deno.test("deleting a lease that does not exist is NotFound", async () => {
  const { md } = memoryMetadata();
  try {
    assert.throws(
      () => md.leases.delete("ns", "ghost"),
      (err: unknown) => err instanceof NotFoundError && err.message === 'lease "ghost": not found',
    );
    md.leases.create("ns", { id: "l" });
    md.leases.delete("ns", "l");
    assert.deepEqual(md.leases.list("ns"), []);
  } finally {
    await md.close();
  }
});

Deno.test("resources are added, listed in containerd's order, and removed", async () => {
  const { md } = memoryMetadata();
  try {
    md.leases.create("ns", { id: "l" });
    const digest = sha256("x");
    md.leases.addResource("ns", "l", { id: "snap1", type: "snapshots/overlayfs" });
    md.leases.addResource("ns", "l", { id: "ref", type: "ingests" });
    md.leases.addResource("ns", "l", { id: digest, type: "content" });
    md.leases.addResource("ns", "l", { id: digest, type: "content" }); // idempotent
    assert.deepEqual(md.leases.listResources("ns", "l"), [
      { id: digest, type: "content" },
      { id: "ref", type: "ingests" },
      { id: "snap1", type: "snapshots/overlayfs" },
    ]);
    md.leases.deleteResource("ns", "l", { id: "ref", type: "ingests" });
    md.leases.deleteResource("ns", "l", { id: "never", type: "ingests" });
    assert.equal(md.leases.listResources("ns", "l").length, 2);
    assert.throws(
      () => md.leases.addResource("ns", "nope", { id: digest, type: "content" }),
      NotFoundError,
    );
    assert.throws(() => md.leases.listResources("ns", "nope"), NotFoundError);
  } finally {
    await md.close();
  }
});

Deno.test("resource types are checked as containerd does", () => {
  assert.throws(
    () => parseLeaseResource({ id: "x", type: "content" }),
    /invalid content resource id/,
  );
  assert.throws(() => parseLeaseResource({ id: "x", type: "content/a" }), InvalidArgumentError);
  assert.throws(() => parseLeaseResource({ id: "x", type: "snapshots" }), InvalidArgumentError);
  assert.throws(() => parseLeaseResource({ id: "x", type: "images" }), NotImplementedError);
  assert.deepEqual(parseLeaseResource({ id: "k", type: "snapshots/native" }), {
    id: "k",
    type: "snapshots/native",
  });
});
