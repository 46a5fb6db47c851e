import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { Code, codeOf } from "../../server/errdefs.ts";
import { Kind } from "./api.ts";
import { adaptSnapshot, diskUsage, MetaStore, StorageError } from "./storage.ts";

async function tempStore(): Promise<{ dir: string; path: string; ms: MetaStore }> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/metadata.db`;
  return { dir, path, ms: MetaStore.open(path) };
}

function codeName(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return Code[codeOf(err)];
  }
  return "ok";
}

Deno.test("a snapshot keeps its id through commit; children record the parent chain", async () => {
  const { dir, ms } = await tempStore();
  const a = ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "a", "", { l: "1" }));
  assert.deepEqual(a, { id: "1", kind: Kind.ACTIVE, parentIds: [] });
  assert.equal(
    ms.update((tx) => tx.commitActive("a", "base", { size: 10, inodes: 2 }, { c: "1" })),
    "1",
  );
  const base = ms.view((tx) => tx.getInfo("base"));
  assert.equal(base.id, "1");
  assert.equal(base.info.kind, Kind.COMMITTED);
  assert.deepEqual(base.info.labels, { c: "1" });
  assert.deepEqual(base.usage, { size: 10, inodes: 2 });
  assert.equal(ms.view((tx) => tx.lookup("a")), undefined);
  ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "b", "base"));
  ms.update((tx) => tx.commitActive("b", "mid", { size: 0, inodes: 1 }));
  const top = ms.update((tx) => tx.createSnapshot(Kind.VIEW, "top", "mid"));
  assert.deepEqual(top, { id: "3", kind: Kind.VIEW, parentIds: ["2", "1"] });
  assert.deepEqual(ms.view((tx) => tx.getSnapshot("top")), top);
  assert.equal(codeName(() => ms.view((tx) => tx.getSnapshot("mid"))), "FailedPrecondition");
  assert.equal(ms.view((tx) => tx.getInfo("top")).info.parent, "mid");
  assert.deepEqual(
    ms.view((tx) => tx.idMap()),
    new Map([["1", "base"], ["2", "mid"], ["3", "top"]]),
  );
  ms.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("errors carry their kind and name the snapshot", async () => {
  const { dir, ms } = await tempStore();
  ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "a", ""));
  const cases: [() => unknown, string, RegExp][] = [
    [
      () => ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "a", "")),
      "AlreadyExists",
      /^snapshot a: already exists$/,
    ],
    [
      () => ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "x", "nope")),
      "NotFound",
      /parent snapshot nope does not exist: not found/,
    ],
    [
      () => ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "x", "a")),
      "FailedPrecondition",
      /parent snapshot a is active, not committed/,
    ],
    [
      () => ms.update((tx) => tx.createSnapshot(Kind.COMMITTED, "x", "")),
      "InvalidArgument",
      /only active snapshots and views/,
    ],
    [
      () => ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "", "")),
      "InvalidArgument",
      /key must not be empty/,
    ],
    [
      () => ms.update((tx) => tx.remove("nope")),
      "NotFound",
      /^snapshot nope does not exist: not found$/,
    ],
    [
      () => ms.update((tx) => tx.commitActive("nope", "c", { size: 0, inodes: 0 })),
      "NotFound",
      /snapshot nope does not exist/,
    ],
    [
      () => ms.update((tx) => tx.updateInfo({ name: "a" }, ["kind"])),
      "InvalidArgument",
      /cannot update "kind" field on snapshot "a"/,
    ],
  ];
  for (const [fn, code, message] of cases) {
    let caught: unknown;
    try {
      fn();
    } catch (err) {
      caught = err;
    }
    assert.equal(Code[codeOf(caught)], code, String(caught));
    assert.match((caught as Error).message, message);
  }
  ms.update((tx) => tx.createSnapshot(Kind.VIEW, "v", ""));
  assert.equal(
    codeName(() => ms.update((tx) => tx.commitActive("v", "c", { size: 0, inodes: 0 }))),
    "FailedPrecondition",
  );
  ms.update((tx) => tx.commitActive("a", "base", { size: 0, inodes: 0 }));
  ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "child", "base"));
  assert.throws(
    () => ms.update((tx) => tx.remove("base")),
    /cannot remove snapshot with child: snapshot base is the parent of child: failed precondition/,
  );
  ms.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a transaction that throws leaves nothing; one given an async function is refused", async () => {
  const { dir, ms } = await tempStore();
  assert.throws(() =>
    ms.update((tx) => {
      tx.createSnapshot(Kind.ACTIVE, "a", "");
      throw new Error("crash in the middle");
    }), /crash in the middle/);
  assert.equal(ms.view((tx) => tx.lookup("a")), undefined);
  assert.throws(
    // deno-lint-ignore require-await
    () => ms.update(async (tx) => tx.createSnapshot(Kind.ACTIVE, "b", "")),
    (err) => err instanceof TypeError && /must be synchronous/.test(err.message),
  );
  assert.equal(ms.view((tx) => tx.lookup("b")), undefined, "the synchronous part was rolled back");
  // Nested calls join the outer transaction and roll back with it.
  assert.throws(() =>
    ms.update((tx) => {
      tx.createSnapshot(Kind.ACTIVE, "c", "");
      ms.update((inner) => inner.createSnapshot(Kind.ACTIVE, "d", ""));
      assert.ok(ms.view((v) => v.lookup("d")), "the nested write is visible inside");
      throw new Error("undo both");
    })
  );
  assert.deepEqual(ms.view((tx) => tx.walkInfo()), []);
  assert.throws(
    () => ms.view((tx) => tx.createSnapshot(Kind.ACTIVE, "e", "")),
    (err) => err instanceof StorageError && /needs a write transaction/.test(err.message),
  );
  assert.throws(() => ms.view(() => ms.update(() => 1)), /cannot be nested in a read/);
  ms.close();
  ms.close();
  assert.throws(() => ms.view(() => 1), /is closed/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("labels: empty values are dropped, odd keys round-trip, labels.<k> sets or deletes one", async () => {
  const { dir, ms } = await tempStore();
  ms.update((tx) =>
    tx.createSnapshot(Kind.ACTIVE, "a", "", { keep: "1", empty: "", __proto__x: "p" })
  );
  // An own "__proto__" key (as JSON decoding makes it) must stay a plain label.
  const odd = JSON.parse('{"__proto__": "odd", "keep": "1"}') as Record<string, string>;
  ms.update((tx) => tx.updateInfo({ name: "a", labels: odd }));
  let info = ms.view((tx) => tx.getInfo("a")).info;
  assert.deepEqual(Object.entries(info.labels).sort(), [["__proto__", "odd"], ["keep", "1"]]);
  info = ms.update((tx) =>
    tx.updateInfo({ name: "a", labels: { n: "new" } }, ["labels.n", "labels.keep"])
  );
  assert.deepEqual(Object.entries(info.labels).sort(), [["__proto__", "odd"], ["n", "new"]]);
  assert.ok(info.updated.getTime() >= info.created.getTime());
  ms.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ids are never handed out twice, also across reopen; the journal is WAL", async () => {
  const { dir, path, ms } = await tempStore();
  ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "a", ""));
  ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "b", ""));
  ms.update((tx) => tx.remove("b"));
  ms.close();
  const again = MetaStore.open(path);
  assert.equal(again.update((tx) => tx.createSnapshot(Kind.ACTIVE, "c", "")).id, "3");
  again.close();
  const raw = new DatabaseSync(path);
  assert.equal(
    (raw.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode,
    "wal",
  );
  raw.exec("PRAGMA user_version = 99");
  raw.close();
  assert.throws(
    () => MetaStore.open(path),
    (err) => err instanceof StorageError && /newer/.test(err.message),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("walkInfo filters on name, parent, kind and labels", async () => {
  const { dir, ms } = await tempStore();
  ms.update((tx) => {
    tx.createSnapshot(Kind.ACTIVE, "base-a", "");
    tx.commitActive("base-a", "base", { size: 0, inodes: 0 }, { tier: "low" });
    tx.createSnapshot(Kind.ACTIVE, "a", "base", { tier: "high" });
    tx.createSnapshot(Kind.VIEW, "v", "base");
  });
  const names = (filters: string[]) => ms.view((tx) => tx.walkInfo(filters)).map((i) => i.name);
  assert.deepEqual(names([]), ["base", "a", "v"]);
  assert.deepEqual(names(["kind==view"]), ["v"]);
  assert.deepEqual(names(["parent==base,labels.tier"]), ["a"]);
  assert.deepEqual(names(["labels.tier==low", "name==v"]), ["base", "v"]);
  assert.deepEqual(names(['parent==""']), ["base"]);
  assert.throws(() => names(["kind=="]), (err) => codeOf(err) === Code.InvalidArgument);
  const adaptor = adaptSnapshot({
    name: "n",
    parent: "",
    kind: Kind.COMMITTED,
    created: new Date(),
    updated: new Date(),
    labels: { "a.b": "c" },
  });
  assert.deepEqual(adaptor(["kind"]), { value: "committed", present: true });
  assert.deepEqual(adaptor(["labels", "a", "b"]), { value: "c", present: true });
  assert.deepEqual(adaptor(["labels", "x"]), { value: "", present: false });
  ms.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("diskUsage counts each inode once (hard links), the root included, in 512-byte blocks", async () => {
  const dir = await Deno.makeTempDir();
  const empty = await diskUsage(dir);
  assert.equal(empty.inodes, 1);
  await Deno.writeFile(`${dir}/f`, new Uint8Array(100_000).fill(1));
  await Deno.link(`${dir}/f`, `${dir}/g`);
  await Deno.mkdir(`${dir}/sub`);
  await Deno.symlink("f", `${dir}/sub/link`);
  const usage = await diskUsage(dir);
  assert.equal(usage.inodes, 4);
  const blocks = (await Deno.lstat(`${dir}/f`)).blocks ?? 0;
  assert.ok(usage.size >= blocks * 512 && blocks * 512 >= 100_000);
  assert.equal(usage.size % 512, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a kill -9 inside a transaction leaves the store as it was; after COMMIT the change stays", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/metadata.db`;
  const storage = fileURLToPath(new URL("./storage.ts", import.meta.url));
  const script = `
    import { MetaStore } from ${JSON.stringify(storage)};
    const ms = MetaStore.open(${JSON.stringify(path)});
    ms.update((tx) => tx.createSnapshot(2, "committed-before-kill", ""));
    ms.update((tx) => {
      tx.createSnapshot(2, "never-committed", "");
      Deno.kill(Deno.pid, "SIGKILL");
    });
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.signal, "SIGKILL", new TextDecoder().decode(out.stderr));
  const ms = MetaStore.open(path);
  assert.deepEqual(ms.view((tx) => tx.walkInfo()).map((i) => i.name), ["committed-before-kill"]);
  assert.equal(ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "next", "")).id, "2");
  ms.close();
  await Deno.remove(dir, { recursive: true });
});
