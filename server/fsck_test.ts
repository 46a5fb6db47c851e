import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { LocalContentStore } from "../plugins/content/local.ts";
import { SqliteMetadataStore } from "../plugins/metadata/store.ts";
import { ingest } from "../plugins/metadata/testing.ts";
import { CONTENT_DIR, formatFinding, fsck, METADATA_DB, runFsck } from "./fsck.ts";
import { sha256Hex } from "./digest.ts";
import type { CommandContext } from "./cli.ts";

/** A root made by the real stores, with `blobs` committed in namespace "default". */
async function makeRoot(blobs: Record<string, string>): Promise<{
  root: string;
  digests: Record<string, string>;
}> {
  const root = await Deno.makeTempDir({ prefix: "fsck-" });
  const local = await LocalContentStore.open(join(root, CONTENT_DIR));
  await Deno.mkdir(join(root, "io.containerd.metadata.v1.sqlite"), { recursive: true });
  const md = SqliteMetadataStore.open({ path: join(root, METADATA_DB), content: local });
  const digests: Record<string, string> = {};
  try {
    const cs = md.content({ namespace: "default" });
    for (const [ref, data] of Object.entries(blobs)) digests[ref] = await ingest(cs, ref, data);
  } finally {
    await md.close();
  }
  return { root, digests };
}

function blobPath(root: string, digest: string): string {
  return join(root, CONTENT_DIR, "blobs", "sha256", digest.slice("sha256:".length));
}

async function corrupt(path: string): Promise<void> {
  await Deno.chmod(path, 0o644);
  const bytes = await Deno.readFile(path);
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  await Deno.writeFile(path, bytes);
}

function contentRows(root: string): { namespace: string; digest: string }[] {
  const db = new DatabaseSync(join(root, METADATA_DB), { readOnly: true });
  try {
    return db.prepare("SELECT namespace, digest FROM content ORDER BY digest").all() as {
      namespace: string;
      digest: string;
    }[];
  } finally {
    db.close();
  }
}

Deno.test("fsck: a store written by the real stores is clean", async () => {
  const { root } = await makeRoot({ a: "alpha", b: "bravo" });
  try {
    const report = await fsck({ root });
    assert.deepEqual(report.findings, []);
    assert.equal(report.blobs, 2);
    assert.equal(report.contentRows, 2);
    assert.equal(report.problems, 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("fsck: finds every kind of problem, read-only, and --repair fixes the safe ones", async () => {
  const { root, digests } = await makeRoot({ a: "alpha", b: "bravo", c: "charlie" });
  const a = digests.a!, b = digests.b!, c = digests.c!;
  try {
    const contentRoot = join(root, CONTENT_DIR);
    await corrupt(blobPath(root, a)); // corrupt blob with a row
    await Deno.remove(blobPath(root, b)); // row without blob
    const orphan = `sha256:${sha256Hex("orphan")}`; // blob without row
    await Deno.writeTextFile(blobPath(root, orphan), "orphan");
    const stray = join(contentRoot, "blobs", "sha256", "not-a-digest");
    await Deno.writeTextFile(stray, "x");
    const broken = join(contentRoot, "ingest", sha256Hex("broken-ref"));
    await Deno.mkdir(broken, { recursive: true });
    await Deno.writeTextFile(join(broken, "data"), "partial"); // no ref file
    const misnamed = join(contentRoot, "ingest", "f".repeat(64));
    await Deno.mkdir(misnamed);
    await Deno.writeTextFile(join(misnamed, "ref"), "some-ref");
    await Deno.writeTextFile(join(misnamed, "data"), "");
    const good = join(contentRoot, "ingest", sha256Hex("good-ref"));
    await Deno.mkdir(good);
    await Deno.writeTextFile(join(good, "ref"), "good-ref");
    await Deno.writeTextFile(join(good, "data"), "half");
    {
      const db = new DatabaseSync(join(root, METADATA_DB));
      db.exec(
        `INSERT INTO images (namespace, name, target_digest, created_at, updated_at)
         VALUES ('default', 'img:latest', '${orphan}', 0, 0),
                ('default', 'ok:latest', '${c}', 0, 0)`,
      );
      db.close();
    }

    const before = await fsck({ root });
    const lines = before.findings.map(formatFinding);
    const has = (re: RegExp) => assert.ok(lines.some((l) => re.test(l)), lines.join("\n"));
    has(new RegExp(`^error corrupt blob ${a}: .*namespace default`));
    has(new RegExp(`^error missing blob ${b}: referenced by namespace default$`));
    has(new RegExp(`^info unreferenced blob ${orphan}: `));
    has(/^error stray file .*not-a-digest: /);
    has(new RegExp(`^error broken ingest ${broken}: ref file missing`));
    has(new RegExp(`^error broken ingest ${misnamed}: .*does not hash`));
    has(/^info missing image target default\/img:latest: /);
    assert.ok(!lines.some((l) => l.includes(good) || l.includes("ok:latest")), lines.join("\n"));
    assert.equal(before.problems, 5);
    assert.equal(before.ingests, 3);
    // Read-only: nothing changed.
    assert.equal(contentRows(root).length, 3);
    assert.ok(await Deno.stat(broken));

    const repaired = await fsck({ root, repair: true });
    assert.equal(repaired.problems, 1, "only the stray file remains (never touched)");
    assert.deepEqual(contentRows(root).map((r) => r.digest), [c]);
    await assert.rejects(Deno.stat(blobPath(root, a)), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(blobPath(root, orphan)), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(broken), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(misnamed), Deno.errors.NotFound);
    assert.ok(await Deno.stat(good), "a sound ingest is kept");
    assert.ok(await Deno.stat(stray), "stray files are reported, never removed");
    assert.ok(await Deno.stat(blobPath(root, c)));

    await Deno.remove(stray);
    const after = await fsck({ root });
    assert.equal(after.problems, 0);
    assert.deepEqual(
      after.findings.map((f) => f.kind),
      ["missing image target"],
      after.findings.map(formatFinding).join("\n"),
    );
    // The stores still open on the repaired root.
    const local = await LocalContentStore.open(join(root, CONTENT_DIR));
    const md = SqliteMetadataStore.open({ path: join(root, METADATA_DB), content: local });
    assert.equal((await md.content({ namespace: "default" }).info(c)).digest, c);
    await md.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("fsck: without a database, corrupt blobs are still found", async () => {
  const root = await Deno.makeTempDir({ prefix: "fsck-" });
  try {
    const local = await LocalContentStore.open(join(root, CONTENT_DIR));
    const w = await local.writer("r");
    await w.write(new TextEncoder().encode("hello"), 0);
    const blob = await w.commit();
    await corrupt(blobPath(root, blob.digest));
    const report = await fsck({ root });
    assert.equal(report.metadata, false);
    assert.deepEqual(report.findings.map((f) => [f.kind, f.object]), [
      ["corrupt blob", blob.digest],
    ]);
    assert.equal((await fsck({ root })).problems, 1);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

function context(values: Record<string, string | boolean>): {
  ctx: CommandContext;
  out: string[];
  err: string[];
} {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    ctx: {
      values,
      out: (s) => out.push(s),
      err: (s) => err.push(s),
      env: { uid: 0, defaultConfigPath: "/nonexistent/config.toml" },
      registrations: [],
    },
  };
}

Deno.test("runFsck: exit 0 clean, 1 with problems, --json, and --repair refused beside a daemon", async () => {
  const { root, digests } = await makeRoot({ a: "alpha" });
  const sock = join(root, "sock");
  try {
    const nowhere = context({ root: join(root, "nowhere"), address: sock });
    assert.equal(await runFsck(nowhere.ctx), 2);
    assert.match(nowhere.err.join(""), /root .*nowhere does not exist/);

    const clean = context({ root, address: sock });
    assert.equal(await runFsck(clean.ctx), 0);
    assert.match(
      clean.out.join(""),
      /^fsck: 1 blobs, 0 ingests, 1 content rows checked; .*clean\n$/,
    );

    await corrupt(blobPath(root, digests.a!));
    const bad = context({ root, address: sock, json: true });
    assert.equal(await runFsck(bad.ctx), 1);
    const parsed = JSON.parse(bad.out.join(""));
    assert.equal(parsed.problems, 1);
    assert.equal(parsed.findings[0].kind, "corrupt blob");

    const listener = Deno.listen({ transport: "unix", path: sock });
    try {
      const refused = context({ root, address: sock, repair: true });
      assert.equal(await runFsck(refused.ctx), 2);
      assert.match(refused.err.join(""), /refused: a daemon is serving/);
    } finally {
      listener.close();
    }
    await Deno.remove(sock).catch(() => {});
    const repair = context({ root, address: sock, repair: true });
    assert.equal(await runFsck(repair.ctx), 0);
    assert.match(repair.out.join(""), new RegExp(`repaired corrupt blob ${digests.a}: removed`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
