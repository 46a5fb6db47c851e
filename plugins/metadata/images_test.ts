/** Tests for the images table: CRUD, validation, filters, field masks, GC roots. */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../server/errdefs.ts";
import { SqlImageStore } from "./images.ts";
import { ingest, memoryMetadata } from "./testing.ts";

const INDEX = "application/vnd.oci.image.index.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;

function target(digest = D1, mediaType = INDEX, annotations: Record<string, string> = {}) {
  return { mediaType, digest, size: 100, annotations };
}

Deno.test("images are created, read, listed by name and refused twice", () => {
  const { md } = memoryMetadata();
  const images = new SqlImageStore(md);
  try {
    const created = images.create("default", {
      name: "docker.io/library/b:latest",
      labels: { a: "1", empty: "" },
      target: target(D1, INDEX, { "org.opencontainers.image.ref.name": "latest" }),
    });
    assert.equal(created.name, "docker.io/library/b:latest");
    assert.deepEqual(created.labels, { a: "1" });
    assert.deepEqual(created.target.annotations, { "org.opencontainers.image.ref.name": "latest" });
    assert.equal(created.createdAt.getTime(), created.updatedAt.getTime());
    images.create("default", { name: "docker.io/library/a:latest", target: target(D2) });
    assert.deepEqual(images.list("default").map((i) => i.name), [
      "docker.io/library/a:latest",
      "docker.io/library/b:latest",
    ]);
    // List reads labels in bulk: each image gets its own, none gets another's.
    images.create("other", {
      name: "docker.io/library/b:latest",
      labels: { o: "x" },
      target: target(),
    });
    assert.deepEqual(images.list("default").map((i) => i.labels), [{}, { a: "1" }]);
    assert.deepEqual(images.list("default")[1], created);
    assert.deepEqual(images.get("default", "docker.io/library/b:latest"), created);
    assert.ok(md.namespaces.exists("default"));
    assert.throws(
      () => images.create("default", { name: "docker.io/library/a:latest", target: target() }),
      (err: unknown) =>
        err instanceof AlreadyExistsError &&
        err.message === 'image "docker.io/library/a:latest": already exists',
    );
    assert.throws(
      () => images.get("default", "nope"),
      (err: unknown) => err instanceof NotFoundError && err.message === 'image "nope": not found',
    );
    // Namespaces do not see each other's images.
    assert.deepEqual(images.list("third"), []);
    assert.deepEqual(images.list("other").map((i) => [i.name, i.labels]), [
      ["docker.io/library/b:latest", { o: "x" }],
    ]);
    assert.throws(() => images.get("other", "docker.io/library/a:latest"), NotFoundError);
  } finally {
    md.close();
  }
});

Deno.test("images are validated as containerd validates them", () => {
  const { md } = memoryMetadata();
  const images = new SqlImageStore(md);
  try {
    const bad = (input: Parameters<typeof images.create>[1], message: RegExp) =>
      assert.throws(
        () => images.create("default", input),
        (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      );
    bad({ name: "", target: target() }, /^image name must not be empty$/);
    bad({ name: "x", target: { ...target(), digest: "sha256:zz" } }, /^Target.Digest "sha256:zz"/);
    bad({ name: "x", target: { ...target(), size: 0 } }, /^Target.Size must be greater than zero$/);
    bad({ name: "x", target: { ...target(), mediaType: "" } }, /^Target.MediaType must be set$/);
    bad({ name: "x", labels: { k: "v".repeat(5000) }, target: target() }, /^image.Labels/);
    assert.throws(
      () => images.create("bad ns", { name: "x", target: target() }),
      InvalidArgumentError,
    );
    assert.deepEqual(images.list("default"), []);
  } finally {
    md.close();
  }
});

Deno.test("image filters: name, target.digest, target.mediatype, labels, annotations", () => {
  const { md } = memoryMetadata();
  const images = new SqlImageStore(md);
  try {
    images.create("default", {
      name: "docker.io/library/redis:7",
      labels: { "io.cri.pinned": "pinned" },
      target: target(D1, INDEX, { "org.opencontainers.image.ref.name": "7" }),
    });
    images.create("default", { name: "docker.io/library/busybox:1", target: target(D2, MANIFEST) });
    const names = (filters: string[]) => images.list("default", filters).map((i) => i.name);
    assert.deepEqual(names(["name==docker.io/library/redis:7"]), ["docker.io/library/redis:7"]);
    assert.deepEqual(names(["name~=busybox"]), ["docker.io/library/busybox:1"]);
    assert.deepEqual(names([`target.digest==${D2}`]), ["docker.io/library/busybox:1"]);
    assert.deepEqual(names([`target.mediatype==${INDEX}`]), ["docker.io/library/redis:7"]);
    assert.deepEqual(names(['labels."io.cri.pinned"']), ["docker.io/library/redis:7"]);
    assert.deepEqual(
      names(['annotations."org.opencontainers.image.ref.name"==7']),
      ["docker.io/library/redis:7"],
    );
    assert.deepEqual(names(["name~=redis", "name~=busybox"]).length, 2);
    assert.deepEqual(names(["name~=redis,target.mediatype==" + MANIFEST]), []);
    assert.throws(() => images.list("default", ["name=="]), InvalidArgumentError);
  } finally {
    md.close();
  }
});

Deno.test("image updates follow the field mask; no mask replaces the image", async () => {
  const { md } = memoryMetadata();
  const images = new SqlImageStore(md);
  try {
    const first = images.create("default", {
      name: "img",
      labels: { a: "1", b: "2" },
      target: target(D1, INDEX, { x: "1" }),
    });
    await new Promise((r) => setTimeout(r, 5));
    let next = images.update("default", { name: "img", labels: { c: "3" } }, ["labels.c"]);
    assert.deepEqual(next.labels, { a: "1", b: "2", c: "3" });
    assert.equal(next.createdAt.getTime(), first.createdAt.getTime());
    assert.ok(next.updatedAt.getTime() > first.updatedAt.getTime());
    next = images.update("default", { name: "img" }, ["labels.a"]);
    assert.deepEqual(next.labels, { b: "2", c: "3" });
    next = images.update("default", { name: "img", target: target(D2, MANIFEST) }, ["target"]);
    assert.deepEqual(next.target, target(D2, MANIFEST));
    next = images.update("default", { name: "img", target: { annotations: { y: "2" } } }, [
      "annotations.y",
    ]);
    assert.deepEqual(next.target.annotations, { y: "2" });
    next = images.update("default", { name: "img", target: { annotations: { z: "3" } } }, [
      "annotations",
    ]);
    assert.deepEqual(next.target.annotations, { z: "3" });
    next = images.update("default", { name: "img", labels: { only: "1" }, target: target() }, []);
    assert.deepEqual(next.labels, { only: "1" });
    assert.deepEqual(next.target, target());
    assert.throws(
      () => images.update("default", { name: "img" }, ["name"]),
      /cannot update "name" field on image "img"/,
    );
    // Without a mask the target must be complete, as containerd validates the result.
    assert.throws(() => images.update("default", { name: "img" }, []), /Target.Digest/);
    assert.throws(() => images.update("default", { name: "" }, []), /name is required/);
    assert.throws(
      () => images.update("default", { name: "ghost", target: target() }),
      NotFoundError,
    );
  } finally {
    md.close();
  }
});

Deno.test("an image roots its target and labelled references; deleting it frees them", async () => {
  const { md, cs } = memoryMetadata();
  const images = new SqlImageStore(md);
  try {
    const store = md.content({ namespace: "default" });
    const layer = await ingest(store, "layer", "layer bytes");
    const config = await ingest(store, "config", "config bytes");
    const manifest = await ingest(store, "manifest", "manifest bytes", {
      "containerd.io/gc.ref.content.config": config,
      "containerd.io/gc.ref.content.l.0": layer,
    });
    const stray = await ingest(store, "stray", "nobody holds me");
    images.create("default", {
      name: "img",
      target: { mediaType: MANIFEST, digest: manifest, size: 14, annotations: {} },
    });
    await md.garbageCollect();
    assert.deepEqual(
      store.list([]).map((i) => i.digest).sort(),
      [config, layer, manifest].sort(),
    );
    assert.equal(cs.blobs.has(stray), false);
    // The namespace cannot go while it has images (and blobs).
    assert.throws(() => md.namespaces.delete("default"), FailedPreconditionError);
    images.delete("default", "img");
    assert.throws(() => images.delete("default", "img"), /image "img": not found/);
    await md.garbageCollect();
    assert.deepEqual(store.list([]), []);
    assert.equal(cs.blobs.size, 0);
  } finally {
    md.close();
  }
});
