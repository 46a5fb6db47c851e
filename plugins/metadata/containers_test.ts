/** Tests for the containers table: CRUD, validation, filters, field masks, GC roots. */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../server/errdefs.ts";
import {
  type ContainerInput,
  OCI_SPEC_TYPE_URL,
  specJSON,
  SqlContainerStore,
} from "./containers.ts";
import { memoryMetadata } from "./testing.ts";

const enc = new TextEncoder();

function spec(args: string[] = ["/bin/sh"]) {
  return { typeUrl: OCI_SPEC_TYPE_URL, value: enc.encode(JSON.stringify({ process: { args } })) };
}

function container(id: string, extra: Partial<ContainerInput> = {}): ContainerInput {
  return {
    id,
    image: "docker.io/library/testbox:latest",
    runtime: { name: "io.containerd.runc.v2" },
    spec: spec(),
    snapshotter: "overlayfs",
    snapshotKey: id,
    ...extra,
  };
}

function snapshotKeys(md: ReturnType<typeof memoryMetadata>["md"]): string[] {
  return md.view((tx) =>
    tx.all<{ key: string }>("SELECT key FROM snapshots ORDER BY key").map((r) => r.key)
  );
}

Deno.test("containers are created, read, listed by id and refused twice", () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    const options = { typeUrl: "containerd.runc.v1.Options", value: new Uint8Array([8, 1]) };
    const created = containers.create(
      "default",
      container("b", {
        labels: { a: "1", empty: "" },
        runtime: { name: "io.containerd.runc.v2", options },
        extensions: { ext: { typeUrl: "x.y/Z", value: new Uint8Array([1, 2, 3]) } },
      }),
    );
    assert.equal(created.id, "b");
    assert.deepEqual(created.labels, { a: "1" });
    assert.deepEqual(created.runtime, { name: "io.containerd.runc.v2", options });
    assert.deepEqual(created.extensions, {
      ext: { typeUrl: "x.y/Z", value: new Uint8Array([1, 2, 3]) },
    });
    assert.deepEqual(specJSON(created), { process: { args: ["/bin/sh"] } });
    assert.equal(created.createdAt.getTime(), created.updatedAt.getTime());
    containers.create("default", container("a"));
    assert.deepEqual(containers.list("default").map((c) => c.id), ["a", "b"]);
    // List reads labels in bulk: each container gets its own.
    containers.create("third", container("b", { labels: { t: "3" } }));
    assert.deepEqual(containers.list("default").map((c) => c.labels), [{}, { a: "1" }]);
    assert.deepEqual(containers.list("default")[1], created);
    assert.deepEqual(containers.list("third").map((c) => c.labels), [{ t: "3" }]);
    assert.deepEqual(containers.get("default", "b"), created);
    assert.deepEqual(containers.get("default", "a").runtime, { name: "io.containerd.runc.v2" });
    assert.deepEqual(containers.get("default", "a").extensions, {});
    assert.ok(md.namespaces.exists("default"));
    assert.throws(
      () => containers.create("default", container("a")),
      (e) => e instanceof AlreadyExistsError && e.message === 'container "a": already exists',
    );
    assert.throws(
      () => containers.get("default", "zz"),
      (e) =>
        e instanceof NotFoundError &&
        e.message === 'container "zz" in namespace "default": not found',
    );
    assert.throws(() => containers.get("other", "a"), NotFoundError);
    assert.deepEqual(containers.list("other"), []);
  } finally {
    md.close();
  }
});

Deno.test("create validates like containerd", () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    const refused = (input: ContainerInput, message: string) =>
      assert.throws(
        () => containers.create("default", input),
        (e) => e instanceof InvalidArgumentError && e.message.includes(message),
        message,
      );
    refused(container("bad id"), "container.ID: identifier");
    refused(container(""), "container.ID: identifier must not be empty");
    refused(container("c", { runtime: { name: "" } }), "container.Runtime.Name must be set");
    refused({ ...container("c"), spec: undefined }, "container.Spec must be set");
    refused(
      container("c", { snapshotter: "" }),
      "container.Snapshotter must be set if container.SnapshotKey is set",
    );
    refused(
      container("c", { extensions: { "": { typeUrl: "t", value: new Uint8Array() } } }),
      "container.Extension keys must not be zero-length",
    );
    refused(container("c", { labels: { k: "v".repeat(5000) } }), "greater than maximum size");
    // No image and no snapshot is fine (ctr run --rootfs).
    const bare = containers.create("default", {
      id: "bare",
      runtime: { name: "io.containerd.runc.v2" },
      spec: spec(),
    });
    assert.equal(bare.image, "");
    assert.equal(bare.snapshotter, "");
    assert.deepEqual(containers.list("default").map((c) => c.id), ["bare"]);
  } finally {
    md.close();
  }
});

Deno.test("list filters on id, image, runtime.name and labels", () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    containers.create("default", container("c1", { labels: { env: "prod" } }));
    containers.create(
      "default",
      container("c2", { image: "docker.io/library/redis:7", runtime: { name: "io.other.v1" } }),
    );
    const ids = (...filters: string[]) => containers.list("default", filters).map((c) => c.id);
    assert.deepEqual(ids("id==c1"), ["c1"]);
    assert.deepEqual(ids("image~=redis"), ["c2"]);
    assert.deepEqual(ids("runtime.name==io.containerd.runc.v2"), ["c1"]);
    assert.deepEqual(ids("labels.env==prod"), ["c1"]);
    assert.deepEqual(ids("labels.env"), ["c1"]);
    assert.deepEqual(ids("labels.env!=prod"), ["c2"]);
    assert.deepEqual(ids("id==c1", "id==c2"), ["c1", "c2"]);
    assert.deepEqual(ids(""), ["c1", "c2"]);
    assert.throws(() => containers.list("default", ["id=="]), InvalidArgumentError);
  } finally {
    md.close();
  }
});

Deno.test("update applies field paths; snapshotter and runtime are immutable", () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    const created = containers.create("default", container("c", { labels: { a: "1", b: "2" } }));
    // labels.<k>: set one, remove one by absence or empty value.
    let c = containers.update("default", { id: "c", labels: { x: "y", b: "" } }, [
      "labels.x",
      "labels.a",
      "labels.b",
    ]);
    assert.deepEqual(c.labels, { x: "y" });
    assert.equal(c.createdAt.getTime(), created.createdAt.getTime());
    assert.deepEqual(specJSON(c), { process: { args: ["/bin/sh"] } });
    c = containers.update("default", { id: "c", labels: { z: "1" } }, ["labels"]);
    assert.deepEqual(c.labels, { z: "1" });
    c = containers.update("default", { id: "c", spec: spec(["/bin/true"]) }, ["spec"]);
    assert.deepEqual(specJSON(c), { process: { args: ["/bin/true"] } });
    c = containers.update("default", { id: "c", image: "img2", snapshotKey: "k2" }, [
      "image",
      "snapshotkey",
    ]);
    assert.equal(c.image, "img2");
    assert.equal(c.snapshotKey, "k2");
    const ext = { typeUrl: "t/E", value: new Uint8Array([9]) };
    c = containers.update("default", { id: "c", extensions: { e1: ext, e2: ext } }, [
      "extensions.e1",
    ]);
    assert.deepEqual(Object.keys(c.extensions), ["e1"]);
    c = containers.update("default", { id: "c", extensions: {} }, ["extensions.e1"]);
    assert.deepEqual(c.extensions, {});
    c = containers.update("default", { id: "c", extensions: { e2: ext } }, ["extensions"]);
    assert.deepEqual(Object.keys(c.extensions), ["e2"]);
    // Named immutable fields are unknown paths.
    for (const path of ["snapshotter", "runtime", "id", "created_at"]) {
      assert.throws(
        () => containers.update("default", container("c"), [path]),
        (e) =>
          e instanceof InvalidArgumentError &&
          e.message === `cannot update ${JSON.stringify(path)} field on "c"`,
      );
    }
    // Spec cannot be removed.
    assert.throws(
      () => containers.update("default", { id: "c" }, ["spec"]),
      (e) => e instanceof InvalidArgumentError && e.message.includes("container.Spec must be set"),
    );
    // No paths: replace labels, spec, extensions, image, snapshot key; immutables must match.
    c = containers.update("default", container("c", { labels: { full: "1" }, image: "img3" }));
    assert.deepEqual(c.labels, { full: "1" });
    assert.equal(c.image, "img3");
    assert.equal(c.snapshotKey, "c");
    assert.deepEqual(c.extensions, {});
    assert.throws(
      () => containers.update("default", container("c", { snapshotter: "native" })),
      (e) =>
        e instanceof InvalidArgumentError &&
        e.message === "container.Snapshotter field is immutable",
    );
    assert.throws(
      () => containers.update("default", container("c", { runtime: { name: "io.x.v1" } })),
      (e) =>
        e instanceof InvalidArgumentError &&
        e.message === "container.Runtime.Name field is immutable",
    );
    assert.throws(
      () => containers.update("default", container("nope"), ["labels"]),
      (e) => e instanceof NotFoundError && e.message === 'container "nope": not found',
    );
    assert.throws(
      () => containers.update("default", { id: "" }, ["labels"]),
      (e) => e instanceof InvalidArgumentError && e.message === "must specify a container id",
    );
  } finally {
    md.close();
  }
});

Deno.test("delete removes the record and its labels; the namespace then empties", () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    containers.create("ns1", container("c", { labels: { a: "1" } }));
    assert.throws(
      () => md.namespaces.delete("ns1"),
      (e) => e instanceof FailedPreconditionError && e.message.includes("containers"),
    );
    containers.delete("ns1", "c");
    assert.throws(
      () => containers.delete("ns1", "c"),
      (e) => e instanceof NotFoundError && e.message === 'container "c": not found',
    );
    assert.equal(
      md.view((tx) => tx.all("SELECT * FROM container_labels")).length,
      0,
    );
    md.namespaces.delete("ns1");
  } finally {
    md.close();
  }
});

Deno.test("a container roots its snapshot (and labelled refs) until it is deleted", async () => {
  const { md } = memoryMetadata();
  const containers = new SqlContainerStore(md);
  try {
    md.update((tx) => {
      md.ensureNamespace(tx, "default");
      for (const [key, parent] of [["base", ""], ["rw", "base"], ["ref", ""], ["loose", ""]]) {
        tx.run(
          `INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, created_at,
             updated_at) VALUES ('default', 'overlayfs', ?, ?, ?, 0, 0)`,
          key as string,
          key as string,
          parent as string,
        );
      }
    });
    containers.create(
      "default",
      container("c1", {
        snapshotKey: "rw",
        labels: { "containerd.io/gc.ref.snapshot.overlayfs": "ref" },
      }),
    );
    await md.garbageCollect();
    assert.deepEqual(snapshotKeys(md), ["base", "ref", "rw"]);
    containers.delete("default", "c1");
    await md.garbageCollect();
    assert.deepEqual(snapshotKeys(md), []);
  } finally {
    md.close();
  }
});
