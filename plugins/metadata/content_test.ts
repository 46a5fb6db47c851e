/** Tests for the namespaced content store: isolation, sharing, ingests, leases, labels. */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../../server/errdefs.ts";
import type { ScopedContentStore } from "./api.ts";
import { ingest, memoryMetadata, sha256 } from "./testing.ts";

const enc = new TextEncoder();

async function readAll(store: ScopedContentStore, digest: string): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.read(digest)) parts.push(chunk);
  return new TextDecoder().decode(new Uint8Array(parts.flatMap((p) => [...p])));
}

Deno.test("content committed in one namespace is invisible in another", async () => {
  const { md } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const b = md.content({ namespace: "b" });
    const digest = await ingest(a, "ref", "hello", { "k": "v" });
    assert.equal(digest, sha256("hello"));
    assert.equal(a.info(digest).size, 5);
    assert.deepEqual(a.info(digest).labels, { k: "v" });
    assert.equal(await readAll(a, digest), "hello");
    assert.throws(
      () => b.info(digest),
      (err: unknown) =>
        err instanceof NotFoundError && err.message === `content digest ${digest}: not found`,
    );
    await assert.rejects(() => readAll(b, digest), NotFoundError);
    assert.deepEqual(b.list([]), []);
    assert.throws(() => b.delete(digest), NotFoundError);
  } finally {
    await md.close();
  }
});

Deno.test("the same blob in two namespaces is stored once on disk", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const b = md.content({ namespace: "b" });
    const digest = await ingest(a, "r1", "shared bytes");
    // b writes the bytes itself (no expected digest): the disk commit finds the blob, the
    // row is added all the same.
    assert.equal(await ingest(b, "r2", "shared bytes", { "containerd.io/gc.root": "1" }), digest);
    assert.equal(cs.blobs.size, 1);
    assert.equal(b.info(digest).size, 12);
    // Deleting it in a leaves b's (rooted) copy readable.
    a.delete(digest);
    await md.garbageCollect();
    assert.equal(await readAll(b, digest), "shared bytes");
    b.delete(digest);
    await md.garbageCollect();
    assert.equal(cs.blobs.size, 0);
  } finally {
    await md.close();
  }
});

Deno.test("a write whose expected digest is on disk shares it without copying", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const digest = await ingest(md.content({ namespace: "a" }), "r", "payload");
    const b = md.content({ namespace: "b" });
    const w = await b.writer("other", { expected: digest, total: 7 });
    assert.equal(w.status().offset, 7, "a shared ingest reports the whole blob");
    assert.equal(w.digest(), digest);
    assert.equal(cs.ingests.size, 0, "nothing written to disk");
    const info = await w.commit({ size: 7, expected: digest, labels: { x: "y" } });
    await w.close();
    assert.deepEqual([info.digest, info.size, info.labels], [digest, 7, { x: "y" }]);
    assert.equal(await readAll(b, digest), "payload");
  } finally {
    await md.close();
  }
});

Deno.test("isolated sharing policy makes every namespace write the bytes", async () => {
  const { md } = memoryMetadata({ sharedContent: false });
  try {
    const digest = await ingest(md.content({ namespace: "a" }), "r", "payload");
    const w = await md.content({ namespace: "b" }).writer("r", { expected: digest });
    assert.equal(w.status().offset, 0);
    await w.close();
  } finally {
    await md.close();
  }
});

Deno.test("opening a writer for content the namespace has is AlreadyExists", async () => {
  const { md } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const digest = await ingest(a, "r", "data");
    await assert.rejects(
      () => a.writer("again", { expected: digest }),
      (err: unknown) =>
        err instanceof AlreadyExistsError && err.message === `content ${digest}: already exists`,
    );
    // Committing the same bytes under another ref: the row exists, AlreadyExists, ingest gone.
    const w = await a.writer("again");
    await w.write(enc.encode("data"), 0);
    await assert.rejects(() => w.commit(), AlreadyExistsError);
    await w.close();
    assert.deepEqual(await a.listStatuses([]), []);
  } finally {
    await md.close();
  }
});

Deno.test("commit checks size and digest; a failed commit keeps the ingest", async () => {
  const { md } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const w = await a.writer("r");
    await w.write(enc.encode("12345"), 0);
    await assert.rejects(() => w.commit({ size: 4 }), /failed size validation: 5 != 4/);
    await assert.rejects(
      () => w.commit({ expected: sha256("other") }),
      FailedPreconditionError,
    );
    await w.close();
    assert.equal((await a.status("r")).offset, 5);
  } finally {
    await md.close();
  }
});

Deno.test("ingests are namespaced: same ref in two namespaces, each sees only its own", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const b = md.content({ namespace: "b" });
    const wa = await a.writer("ref");
    await wa.write(enc.encode("aaaa"), 0);
    const wb = await b.writer("ref");
    await wb.write(enc.encode("bb"), 0);
    assert.deepEqual((await a.listStatuses([])).map((s) => [s.ref, s.offset]), [["ref", 4]]);
    assert.deepEqual((await b.listStatuses([])).map((s) => [s.ref, s.offset]), [["ref", 2]]);
    assert.equal(cs.ingests.size, 2);
    for (const ref of cs.ingests.keys()) assert.match(ref, /^(a|b)\/\d+\/ref$/);
    await assert.rejects(
      () => md.content({ namespace: "c" }).status("ref"),
      /reference ref: not found/,
    );
    await wa.close();
    await wb.close();
  } finally {
    await md.close();
  }
});

Deno.test("a held ref is Unavailable; a closed ingest resumes at its offset", async () => {
  const { md } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const w = await a.writer("ref", { total: 6 });
    await w.write(enc.encode("abc"), 0);
    await assert.rejects(() => a.writer("ref"), UnavailableError);
    await w.close();
    const again = await a.writer("ref", { total: 6 });
    assert.equal(again.status().offset, 3);
    await again.write(enc.encode("def"), 3);
    const info = await again.commit({ size: 6, expected: sha256("abcdef") });
    await again.close();
    assert.equal(info.digest, sha256("abcdef"));
    assert.deepEqual(await a.listStatuses([]), []);
  } finally {
    await md.close();
  }
});

Deno.test("status filters match on ref; abort removes the namespace's ingest only", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    for (const ref of ["one", "two"]) {
      const w = await a.writer(ref);
      await w.write(enc.encode(ref), 0);
      await w.close();
    }
    assert.deepEqual((await a.listStatuses(["ref==two"])).map((s) => s.ref), ["two"]);
    assert.deepEqual((await a.listStatuses([""])).map((s) => s.ref), ["one", "two"]);
    assert.deepEqual((await a.listStatuses(["ref~=^o"])).map((s) => s.ref), ["one"]);
    await assert.rejects(() => a.listStatuses(["ref=="]), InvalidArgumentError);
    await assert.rejects(() => md.content({ namespace: "b" }).abort("one"), NotFoundError);
    await a.abort("one");
    assert.deepEqual((await a.listStatuses([])).map((s) => s.ref), ["two"]);
    assert.equal(cs.ingests.size, 1);
  } finally {
    await md.close();
  }
});

Deno.test("labels update by field mask; list filters on digest, size and labels", async () => {
  const { md } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const d1 = await ingest(a, "1", "one", { app: "x" });
    const d2 = await ingest(a, "2", "three", { app: "y" });
    const before = a.info(d1);
    const updated = a.update({ digest: d1, labels: { extra: "1" } }, ["labels.extra"]);
    assert.deepEqual(updated.labels, { app: "x", extra: "1" });
    assert.ok(updated.updatedAt.getTime() >= before.updatedAt.getTime());
    assert.deepEqual(a.update({ digest: d1, labels: {} }, ["labels.app"]).labels, { extra: "1" });
    assert.throws(
      () => a.update({ digest: d1, labels: {} }, ["size"]),
      /cannot update "size" field on content info/,
    );
    assert.throws(() => a.update({ digest: sha256("nope"), labels: {} }, []), NotFoundError);
    assert.deepEqual(a.list(["labels.app==y"]).map((i) => i.digest), [d2]);
    assert.deepEqual(a.list([`digest==${d1}`]).map((i) => i.digest), [d1]);
    assert.deepEqual(a.list(["size==5"]).map((i) => i.digest), [d2]);
    assert.equal(a.list([]).length, 2);
  } finally {
    await md.close();
  }
});

Deno.test("the request's lease holds committed content and ingests", async () => {
  const { md } = memoryMetadata();
  try {
    md.leases.create("a", { id: "L" });
    const leased = md.content({ namespace: "a", lease: "L" });
    const digest = await ingest(leased, "r", "held");
    const w = await leased.writer("pending");
    await w.write(enc.encode("x"), 0);
    await w.close();
    assert.deepEqual(md.leases.listResources("a", "L"), [
      { id: digest, type: "content" },
      { id: "pending", type: "ingests" },
    ]);
    await assert.rejects(
      () => md.content({ namespace: "a", lease: "missing" }).writer("r2"),
      /lease does not exist: not found/,
    );
  } finally {
    await md.close();
  }
});

Deno.test("a write that resumes a shared ingest at offset 0 restarts it", async () => {
  const { md } = memoryMetadata();
  try {
    const digest = await ingest(md.content({ namespace: "a" }), "r", "abc");
    const b = md.content({ namespace: "b" });
    const w = await b.writer("r", { expected: digest });
    await w.write(enc.encode("abc"), 0);
    const info = await w.commit({ expected: digest });
    await w.close();
    assert.equal(info.digest, digest);
  } finally {
    await md.close();
  }
});

Deno.test("an empty ref is refused", async () => {
  const { md } = memoryMetadata();
  try {
    await assert.rejects(() => md.content({ namespace: "a" }).writer(""), /ref must not be empty/);
    assert.throws(() => md.content({ namespace: "bad ns" }), InvalidArgumentError);
  } finally {
    await md.close();
  }
});

Deno.test("a Read right after another of the same blob still sees deletes, other namespaces and GC", async () => {
  const { md, cs } = memoryMetadata();
  try {
    const a = md.content({ namespace: "a" });
    const b = md.content({ namespace: "b" });
    const digest = await ingest(a, "ref", "read me twice");
    // The second read of the same blob skips the lookup; another namespace must not.
    assert.equal(await readAll(a, digest), "read me twice");
    assert.equal(await readAll(a, digest), "read me twice");
    await assert.rejects(() => readAll(b, digest), NotFoundError);
    assert.equal(await readAll(a, digest), "read me twice");
    // A delete is a write: the next read looks again and finds nothing.
    a.delete(digest);
    await assert.rejects(() => readAll(a, digest), NotFoundError);
    // Written again, read, then removed by the collector (a's ingest had no lease or root).
    const again = await ingest(a, "ref2", "read me twice");
    assert.equal(await readAll(a, again), "read me twice");
    a.delete(again);
    await md.garbageCollect();
    assert.equal(cs.blobs.size, 0);
    await assert.rejects(() => readAll(a, again), NotFoundError);
  } finally {
    await md.close();
  }
});
