import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, codeOf } from "../../server/errdefs.ts";
import { Sha256, sha256Digest, sha256Hex } from "../../server/digest.ts";
import { silentLogger } from "../../server/log.ts";
import { Exchange } from "../../server/exchange.ts";
import { initPlugins, registry, uriOf } from "../../server/plugin.ts";
import { contentStoreSuite } from "./conformance.ts";
import { INGEST_MAX_AGE_MS, ingestExpired, LocalContentStore } from "./local.ts";
import "./plugin.ts";

const encoder = new TextEncoder();

contentStoreSuite("local", async () => {
  const root = await Deno.makeTempDir({ prefix: "content-local-" });
  // A level below the temp dir, so `../` refs would have somewhere to escape to.
  const storeRoot = join(root, "a", "content");
  const store = await LocalContentStore.open(storeRoot);
  return {
    store,
    reopen: () => LocalContentStore.open(storeRoot),
    cleanup: () => Deno.remove(root, { recursive: true }),
  };
});

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "content-local-" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("local: containerd's on-disk layout", () =>
  withRoot(async (root) => {
    const store = await LocalContentStore.open(root);
    const ref = "tar-blobs/sha256/abc";
    const expected = sha256Digest("hello");
    const w = await store.writer(ref, { total: 5, expected });
    await w.write(encoder.encode("hel"), 0);
    const dir = join(root, "ingest", sha256Hex(ref));
    assert.equal(await Deno.readTextFile(join(dir, "ref")), ref);
    assert.equal(await Deno.readTextFile(join(dir, "total")), "5");
    assert.equal(await Deno.readTextFile(join(dir, "expected")), expected);
    assert.ok(!Number.isNaN(new Date(await Deno.readTextFile(join(dir, "startedat"))).getTime()));
    assert.ok(!Number.isNaN(new Date(await Deno.readTextFile(join(dir, "updatedat"))).getTime()));
    assert.deepEqual(await Deno.readFile(join(dir, "data")), encoder.encode("hel"));
    await w.write(encoder.encode("lo"), 3);
    const info = await w.commit({ size: 5 });
    const blob = join(root, "blobs", "sha256", sha256Hex("hello"));
    assert.deepEqual(await Deno.readFile(blob), encoder.encode("hello"));
    assert.equal((await Deno.stat(blob)).mode! & 0o777, 0o444);
    assert.equal(await exists(dir), false);
    assert.equal(info.createdAt.getTime(), (await store.info(info.digest)).createdAt.getTime());
    assert.equal(store.root, root);
  }));

Deno.test("local: opening sweeps what a crash left half-made, keeps real ingests", () =>
  withRoot(async (root) => {
    const store = await LocalContentStore.open(root);
    const keep = await store.writer("keep");
    await keep.write(encoder.encode("partial"), 0);
    await keep.close();
    const keepDir = join(root, "ingest", sha256Hex("keep"));
    await Deno.writeTextFile(join(keepDir, "updatedat.tmp"), "half");
    // Cut off before `ref` was written.
    const noRef = join(root, "ingest", sha256Hex("no-ref"));
    await Deno.mkdir(noRef);
    await Deno.writeTextFile(join(noRef, "data"), "x");
    // Cut off after commit's rename, before the ingest dir was removed.
    const noData = join(root, "ingest", sha256Hex("no-data"));
    await Deno.mkdir(noData);
    await Deno.writeTextFile(join(noData, "ref"), "no-data");
    // A ref file that does not hash to its dir.
    const mismatch = join(root, "ingest", sha256Hex("one"));
    await Deno.mkdir(mismatch);
    await Deno.writeTextFile(join(mismatch, "ref"), "two");
    await Deno.writeTextFile(join(mismatch, "data"), "x");
    // Foreign entries.
    await Deno.writeTextFile(join(root, "ingest", "stray-file"), "x");
    await Deno.mkdir(join(root, "ingest", "not-a-hash"));

    assert.deepEqual((await store.listStatuses()).map((s) => s.ref), ["keep"]);
    const again = await LocalContentStore.open(root);
    const left = [];
    for await (const entry of Deno.readDir(join(root, "ingest"))) left.push(entry.name);
    assert.deepEqual(left, [sha256Hex("keep")]);
    assert.equal(await exists(join(keepDir, "updatedat.tmp")), false);
    const statuses = await again.listStatuses();
    assert.deepEqual(statuses.map((s) => [s.ref, s.offset]), [["keep", 7]]);
  }));

Deno.test("local: an ingest with broken metadata starts over instead of failing", () =>
  withRoot(async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer("broken", { total: 100 });
    await w.write(encoder.encode("old bytes"), 0);
    await w.close();
    const dir = join(root, "ingest", sha256Hex("broken"));
    await Deno.writeTextFile(join(dir, "startedat"), "garbage");
    await Deno.writeTextFile(join(dir, "updatedat"), "garbage");
    // Unparseable times fall back to the data file's.
    const status = await store.status("broken");
    assert.ok(!Number.isNaN(status.startedAt.getTime()));
    assert.equal(status.offset, 9);
    // A different total than recorded: the ingest is for something else now.
    const w2 = await store.writer("broken", { total: 50 });
    assert.equal(w2.status().offset, 0);
    assert.equal(w2.status().total, 50);
    assert.equal(w2.digest(), sha256Digest(""));
    await w2.write(encoder.encode("new"), 0);
    const info = await w2.commit();
    assert.equal(info.digest, sha256Digest("new"));
  }));

Deno.test("local: updatedat is kept current on writes (throttled) and at close", () =>
  withRoot(async (root) => {
    let clock = Date.parse("2024-05-01T00:00:00Z");
    const store = await LocalContentStore.open(root, {
      now: () => new Date(clock),
      updatedAtIntervalMs: 1000,
    });
    const w = await store.writer("times");
    const dir = join(root, "ingest", sha256Hex("times"));
    const stored = async () => new Date(await Deno.readTextFile(join(dir, "updatedat"))).getTime();
    assert.equal(await stored(), clock);
    clock += 500;
    await w.write(encoder.encode("a"), 0);
    assert.equal(w.status().updatedAt.getTime(), clock);
    assert.equal(await stored(), clock - 500, "not rewritten within the interval");
    clock += 600;
    await w.write(encoder.encode("b"), 1);
    assert.equal(await stored(), clock, "rewritten once the interval passed");
    clock += 10;
    await w.write(encoder.encode("c"), 2);
    await w.close();
    assert.equal(await stored(), clock, "rewritten at close");
  }));

Deno.test("local: ingestExpired judges by updatedAt against 24 h", () => {
  const now = new Date("2024-05-02T00:00:00Z");
  const status = (updatedAt: Date) => ({
    ref: "r",
    offset: 0,
    total: 0,
    expected: "",
    startedAt: updatedAt,
    updatedAt,
  });
  assert.equal(
    ingestExpired(status(new Date(now.getTime() - INGEST_MAX_AGE_MS - 1)), { now }),
    true,
  );
  assert.equal(
    ingestExpired(status(new Date(now.getTime() - INGEST_MAX_AGE_MS + 1000)), { now }),
    false,
  );
  assert.equal(
    ingestExpired(status(new Date(now.getTime() - 61_000)), { now, maxAgeMs: 60_000 }),
    true,
  );
  assert.equal(ingestExpired(status(new Date())), false);
});

Deno.test("local: separate store instances share blobs but not locks", () =>
  withRoot(async (root) => {
    const a = await LocalContentStore.open(root);
    const w = await a.writer("x");
    await w.write(encoder.encode("shared"), 0);
    const info = await w.commit();
    const b = await LocalContentStore.open(root);
    assert.equal((await b.info(info.digest)).size, 6);
    const err = await a.writer("y").then((wy) => wy.close());
    assert.equal(err, undefined);
    assert.equal(
      codeOf(
        await a.read(info.digest, { chunkSize: 0 })[Symbol.asyncIterator]().next().catch((e) => e),
      ),
      Code.InvalidArgument,
    );
    await assert.rejects(
      LocalContentStore.open(root, { readChunkSize: -1 }),
      (e) => codeOf(e) === Code.InvalidArgument,
    );
  }));

Deno.test("local: the content plugin opens the store on its root and exports it", () =>
  withRoot(async (root) => {
    const reg = registry.list().find((r) => uriOf(r) === "io.containerd.content.v1.content");
    assert.ok(reg, "io.containerd.content.v1.content is registered");
    const set = await initPlugins({
      ordered: [reg],
      configs: new Map(),
      properties: {
        rootDir: root,
        stateDir: join(root, "state"),
        grpcAddress: "",
        ttrpcAddress: "",
      },
      events: new Exchange(),
      log: silentLogger(),
      signal: new AbortController().signal,
    });
    const record = set.records()[0];
    assert.equal(record?.status, "ok", String(record?.error));
    const pluginRoot = join(root, "io.containerd.content.v1.content");
    assert.deepEqual(record?.meta.exports, { root: pluginRoot });
    const store = record?.instance as LocalContentStore;
    assert.equal(store.root, pluginRoot);
    assert.ok(await exists(join(pluginRoot, "blobs", "sha256")));
    assert.ok(await exists(join(pluginRoot, "ingest")));
  }));

// --- kill -9 at arbitrary instants ----------------------------------------------------------

/** The bytes the crash child writes for ingest `i` (so the parent can recompute them). */
function blobBytes(i: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (i * 2654435761) >>> 0 || 1;
  for (let j = 0; j < length; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[j] = x & 0xff;
  }
  return out;
}

function blobLength(i: number): number {
  return 50_000 + ((i * 7919) % 9) * 40_000;
}

const CHILD = `
import { LocalContentStore } from ${JSON.stringify(new URL("./local.ts", import.meta.url).href)};
const [root, first] = Deno.args;
${blobBytes.toString()}
${blobLength.toString()}
const store = await LocalContentStore.open(root, { updatedAtIntervalMs: 0 });
console.log("ready");
for (let i = Number(first); ; i++) {
  const data = blobBytes(i, blobLength(i));
  const w = await store.writer("ingest-" + i, { total: data.length });
  for (let at = w.status().offset; at < data.length; at += 16384) {
    await w.write(data.subarray(at, Math.min(at + 16384, data.length)), at);
  }
  if (i % 3 === 2) await w.close(); else await w.commit({ size: data.length });
}
`;

Deno.test("local: a kill -9 at any instant leaves a consistent, reopenable store", () =>
  withRoot(async (root) => {
    const storeRoot = join(root, "content");
    let resumed = 0;
    for (let round = 0; round < 6; round++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", CHILD, storeRoot, String(round * 1000)],
        // The project root, so the child resolves the import map of deno.json.
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // "ready"
      await new Promise((r) => setTimeout(r, 30 + Math.floor(Math.random() * 250)));
      child.kill("SIGKILL");
      await reader.cancel();
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL", "the child was killed mid-flight");

      const store = await LocalContentStore.open(storeRoot);
      // Every visible blob is complete: its bytes hash to its name.
      for await (const entry of Deno.readDir(join(storeRoot, "blobs", "sha256"))) {
        assert.match(entry.name, /^[a-f0-9]{64}$/, `only blobs under blobs/sha256 (${entry.name})`);
      }
      const blobs = [];
      for await (const info of store.walk()) blobs.push(info);
      for (const info of blobs) {
        const hash = new Sha256();
        for await (const chunk of store.read(info.digest)) hash.update(chunk);
        assert.equal(hash.digest(), info.digest, "a visible blob is whole");
      }
      // Every ingest resumes at its data length with the right running digest, and finishes.
      for (const status of await store.listStatuses()) {
        const i = Number(status.ref.slice("ingest-".length));
        const data = blobBytes(i, blobLength(i));
        const w = await store.writer(status.ref, { total: data.length });
        resumed++;
        assert.equal(w.status().offset, status.offset);
        assert.ok(status.offset <= data.length);
        assert.equal(w.digest(), sha256Digest(data.subarray(0, status.offset)));
        await w.write(data.subarray(status.offset), status.offset);
        const info = await w.commit({ size: data.length, expected: sha256Digest(data) }).catch(
          (err) => {
            if (codeOf(err) !== Code.AlreadyExists) throw err;
            return undefined;
          },
        );
        if (info) assert.equal(info.digest, sha256Digest(data));
      }
      assert.deepEqual(await store.listStatuses(), []);
    }
    // The rounds did real work.
    let count = 0;
    for await (const _ of Deno.readDir(join(storeRoot, "blobs", "sha256"))) count++;
    assert.ok(count > 3, `blobs were committed across rounds (${count})`);
    assert.ok(resumed > 0, "cut-off ingests were resumed");
  }));
