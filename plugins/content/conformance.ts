/**
 * The content store conformance suite: one set of behaviours every {@link ContentStore} must
 * show, registered as Deno tests against a factory (Hono's shared router test-suite pattern).
 * Run it from each implementation's test file, so a second store (or a wrapper) is held to
 * exactly the contract the metadata layer and the content service rely on.
 *
 * @example
 * ```ts
 * import { contentStoreSuite } from "./conformance.ts";
 * import { LocalContentStore } from "./local.ts";
 * contentStoreSuite("local", async () => {
 *   const root = await Deno.makeTempDir();
 *   const store = await LocalContentStore.open(root);
 *   return {
 *     store,
 *     reopen: () => LocalContentStore.open(root),
 *     cleanup: () => Deno.remove(root, { recursive: true }),
 *   };
 * });
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { join, relative, resolve, sep } from "node:path";
import { Code, codeOf } from "../../server/errdefs.ts";
import { Sha256, sha256Digest } from "../../server/digest.ts";
import { concatBytes } from "../../server/bytes.ts";
import type { BlobInfo, ContentStore, ContentWriter } from "./api.ts";

/** What a suite factory returns: a fresh, empty store and how to dispose of it. */
export interface ContentStoreFixture {
  /** The store under test, fresh and empty. */
  store: ContentStore;
  /** Remove everything the store wrote. */
  cleanup(): Promise<void>;
  /**
   * A second store instance on the same root, as a restarted daemon would open it. Tests of
   * restart and crash behaviour are skipped when absent.
   */
  reopen?(): Promise<ContentStore>;
}

const encoder = new TextEncoder();
const MiB = 1 << 20;

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Deterministic pseudo-random bytes (xorshift), so tests can recompute what they wrote. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of chunks) {
    parts.push(chunk);
    length += chunk.byteLength;
  }
  return concatBytes(parts, length);
}

async function rejectsWith(
  promise: Promise<unknown> | (() => Promise<unknown>),
  code: Code,
  message?: string | RegExp,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal(codeOf(err), code, `expected code ${Code[code]}, got ${String(err)}`);
    const text = err instanceof Error ? err.message : String(err);
    if (typeof message === "string") {
      assert.ok(
        text.includes(message),
        `message ${JSON.stringify(text)} lacks ${JSON.stringify(message)}`,
      );
    } else if (message) assert.match(text, message);
    return true;
  });
}

async function writeBlob(store: ContentStore, ref: string, data: Uint8Array): Promise<BlobInfo> {
  const w = await store.writer(ref, { total: data.byteLength });
  await w.write(data, 0);
  return await w.commit({ size: data.byteLength, expected: sha256Digest(data) });
}

async function walkAll(store: ContentStore): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const info of store.walk()) out.push(info);
  return out.sort((a, b) => (a.digest < b.digest ? -1 : 1));
}

/** Every file path under `root`, relative to it. */
async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await visit(path);
      else out.push(relative(root, path));
    }
  };
  await visit(root);
  return out.sort();
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

function rss(): number {
  return Deno.memoryUsage().rss;
}

/**
 * Register the conformance tests for a content store. `name` prefixes every test name; `make`
 * is called once per test and must return a fresh, empty store.
 */
export function contentStoreSuite(name: string, make: () => Promise<ContentStoreFixture>): void {
  const test = (
    title: string,
    fn: (fixture: ContentStoreFixture) => Promise<void>,
    options: { sanitizeResources?: boolean } = {},
  ) => {
    Deno.test({
      name: `${name}: ${title}`,
      ...options,
      async fn() {
        const fixture = await make();
        try {
          await fn(fixture);
        } finally {
          await fixture.cleanup();
        }
      },
    });
  };

  test("write, commit, info and read back byte-identical", async ({ store }) => {
    const data = pattern(3 * MiB + 12345, 1);
    const w = await store.writer("ref-1", { total: data.byteLength });
    // Several writes of odd sizes, each at the running offset.
    let at = 0;
    for (const size of [1, 4095, MiB, MiB + 3]) {
      const n = await w.write(data.subarray(at, at + size), at);
      assert.equal(n, size);
      at += size;
    }
    await w.write(data.subarray(at), at);
    assert.equal(w.status().offset, data.byteLength);
    assert.equal(w.status().total, data.byteLength);
    assert.equal(w.digest(), sha256Digest(data));
    const committed = await w.commit({ size: data.byteLength, expected: sha256Digest(data) });
    assert.equal(committed.digest, sha256Digest(data));
    assert.equal(committed.size, data.byteLength);

    const info = await store.info(committed.digest);
    assert.equal(info.digest, committed.digest);
    assert.equal(info.size, data.byteLength);
    assert.ok(info.createdAt instanceof Date);
    assert.deepEqual(await collect(store.read(committed.digest)), data);
    // Partial reads: offset only, offset + size, size past the end (clamped), small chunks.
    assert.deepEqual(
      await collect(store.read(committed.digest, { offset: MiB + 7 })),
      data.subarray(MiB + 7),
    );
    assert.deepEqual(
      await collect(store.read(committed.digest, { offset: 10, size: 2 * MiB })),
      data.subarray(10, 10 + 2 * MiB),
    );
    assert.deepEqual(
      await collect(store.read(committed.digest, { offset: data.byteLength - 5, size: 100 })),
      data.subarray(data.byteLength - 5),
    );
    assert.deepEqual(
      await collect(store.read(committed.digest, { offset: data.byteLength })),
      new Uint8Array(0),
    );
    const chunks: number[] = [];
    for await (
      const chunk of store.read(committed.digest, { offset: 3, size: 1000, chunkSize: 300 })
    ) {
      chunks.push(chunk.byteLength);
    }
    assert.deepEqual(chunks, [300, 300, 300, 100]);
    // Default chunking stays at or under 1 MiB.
    for await (const chunk of store.read(committed.digest)) assert.ok(chunk.byteLength <= MiB);
    await rejectsWith(
      collect(store.read(committed.digest, { offset: data.byteLength + 1 })),
      Code.OutOfRange,
    );
    // Small positioned reads (ctr's 32 KiB Read calls) behave the same.
    assert.deepEqual(
      await collect(store.read(committed.digest, { offset: MiB - 3, size: 32 * 1024 })),
      data.subarray(MiB - 3, MiB - 3 + 32 * 1024),
    );
    await rejectsWith(
      collect(store.read(committed.digest, { offset: data.byteLength + 1, size: 10 })),
      Code.OutOfRange,
    );
    await rejectsWith(
      collect(store.read(sha256Digest("absent"), { offset: 0, size: 10 })),
      Code.NotFound,
    );
    // The ingest is gone once committed.
    await rejectsWith(store.status("ref-1"), Code.NotFound);
    assert.deepEqual(await store.listStatuses(), []);
  });

  test("an empty blob commits and reads back empty", async ({ store }) => {
    const w = await store.writer("empty");
    const info = await w.commit({ expected: sha256Digest(new Uint8Array(0)) });
    assert.equal(info.size, 0);
    assert.equal((await store.info(info.digest)).size, 0);
    assert.deepEqual(await collect(store.read(info.digest)), new Uint8Array(0));
  });

  test("streams a 64 MiB blob in and out without buffering it", async ({ store }) => {
    const total = 64 * MiB;
    const chunk = pattern(MiB, 7);
    const expected = new Sha256();
    const beforeWrite = rss();
    let peak = beforeWrite;
    const w = await store.writer("big", { total });
    for (let at = 0; at < total; at += MiB) {
      chunk[0] = (at / MiB) & 0xff; // every chunk differs
      expected.update(chunk);
      await w.write(chunk, at);
      peak = Math.max(peak, rss());
    }
    const info = await w.commit({ size: total, expected: expected.digest() });
    assert.equal(info.size, total);
    const writeGrowth = peak - beforeWrite;
    assert.ok(
      writeGrowth < 16 * MiB,
      `rss grew by ${(writeGrowth / MiB).toFixed(1)} MiB writing 64 MiB`,
    );

    // Three readers in lockstep: 192 MiB pass through. Each chunk is a fresh buffer (the
    // consumer may keep it), and V8 reclaims such external memory only once about 64 MiB of
    // it is garbage, so streaming plateaus near 64 MiB of growth whatever the size, while
    // buffering would hold 192 MiB.
    const beforeRead = rss();
    peak = beforeRead;
    const readers = [0, 1, 2].map(() => store.read(info.digest)[Symbol.asyncIterator]());
    const hashes = readers.map(() => new Sha256());
    for (;;) {
      const results = await Promise.all(readers.map((reader) => reader.next()));
      if (results.every((r) => r.done)) break;
      results.forEach((r, i) => {
        if (!r.done) hashes[i]?.update(r.value);
      });
      peak = Math.max(peak, rss());
    }
    for (const hash of hashes) {
      assert.equal(hash.digest(), info.digest);
      assert.equal(hash.length, total);
    }
    const readGrowth = peak - beforeRead;
    assert.ok(
      readGrowth < 80 * MiB,
      `rss grew by ${(readGrowth / MiB).toFixed(1)} MiB streaming 3 x 64 MiB`,
    );
  });

  test("resumes after close with the offset and digest preserved", async ({ store }) => {
    const data = pattern(2 * MiB + 3, 2);
    const half = MiB + 1;
    const w1 = await store.writer("resume", {
      total: data.byteLength,
      expected: sha256Digest(data),
    });
    await w1.write(data.subarray(0, half), 0);
    await w1.close();
    await w1.close(); // idempotent

    const status = await store.status("resume");
    assert.equal(status.offset, half);
    assert.equal(status.total, data.byteLength);
    assert.equal(status.expected, sha256Digest(data));

    const w2 = await store.writer("resume", { total: data.byteLength });
    assert.equal(w2.status().offset, half);
    assert.equal(w2.status().total, data.byteLength);
    assert.equal(w2.status().expected, sha256Digest(data));
    assert.equal(w2.digest(), sha256Digest(data.subarray(0, half)));
    assert.equal(w2.status().startedAt.getTime(), status.startedAt.getTime());
    await w2.write(data.subarray(half), half);
    const info = await w2.commit({ size: data.byteLength, expected: sha256Digest(data) });
    assert.deepEqual(await collect(store.read(info.digest)), data);
  });

  test("resumes after a simulated crash on a reopened store", async ({ store, reopen }) => {
    if (!reopen) return;
    const data = pattern(MiB + 999, 3);
    const cut = 700_001;
    const dropped = await store.writer("crash", { total: data.byteLength });
    await dropped.write(data.subarray(0, cut), 0);
    // No close: the process "dies" here. A restarted daemon opens a new store on the root.
    const again = await reopen();
    const statuses = await again.listStatuses();
    assert.equal(statuses.length, 1);
    assert.equal(statuses[0]?.ref, "crash");
    assert.equal(statuses[0]?.offset, cut);
    assert.equal(statuses[0]?.total, data.byteLength);
    const w = await again.writer("crash");
    assert.equal(w.status().offset, cut);
    assert.equal(w.digest(), sha256Digest(data.subarray(0, cut)));
    await w.write(data.subarray(cut), cut);
    const info = await w.commit({ size: data.byteLength, expected: sha256Digest(data) });
    assert.deepEqual(await collect(again.read(info.digest)), data);
    // The first instance sees the blob too (same disk).
    assert.equal((await store.info(info.digest)).size, data.byteLength);
  }, { sanitizeResources: false });

  test("a second writer on a held ref is Unavailable until the first closes", async ({ store }) => {
    const w1 = await store.writer("locked-ref");
    await w1.write(bytes("abc"), 0);
    await rejectsWith(store.writer("locked-ref"), Code.Unavailable, "ref locked-ref locked");
    assert.equal(codeOf(await store.writer("locked-ref").catch((e) => e)), 14);
    await rejectsWith(store.abort("locked-ref"), Code.Unavailable);
    // Other refs are independent.
    const other = await store.writer("other-ref");
    await other.close();
    await w1.close();
    const w2 = await store.writer("locked-ref");
    assert.equal(w2.status().offset, 3);
    await w2.commit();
    // Commit releases the lock as well.
    const w3 = await store.writer("locked-ref");
    assert.equal(w3.status().offset, 0);
    await w3.close();
  });

  test("abort removes the ingest; aborting nothing is NotFound", async ({ store }) => {
    const w = await store.writer("to-abort", { total: 10 });
    await w.write(bytes("hello"), 0);
    await w.close();
    assert.equal((await store.listStatuses()).length, 1);
    await store.abort("to-abort");
    await rejectsWith(store.status("to-abort"), Code.NotFound);
    assert.deepEqual(await store.listStatuses(), []);
    await rejectsWith(store.abort("to-abort"), Code.NotFound);
    await rejectsWith(store.abort("never-there"), Code.NotFound);
    // The ref starts over afterwards.
    const again = await store.writer("to-abort");
    assert.equal(again.status().offset, 0);
    assert.equal(again.status().total, 0);
    await again.close();
  });

  test("a size mismatch fails the commit and publishes nothing", async ({ store }) => {
    const data = bytes("size matters");
    const w = await store.writer("size-ref");
    await w.write(data, 0);
    await rejectsWith(
      w.commit({ size: data.byteLength + 1 }),
      Code.FailedPrecondition,
      `unexpected commit size ${data.byteLength}, expected ${data.byteLength + 1}`,
    );
    await rejectsWith(store.info(sha256Digest(data)), Code.NotFound);
    assert.deepEqual(await walkAll(store), []);
    // The ingest stays for the client, and the ref is free again.
    assert.equal((await store.status("size-ref")).offset, data.byteLength);
    await rejectsWith(w.write(data, data.byteLength), Code.FailedPrecondition);
    const again = await store.writer("size-ref");
    assert.equal(again.status().offset, data.byteLength);
    const info = await again.commit({ size: data.byteLength });
    assert.equal(info.digest, sha256Digest(data));
  });

  test("a digest mismatch fails the commit and publishes nothing", async ({ store }) => {
    const data = bytes("the real bytes");
    const wrong = sha256Digest("other bytes");
    const w = await store.writer("digest-ref");
    await w.write(data, 0);
    await rejectsWith(
      w.commit({ expected: wrong }),
      Code.FailedPrecondition,
      `unexpected commit digest ${sha256Digest(data)}, expected ${wrong}`,
    );
    await rejectsWith(store.info(sha256Digest(data)), Code.NotFound);
    await rejectsWith(store.info(wrong), Code.NotFound);
    assert.deepEqual(await walkAll(store), []);
    assert.equal((await store.status("digest-ref")).offset, data.byteLength);
    await store.abort("digest-ref");
    assert.deepEqual(await store.listStatuses(), []);
  });

  test("the expected digest given at open is checked at commit", async ({ store }) => {
    const wrong = sha256Digest("something else");
    const w = await store.writer("expected-at-open", { expected: wrong });
    await w.write(bytes("these bytes"), 0);
    await rejectsWith(w.commit(), Code.FailedPrecondition, "unexpected commit digest");
    assert.deepEqual(await walkAll(store), []);
  });

  test("committing existing content is AlreadyExists and drops the ingest", async ({ store }) => {
    const data = bytes("twice");
    const first = await writeBlob(store, "first", data);
    const w = await store.writer("second");
    await w.write(data, 0);
    await rejectsWith(
      w.commit({ expected: first.digest }),
      Code.AlreadyExists,
      `content ${first.digest}: already exists`,
    );
    await rejectsWith(store.status("second"), Code.NotFound);
    assert.deepEqual(await collect(store.read(first.digest)), data);
    // Opening a writer for an expected digest that exists is AlreadyExists up front.
    await rejectsWith(store.writer("third", { expected: first.digest }), Code.AlreadyExists);
    await rejectsWith(store.status("third"), Code.NotFound);
    // ...and does not hold the ref.
    const third = await store.writer("third");
    await third.close();
  });

  test("delete removes a blob; missing blobs are NotFound naming the digest", async ({ store }) => {
    const info = await writeBlob(store, "del", bytes("delete me"));
    await store.delete(info.digest);
    await rejectsWith(
      store.info(info.digest),
      Code.NotFound,
      `content digest ${info.digest}: not found`,
    );
    await rejectsWith(
      collect(store.read(info.digest)),
      Code.NotFound,
      `content digest ${info.digest}: not found`,
    );
    await rejectsWith(
      collect(store.read(info.digest, { offset: 1, size: 4 })),
      Code.NotFound,
      `content digest ${info.digest}: not found`,
    );
    await rejectsWith(store.delete(info.digest), Code.NotFound);
    assert.deepEqual(await walkAll(store), []);
    // The same bytes can be written again.
    assert.equal((await writeBlob(store, "del", bytes("delete me"))).digest, info.digest);
  });

  test("walk lists every committed blob with its size", async ({ store }) => {
    const blobs = ["a", "bb", "ccc", ""].map((s) => bytes(s));
    const infos = [];
    for (const [i, data] of blobs.entries()) infos.push(await writeBlob(store, `walk-${i}`, data));
    // An open ingest is not a blob.
    const open = await store.writer("walk-open");
    await open.write(bytes("pending"), 0);
    const walked = await walkAll(store);
    assert.deepEqual(
      walked.map((b) => [b.digest, b.size]),
      infos.map((b) => [b.digest, b.size]).sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
    );
    await open.close();
  });

  test("listStatuses reports ref, offset, total, expected and times", async ({ store }) => {
    const before = Date.now() - 1000;
    const expected = sha256Digest("x".repeat(10));
    const a = await store.writer("status-a", { total: 10, expected });
    await a.write(bytes("xxxx"), 0);
    const b = await store.writer("status-b");
    await b.write(bytes("yy"), 0);
    await b.close();
    const statuses = await store.listStatuses();
    assert.deepEqual(
      statuses.map((s) => [s.ref, s.offset, s.total, s.expected]).sort(),
      [["status-a", 4, 10, expected], ["status-b", 2, 0, ""]],
    );
    for (const s of statuses) {
      assert.ok(s.startedAt.getTime() >= before, "startedAt is recent");
      assert.ok(
        s.updatedAt.getTime() >= s.startedAt.getTime() - 1000,
        "updatedAt is not before startedAt",
      );
      assert.ok(s.updatedAt.getTime() <= Date.now() + 1000, "updatedAt is not in the future");
    }
    const single = await store.status("status-a");
    assert.equal(single.total, 10);
    assert.equal(single.expected, expected);
    await rejectsWith(store.status("status-c"), Code.NotFound);
    await a.close();
  });

  test("malformed and unsupported digests are InvalidArgument", async ({ store }) => {
    const bad = [
      "",
      "sha256",
      "sha256:",
      "sha256:abc",
      "sha256:" + "A".repeat(64),
      "sha256:" + "g".repeat(64),
      "sha256:../../../../etc/passwd",
      "sha256:" + "a".repeat(63) + "/",
      "sha512:" + "a".repeat(128),
      "sha384:" + "a".repeat(96),
      "../blobs/sha256/" + "a".repeat(64),
    ];
    for (const digest of bad) {
      await rejectsWith(store.info(digest), Code.InvalidArgument);
      await rejectsWith(collect(store.read(digest)), Code.InvalidArgument);
      await rejectsWith(store.delete(digest), Code.InvalidArgument);
      await rejectsWith(
        store.writer("ref", { expected: digest === "" ? "x" : digest }),
        Code.InvalidArgument,
      );
    }
    await rejectsWith(
      store.info("sha512:" + "a".repeat(128)),
      Code.InvalidArgument,
      "unsupported digest algorithm",
    );
    const w = await store.writer("bad-commit");
    await w.write(bytes("data"), 0);
    await rejectsWith(w.commit({ expected: "sha256:nope" }), Code.InvalidArgument);
    // A bad argument does not spend the writer.
    assert.equal((await w.commit()).digest, sha256Digest("data"));
    await rejectsWith(store.writer(""), Code.InvalidArgument);
  });

  test("weird refs are opaque names that stay inside the root", async ({ store }) => {
    const hex = "0123456789abcdef".repeat(4);
    const escape = `escape-${crypto.randomUUID()}`;
    const refs = [
      `../../${escape}`,
      `../${escape}/data`,
      `/${escape}`,
      `tar-blobs/sha256/${hex}`,
      "ümlaut-✓-日本語-🙂",
      "r".repeat(10_000),
      "with\nnewline and\0nul",
      ".",
      "..",
    ];
    for (const [i, ref] of refs.entries()) {
      const w = await store.writer(ref, { total: 100 + i });
      await w.write(bytes(`data ${i}`), 0);
      await w.close();
    }
    const statuses = await store.listStatuses();
    assert.deepEqual(statuses.map((s) => s.ref).sort(), [...refs].sort());
    for (const [i, ref] of refs.entries()) {
      const status = await store.status(ref);
      assert.equal(status.ref, ref);
      assert.equal(status.total, 100 + i);
    }
    // Nothing was created outside the root, nor in the blob store.
    const root = resolve(store.root);
    for (
      const base of [root, join(root, "ingest"), join(root, "blobs"), join(root, "blobs", "sha256")]
    ) {
      assert.equal(await pathExists(resolve(base, "..", "..", escape)), false);
      assert.equal(await pathExists(resolve(base, "..", escape)), false);
      assert.equal(await pathExists(join("/", escape)), false);
    }
    for (const path of await listTree(root)) {
      assert.ok(!path.startsWith(".."), `${path} is inside the root`);
      assert.ok(!path.startsWith(join("blobs", "sha256") + sep), `${path} is not a blob`);
    }
    // They commit and abort like any other ref.
    const w = await store.writer(refs[0] ?? "");
    const info = await w.commit();
    assert.equal(info.digest, sha256Digest("data 0"));
    for (const ref of refs.slice(1)) await store.abort(ref);
    assert.deepEqual(await store.listStatuses(), []);
  });

  test("writes land at the current offset or rewind; past the end is OutOfRange", async ({ store }) => {
    const w = await store.writer("offsets");
    await w.write(bytes("hello"), 0);
    await rejectsWith(w.write(bytes("!"), 6), Code.OutOfRange);
    await rejectsWith(w.write(bytes("!"), 100), Code.OutOfRange);
    await rejectsWith(w.write(bytes("!"), -1), Code.InvalidArgument);
    await rejectsWith(w.write(bytes("!"), 1.5), Code.InvalidArgument);
    // The failed writes changed nothing.
    assert.equal(w.status().offset, 5);
    assert.equal(w.digest(), sha256Digest("hello"));
    // Rewinding to the middle truncates and keeps the prefix's digest.
    await w.write(bytes("p!"), 3);
    assert.equal(w.status().offset, 5);
    assert.equal(w.digest(), sha256Digest("help!"));
    // Offset 0 restarts the ingest.
    await w.write(bytes("bye"), 0);
    assert.equal(w.status().offset, 3);
    assert.equal(w.digest(), sha256Digest("bye"));
    await w.write(new Uint8Array(0), 3);
    const info = await w.commit({ size: 3 });
    assert.deepEqual(await collect(store.read(info.digest)), bytes("bye"));
  });

  test("a writer is spent after commit or close", async ({ store }) => {
    const w = await store.writer("spent");
    await w.write(bytes("x"), 0);
    await w.commit();
    await rejectsWith(w.write(bytes("y"), 1), Code.FailedPrecondition);
    await rejectsWith(w.commit(), Code.FailedPrecondition);
    await w.close(); // harmless
    const c = await store.writer("closed");
    await c.close();
    await rejectsWith(c.write(bytes("y"), 0), Code.FailedPrecondition);
    await rejectsWith(c.commit(), Code.FailedPrecondition);
  });

  test("concurrent calls on one writer are applied in call order", async ({ store }) => {
    const w: ContentWriter = await store.writer("ordered");
    const parts = ["a", "bc", "def", "ghij"].map(bytes);
    let at = 0;
    const pending = parts.map((part) => {
      const offset = at;
      at += part.byteLength;
      return w.write(part, offset);
    });
    const committing = w.commit({ size: at });
    await Promise.all(pending);
    const info = await committing;
    assert.equal(info.digest, sha256Digest("abcdefghij"));
  });

  test("a reopened store keeps blobs and ingests", async ({ store, reopen }) => {
    if (!reopen) return;
    const blob = await writeBlob(store, "kept", bytes("kept blob"));
    const w = await store.writer("kept-ingest", { total: 42 });
    await w.write(bytes("partial"), 0);
    await w.close();
    const again = await reopen();
    assert.equal((await again.info(blob.digest)).size, 9);
    const statuses = await again.listStatuses();
    assert.deepEqual(statuses.map((s) => [s.ref, s.offset, s.total]), [["kept-ingest", 7, 42]]);
  });
}
