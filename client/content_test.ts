import assert from "node:assert/strict";
import { fakeDaemon, sha256 } from "./_fakes.ts";
import {
  clientFromTransport,
  FailedPreconditionError,
  NotFoundError,
  UnavailableError,
  type WriteProgress,
} from "./mod.ts";

const KiB = 1024;

function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** A stream of `data` in `chunk`-sized pieces that fails after `failAfter` bytes. */
function streamOf(
  data: Uint8Array,
  chunk: number,
  failAfter = Infinity,
): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= failAfter) return controller.error(new Error("network cable unplugged"));
      if (at >= data.length) return controller.close();
      controller.enqueue(data.slice(at, at + chunk));
      at += chunk;
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("content.write: chunks, progress after every acknowledged step, read back", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const data = pattern(350 * KiB);
  const progress: WriteProgress[] = [];
  const result = await client.content.write("blob-1", data, {
    chunkSize: 100 * KiB,
    onProgress: (p) => progress.push(p),
  });
  assert.deepEqual(result, {
    digest: sha256(data),
    size: data.length,
    resumedFrom: 0,
    existed: false,
  });
  assert.deepEqual(progress.map((p) => p.offset), [0, 100, 200, 300, 350, 350].map((k) => k * KiB));
  assert.ok(progress.every((p) => p.total === data.length && p.ref === "blob-1"));
  assert.deepEqual(await readAll(client.content.read(result.digest)), data);
  assert.deepEqual(
    await readAll(client.content.read(result.digest, { offset: 10, size: 2500 })),
    data.subarray(10, 2510),
  );
  const info = await client.content.info(result.digest);
  assert.equal(info.size, data.length);
  assert.deepEqual((await client.content.list()).map((i) => i.digest), [result.digest]);
  assert.equal(fake.ingests.size, 0);
});

Deno.test("content.write: an interrupted stream leaves a partial ingest; the next write resumes", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const data = pattern(500 * KiB, 7);
  const chunk = 64 * KiB;
  const err = await client.content.write("resumable", streamOf(data, chunk, 3 * chunk), {
    chunkSize: chunk,
    expected: sha256(data),
  }).catch((e) => e);
  assert.match(String(err), /network cable unplugged/);
  const status = await client.content.status("resumable");
  assert.equal(status.offset, 3 * chunk);
  assert.deepEqual((await client.content.listStatuses()).map((s) => s.ref), ["resumable"]);

  const progress: WriteProgress[] = [];
  const result = await client.content.write("resumable", streamOf(data, 10 * KiB), {
    chunkSize: chunk,
    expected: sha256(data),
    onProgress: (p) => progress.push(p),
  });
  assert.equal(result.resumedFrom, 3 * chunk);
  assert.equal(result.digest, sha256(data));
  assert.equal(progress[0]?.offset, 3 * chunk);
  assert.ok(progress.every((p) => p.resumedFrom === 3 * chunk));
  // Offsets increase monotonically to the end.
  const offsets = progress.map((p) => p.offset);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
  assert.equal(offsets.at(-1), data.length);
  assert.deepEqual(fake.blobs.get(`default/${result.digest}`), data);
});

Deno.test("content.writeFile: resumes by seeking in the file; resume:false restarts", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const data = pattern(300 * KiB, 3);
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, data);
    // Seed a partial ingest as a cut-off write would leave it.
    await client.content.write("file-ref", streamOf(data, 50 * KiB, 100 * KiB), {
      chunkSize: 50 * KiB,
    }).catch(() => {});
    assert.equal((await client.content.status("file-ref")).offset, 100 * KiB);
    const resumed = await client.content.writeFile("file-ref", path, { chunkSize: 64 * KiB });
    assert.equal(resumed.resumedFrom, 100 * KiB);
    assert.equal(resumed.digest, sha256(data));
    assert.equal(resumed.size, data.length);

    // A partial ingest of other bytes: resuming onto it fails the digest check, while
    // resume:false rewrites from 0 and commits.
    const other = pattern(200 * KiB, 5);
    await Deno.writeFile(path, other);
    await client.content.write("again", streamOf(pattern(200 * KiB, 99), 50 * KiB, 100 * KiB), {
      chunkSize: 50 * KiB,
    }).catch(() => {});
    await assert.rejects(
      client.content.writeFile("again", path, { expected: sha256(other) }),
      FailedPreconditionError,
    );
    const ingest = fake.ingests.get("default/again")!;
    const restarted = await client.content.writeFile("again", path, {
      expected: sha256(other),
      chunkSize: 64 * KiB,
      resume: false,
    });
    assert.equal(restarted.resumedFrom, 0);
    assert.equal(restarted.digest, sha256(other));
    assert.deepEqual(ingest.writes.slice(-4), [0, 64, 128, 192].map((k) => k * KiB));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("content.write: existing blob with expected digest counts as written", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const data = pattern(1000);
  await client.content.write("a", data);
  const again = await client.content.write("b", streamOf(data, 100), { expected: sha256(data) });
  assert.deepEqual(again, { digest: sha256(data), size: 1000, resumedFrom: 0, existed: true });
});

Deno.test("content.write: size and digest mismatches are FailedPrecondition; nothing committed", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const data = pattern(1000);
  await assert.rejects(
    client.content.write("bad-digest", data, { expected: sha256(pattern(1000, 9)) }),
    FailedPreconditionError,
  );
  await assert.rejects(
    client.content.write("bad-size", streamOf(data, 100), { total: 999 }),
    FailedPreconditionError,
  );
  assert.equal(fake.blobs.size, 0);
});

Deno.test("content.write: a locked ref is Unavailable; a throwing onProgress aborts", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  fake.ingests.set("default/busy", {
    data: new Uint8Array(),
    total: 0,
    expected: "",
    locked: true,
    writes: [],
  });
  await assert.rejects(client.content.write("busy", pattern(10)), UnavailableError);
  let calls = 0;
  await assert.rejects(
    client.content.write("cb", pattern(5000), {
      chunkSize: 1000,
      onProgress: () => {
        if (++calls === 2) throw new Error("user says stop");
      },
    }),
    /user says stop/,
  );
  assert.equal(fake.blobs.size, 0);
});

Deno.test("content: namespaces isolate blobs; read of a missing blob errors the stream", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const { digest } = await client.withNamespace("a").content.write("x", pattern(10));
  await assert.rejects(client.withNamespace("b").content.info(digest), NotFoundError);
  assert.deepEqual(await client.withNamespace("b").content.list(), []);
  await assert.rejects(readAll(client.withNamespace("b").content.read(digest)), NotFoundError);
  // Cancelling a read stream cancels the call.
  const big = await client.content.write("big", pattern(50 * KiB));
  const reader = client.content.read(big.digest).getReader();
  assert.equal((await reader.read()).value?.length, 1000);
  await reader.cancel();
  await client.withNamespace("a").content.delete(digest);
  await assert.rejects(client.withNamespace("a").content.delete(digest), NotFoundError);
  await client.content.write("partial", streamOf(pattern(100), 10, 50)).catch(() => {});
  await client.content.abort("partial");
  await assert.rejects(client.content.status("partial"), NotFoundError);
});
