/**
 * Storage core, end to end: the real binary on temp dirs, driven by Debian's ctr —
 * namespaces, content ingest/ls/get/label/rm/active, leases, garbage collection, and a
 * kill -9 of the daemon in the middle of an ingest.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  ctr,
  ctrMissing,
  lines,
  startDaemon,
  type StartOptions,
  type TestDaemon,
} from "./harness.ts";

const skip = ctrMissing();
if (skip) console.error(`storage_test: ${skip}`);

const CTR = "/usr/bin/ctr";
const MiB = 1 << 20;

function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Deterministic bytes (not all equal, so offsets matter). */
function bytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

interface Run {
  code: number;
  stdout: Uint8Array;
  text: string;
  stderr: string;
}

/** Run ctr with `input` on stdin (a pipe) and collect raw stdout. */
async function ctrRaw(
  daemon: TestDaemon,
  args: string[],
  options: { namespace?: string; input?: Uint8Array } = {},
): Promise<Run> {
  const child = new Deno.Command(CTR, {
    args: ["-a", daemon.address, "-n", options.namespace ?? "default", ...args],
    stdin: options.input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  if (options.input) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(options.input);
      await writer.close();
    } catch (err) {
      // ctr may finish without reading stdin (the blob exists already).
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
    }
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: out.stdout,
    text: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Run ctr with stdin redirected from a file (seekable, so an ingest can resume). */
async function ctrFromFile(
  daemon: TestDaemon,
  args: string[],
  file: string,
  namespace = "default",
): Promise<Run> {
  const quoted = [CTR, "-a", daemon.address, "-n", namespace, ...args]
    .map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const out = await new Deno.Command("sh", {
    args: ["-c", `exec ${quoted} < '${file}'`],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return {
    code: out.code,
    stdout: out.stdout,
    text: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

async function ok<R extends { code: number; stderr: string }>(run: Promise<R>): Promise<R> {
  const r = await run;
  assert.equal(r.code, 0, `ctr failed: ${r.stderr}`);
  return r;
}

/** Ingest `data` with expected size and digest; returns the digest. */
async function ingest(
  daemon: TestDaemon,
  ref: string,
  data: Uint8Array,
  namespace = "default",
): Promise<string> {
  const digest = sha256(data);
  await ok(ctrRaw(daemon, [
    "content",
    "ingest",
    "--expected-size",
    String(data.length),
    "--expected-digest",
    digest,
    ref,
  ], { namespace, input: data }));
  return digest;
}

/**
 * Boot and let the scheduler's startup collection (100 ms after boot, as containerd's) pass:
 * content written without a lease or root before it would be collected by it.
 */
async function boot(options: StartOptions = {}): Promise<TestDaemon> {
  const daemon = await startDaemon(options);
  await new Promise((r) => setTimeout(r, 400));
  return daemon;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Start `ctr content ingest` fed through a pipe, write `first` bytes, and wait until the
 * daemon reports that many bytes for the ref (ctr sends 1 MiB blocks). Returns the child,
 * still running with its stdin open.
 */
async function startSlowIngest(
  daemon: TestDaemon,
  ref: string,
  data: Uint8Array,
  first: number,
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(CTR, {
    args: [
      "-a",
      daemon.address,
      "-n",
      "default",
      "content",
      "ingest",
      "--expected-size",
      String(data.length),
      "--expected-digest",
      sha256(data),
      ref,
    ],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(data.slice(0, first));
  writer.releaseLock();
  await waitFor(`ingest ${ref} to reach ${MiB} bytes`, async () => {
    const active = await ctr(daemon.address, ["content", "active"]);
    return active.stdout.includes(ref) && active.stdout.includes("1.049MB");
  });
  return child;
}

Deno.test({
  name: "ctr namespaces create/ls/label/rm; rm refused while the namespace holds blobs",
  ignore: skip !== undefined,
  async fn() {
    const daemon = await boot();
    try {
      await ok(ctr(daemon.address, ["namespaces", "create", "team", "owner=me", "tier=1"]));
      const dup = await ctr(daemon.address, ["namespaces", "create", "team"]);
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /already exists/);
      const bad = await ctr(daemon.address, ["namespaces", "create", "bad..name"]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /invalid argument/);
      await ok(ctr(daemon.address, ["namespaces", "label", "team", "tier=", "extra=x"]));
      const ls = await ok(ctr(daemon.address, ["namespaces", "ls"]));
      const row = lines(ls.stdout).find((l) => l.startsWith("team"));
      assert.ok(row, ls.stdout);
      assert.match(row, /owner=me/);
      assert.match(row, /extra=x/);
      assert.doesNotMatch(row, /tier=/);
      assert.deepEqual(lines((await ok(ctr(daemon.address, ["namespaces", "ls", "-q"]))).stdout), [
        "team",
      ]);

      // A write in another namespace creates it; it then cannot be removed while non-empty.
      const digest = await ingest(daemon, "blob", new TextEncoder().encode("busy"), "busy");
      assert.ok(
        lines((await ok(ctr(daemon.address, ["namespaces", "ls", "-q"]))).stdout).includes("busy"),
      );
      const refused = await ctr(daemon.address, ["namespaces", "rm", "busy"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /namespace "busy" must be empty, but it still has blobs/);
      await ok(ctr(daemon.address, ["content", "rm", digest], { namespace: "busy" }));
      await ok(ctr(daemon.address, ["namespaces", "rm", "busy", "team"]));
      // Removing one that is not there is ignored by ctr (NotFound).
      await ok(ctr(daemon.address, ["namespaces", "rm", "never-was"]));
      assert.deepEqual(
        lines((await ok(ctr(daemon.address, ["namespaces", "ls", "-q"]))).stdout),
        [],
      );
    } finally {
      await daemon.stop();
    }
  },
});

Deno.test({
  name: "ctr content ingest/ls/get/label/rm, and content is invisible across namespaces",
  ignore: skip !== undefined,
  async fn() {
    const daemon = await boot();
    try {
      const data = bytes(2 * MiB + 1234, 7);
      const digest = await ingest(daemon, "big", data);
      const small = await ingest(daemon, "small", new TextEncoder().encode("small blob\n"));
      // Ingesting it again is fine (AlreadyExists counts as success for ctr).
      await ingest(daemon, "big-again", data);

      const got = await ok(ctrRaw(daemon, ["content", "get", digest]));
      assert.equal(got.stdout.length, data.length);
      assert.equal(sha256(got.stdout), digest, "content get is byte-identical");

      const labelled = await ok(ctr(daemon.address, ["content", "label", digest, "purpose=test"]));
      assert.equal(labelled.stdout.trim(), "purpose=test");
      const ls = await ok(ctr(daemon.address, ["content", "ls"]));
      assert.ok(ls.stdout.includes(digest) && ls.stdout.includes(small), ls.stdout);
      assert.match(ls.stdout, /purpose=test/);
      const filtered = await ok(
        ctr(daemon.address, ["content", "ls", "-q", "labels.purpose==test"]),
      );
      assert.deepEqual(lines(filtered.stdout), [digest]);

      // Another namespace sees none of it.
      const elsewhere = await ctr(daemon.address, ["content", "get", digest], {
        namespace: "other",
      });
      assert.equal(elsewhere.code, 1);
      assert.match(elsewhere.stderr, /not found/);
      await ok(ctr(daemon.address, ["namespaces", "create", "other"]));
      assert.deepEqual(
        lines(
          (await ok(ctr(daemon.address, ["content", "ls", "-q"], { namespace: "other" }))).stdout,
        ),
        [],
      );

      // The label can be removed again; rm removes; rm of a missing digest is ignored.
      assert.equal(
        (await ok(ctr(daemon.address, ["content", "label", digest, "purpose="]))).stdout.trim(),
        "",
      );
      await ok(ctr(daemon.address, ["content", "rm", digest, small]));
      const gone = await ctr(daemon.address, ["content", "get", digest]);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /not found/);
      await ok(ctr(daemon.address, ["content", "rm", digest]));

      // A wrong expected digest fails and leaves nothing visible.
      const wrong = await ctrRaw(daemon, [
        "content",
        "ingest",
        "--expected-digest",
        sha256(new TextEncoder().encode("something else")),
        "wrong",
      ], { input: new TextEncoder().encode("actual bytes") });
      assert.equal(wrong.code, 1);
      assert.deepEqual(lines((await ok(ctr(daemon.address, ["content", "ls", "-q"]))).stdout), []);
    } finally {
      await daemon.stop();
    }
  },
});

Deno.test({
  name: "ctr content active shows a cut-off ingest; a second ingest of the ref completes it",
  ignore: skip !== undefined,
  async fn() {
    const daemon = await boot();
    const dir = await Deno.makeTempDir({ prefix: "cts-ingest-" });
    try {
      const data = bytes(2 * MiB + 4321, 3);
      const digest = sha256(data);
      const child = await startSlowIngest(daemon, "slow-ref", data, MiB + 100);
      child.kill("SIGKILL");
      await child.status;
      // The ingest stays, with its offset, once the daemon noticed the client is gone.
      await waitFor("the ref lock to be released", async () => {
        const active = await ctr(daemon.address, ["content", "active"]);
        return active.stdout.includes("slow-ref");
      });
      const active = await ok(ctr(daemon.address, ["content", "active"]));
      const row = lines(active.stdout).find((l) => l.startsWith("slow-ref"));
      assert.ok(row, active.stdout);
      assert.match(row, /1\.049MB/);
      const otherActive = await ok(
        ctr(daemon.address, ["content", "active"], { namespace: "other" }),
      );
      assert.ok(!otherActive.stdout.includes("slow-ref"), "other namespaces do not see it");
      // Resume from a seekable stdin: ctr seeks to the offset and sends the rest.
      const file = `${dir}/data`;
      await Deno.writeFile(file, data);
      await waitFor("the resumed ingest to commit", async () => {
        const r = await ctrFromFile(daemon, [
          "content",
          "ingest",
          "--expected-size",
          String(data.length),
          "--expected-digest",
          digest,
          "slow-ref",
        ], file);
        return r.code === 0;
      });
      const got = await ok(ctrRaw(daemon, ["content", "get", digest]));
      assert.equal(sha256(got.stdout), digest);
      assert.ok(
        !(await ok(ctr(daemon.address, ["content", "active"]))).stdout.includes("slow-ref"),
      );
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "ctr leases create/ls/rm; GC removes unreferenced content and keeps gc.root content",
  ignore: skip !== undefined,
  async fn() {
    const daemon = await boot();
    try {
      const created = await ok(ctr(daemon.address, ["leases", "create", "--id", "my-lease"]));
      assert.equal(created.stdout.trim(), "my-lease");
      const generated = (await ok(ctr(daemon.address, ["leases", "create"]))).stdout.trim();
      assert.match(generated, /^\d+-[A-Za-z0-9_-]{4}$/);
      const ls = await ok(ctr(daemon.address, ["leases", "ls"]));
      assert.match(ls.stdout, /my-lease/);
      assert.match(ls.stdout, /containerd\.io\/gc\.expire=/);
      assert.deepEqual(
        lines((await ok(ctr(daemon.address, ["leases", "ls", "-q"]))).stdout).sort(),
        [generated, "my-lease"].sort(),
      );
      const missing = await ctr(daemon.address, ["leases", "rm", "no-such-lease"]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /not found/);

      const enc = new TextEncoder();
      const kept = await ingest(daemon, "kept", enc.encode("keep me"));
      await ok(ctr(daemon.address, ["content", "label", kept, "containerd.io/gc.root=yes"]));
      const child = await ingest(daemon, "child", enc.encode("referenced by kept"));
      await ok(
        ctr(daemon.address, ["content", "label", kept, `containerd.io/gc.ref.content.0=${child}`]),
      );
      const doomed = await ingest(daemon, "doomed", enc.encode("nobody holds me"));

      await ok(ctr(daemon.address, ["leases", "rm", "--sync", "my-lease"]));
      const left = lines((await ok(ctr(daemon.address, ["content", "ls", "-q"]))).stdout).sort();
      assert.deepEqual(left, [kept, child].sort());
      const gone = await ctr(daemon.address, ["content", "get", doomed]);
      assert.equal(gone.code, 1);
      assert.deepEqual(
        lines((await ok(ctr(daemon.address, ["leases", "ls", "-q"]))).stdout),
        [generated],
      );
      // The blob left the disk too.
      const blobs: string[] = [];
      for await (
        const e of Deno.readDir(`${daemon.root}/io.containerd.content.v1.content/blobs/sha256`)
      ) blobs.push(`sha256:${e.name}`);
      assert.deepEqual(blobs.sort(), [kept, child].sort());
    } finally {
      await daemon.stop();
    }
  },
});

Deno.test({
  name: "after kill -9 mid-ingest and a restart, everything committed is there and no partial blob",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cts-crash-" });
    let daemon = await boot({ dir });
    try {
      const enc = new TextEncoder();
      await ok(ctr(daemon.address, ["namespaces", "create", "keep", "k=v"]));
      await ok(ctr(daemon.address, ["leases", "create", "--id", "held"]));
      const kept = await ingest(daemon, "kept", bytes(MiB + 17, 5));
      await ok(ctr(daemon.address, ["content", "label", kept, "containerd.io/gc.root=1"]));
      const small = await ingest(daemon, "small", enc.encode("small"));
      await ok(ctr(daemon.address, ["content", "label", small, "containerd.io/gc.root=1"]));

      const partial = bytes(3 * MiB, 9);
      const child = await startSlowIngest(daemon, "interrupted", partial, MiB + 10);
      daemon.process.kill("SIGKILL");
      await daemon.exited;
      child.kill("SIGKILL");
      await child.status;
      await daemon.stop();

      daemon = await startDaemon({ dir });
      // The startup collection removes what the crash left unreferenced on disk.
      const blobDir = `${daemon.root}/io.containerd.content.v1.content/blobs/sha256`;
      const onDisk = async () => {
        const blobs: string[] = [];
        for await (const e of Deno.readDir(blobDir)) blobs.push(`sha256:${e.name}`);
        return blobs.sort();
      };
      await waitFor(
        "the startup collection",
        async () => JSON.stringify(await onDisk()) === JSON.stringify([kept, small].sort()),
      );
      const ls = lines((await ok(ctr(daemon.address, ["content", "ls", "-q"]))).stdout).sort();
      assert.deepEqual(ls, [kept, small].sort());
      const got = await ok(ctrRaw(daemon, ["content", "get", kept]));
      assert.equal(sha256(got.stdout), kept);
      const partialGet = await ctr(daemon.address, ["content", "get", sha256(partial)]);
      assert.equal(partialGet.code, 1, "no partial blob is visible");
      const ns = await ok(ctr(daemon.address, ["namespaces", "ls"]));
      assert.match(ns.stdout, /keep\s+k=v/);
      assert.match((await ok(ctr(daemon.address, ["leases", "ls", "-q"]))).stdout, /held/);
      // The cut-off ingest is still resumable; nothing but committed blobs is on disk.
      assert.match((await ok(ctr(daemon.address, ["content", "active"]))).stdout, /interrupted/);
      assert.deepEqual(await onDisk(), [kept, small].sort());
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
