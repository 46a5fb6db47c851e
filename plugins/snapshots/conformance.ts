/**
 * One conformance suite for every {@link Snapshotter}: `snapshotterSuite(name, make)` registers
 * the same Deno tests against any implementation (the pattern of Hono's shared router tests).
 * The cases follow containerd's snapshots/testsuite — basic prepare/commit/view chains, stat,
 * update, remove ordering, walk filters, layer semantics checked through real mounts (file
 * updates, deletions, chown, permissions, hard links, 128 stacked layers) — plus the contract
 * points of this project: error kinds and messages, usage, cleanup, persistence across reopen.
 *
 * Everything a test mounts goes through `withTempMount` (server/mount.ts) under the test's
 * temp dir, and every test ends by asserting that nothing is left mounted there.
 *
 * @example
 * ```ts
 * import { snapshotterSuite } from "../conformance.ts";
 * import { NativeSnapshotter } from "./native.ts";
 * snapshotterSuite("native", (root) => NativeSnapshotter.open(root));
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { Code, codeOf } from "../../server/errdefs.ts";
import { isMounted, unmountAll, withTempMount } from "../../server/mount.ts";
import { Kind, type Mount, type SnapshotInfo, type Snapshotter } from "./api.ts";

/** Makes a snapshotter on `root` (an existing, empty dir on the first call; reopened later). */
export type MakeSnapshotter = (root: string) => Promise<Snapshotter>;

/** What each case gets. */
export interface SuiteContext {
  /** The snapshotter under test (closed by the suite afterwards). */
  sn: Snapshotter;
  /** The snapshotter's root. */
  root: string;
  /** A scratch dir for flat copies; temp mounts go under `<tmp>/tmpmounts`. */
  work: string;
  /** The test's temp dir. */
  tmp: string;
  /** The factory, to reopen the same root. */
  make: MakeSnapshotter;
}

/** Options of {@link snapshotterSuite}. */
export interface SuiteOptions {
  /** Cases to leave out (by name), e.g. ones an implementation cannot support. */
  skip?: readonly string[];
}

/** The labels containerd's suite puts on every snapshot. */
const GC_ROOT = { "containerd.io/gc.root": new Date().toISOString() };

// ---------------------------------------------------------------------------------------
// A small fstest: appliers that change a tree, and a tree comparison

/** A change to apply to a directory tree. */
export type Applier = (dir: string) => Promise<void>;

/** Write a file with exact permissions (umask does not apply). */
export function createFile(path: string, content: string, mode: number): Applier {
  return async (dir) => {
    await Deno.writeTextFile(`${dir}/${path}`, content);
    await Deno.chmod(`${dir}/${path}`, mode);
  };
}

/** Make a directory with exact permissions. */
export function createDir(path: string, mode: number): Applier {
  return async (dir) => {
    await Deno.mkdir(`${dir}/${path}`);
    await Deno.chmod(`${dir}/${path}`, mode);
  };
}

/** Remove a path and everything below it. */
export function removeAll(path: string): Applier {
  return async (dir) => {
    await Deno.remove(`${dir}/${path}`, { recursive: true });
  };
}

/** Change owner and group (not following symlinks). */
export function chown(path: string, uid: number, gid: number): Applier {
  return async (dir) => {
    await Deno.chown(`${dir}/${path}`, uid, gid);
  };
}

/** Make a hard link `newPath` to `oldPath`. */
export function link(oldPath: string, newPath: string): Applier {
  return async (dir) => {
    await Deno.link(`${dir}/${oldPath}`, `${dir}/${newPath}`);
  };
}

/** Make a symlink at `path` pointing to `target`. */
export function symlink(target: string, path: string): Applier {
  return async (dir) => {
    await Deno.symlink(target, `${dir}/${path}`);
  };
}

/** Rename `from` to `to`. */
export function rename(from: string, to: string): Applier {
  return async (dir) => {
    await Deno.rename(`${dir}/${from}`, `${dir}/${to}`);
  };
}

/** Apply several appliers in order. */
export function apply(...appliers: Applier[]): Applier {
  return async (dir) => {
    for (const a of appliers) await a(dir);
  };
}

/** One path of a {@link manifest}: what the comparison looks at. */
export interface TreeEntry {
  /** `file`, `dir`, `symlink` or `special`. */
  type: string;
  /** Permission bits (with setuid, setgid, sticky) in octal. */
  mode: string;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** A file's text. */
  content?: string;
  /** A symlink's target. */
  target?: string;
}

/** A description of every path below `dir` (the root itself excluded), sorted by path. */
export async function manifest(dir: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (rel: string) => {
    const names: string[] = [];
    for await (const e of Deno.readDir(`${dir}${rel}`)) names.push(e.name);
    names.sort();
    for (const name of names) {
      const path = `${rel}/${name}`;
      const st = await Deno.lstat(`${dir}${path}`);
      const entry: TreeEntry = {
        type: st.isSymlink ? "symlink" : st.isDirectory ? "dir" : st.isFile ? "file" : "special",
        mode: ((st.mode ?? 0) & 0o7777).toString(8),
        uid: st.uid ?? -1,
        gid: st.gid ?? -1,
      };
      if (st.isFile) entry.content = await Deno.readTextFile(`${dir}${path}`);
      if (st.isSymlink) entry.target = await Deno.readLink(`${dir}${path}`);
      out.set(path, entry);
      if (st.isDirectory) await walk(path);
    }
  };
  await walk("");
  return out;
}

/** Assert that two trees hold the same paths with the same types, modes, owners and contents. */
export async function assertSameTree(expected: string, actual: string, what = ""): Promise<void> {
  const want = Object.fromEntries(await manifest(expected));
  const got = Object.fromEntries(await manifest(actual));
  assert.deepEqual(got, want, `${what}: tree ${actual} differs from ${expected}`);
}

// ---------------------------------------------------------------------------------------
// Helpers over a snapshotter

async function expectCode(
  promise: Promise<unknown>,
  code: Code,
  message?: RegExp,
): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `expected an error with code ${Code[code]}, got success`);
  assert.equal(
    Code[codeOf(caught)],
    Code[code],
    `expected code ${Code[code]}, got ${Code[codeOf(caught)]}: ${caught.message}`,
  );
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Mount `mounts` on a temp dir under `tmp`, apply `a`, unmount. */
async function applyToMounts(tmp: string, mounts: Mount[], a: Applier): Promise<void> {
  await withTempMount(tmp, mounts, (dir) => a(dir));
}

/** Prepare on `parent`, apply `a` through the mounts, commit; returns the committed name. */
async function createSnapshot(
  sn: Snapshotter,
  tmp: string,
  parent: string,
  a: Applier,
): Promise<string> {
  const name = `layer-${crypto.randomUUID()}`;
  const key = `${name}-prepare`;
  const mounts = await sn.prepare(key, parent, GC_ROOT);
  await applyToMounts(tmp, mounts, a);
  await sn.commit(name, key, GC_ROOT);
  return name;
}

/** View `name`, mount it and compare it with the flat dir `check`; remove the view. */
async function checkSnapshot(sn: Snapshotter, tmp: string, name: string, check: string) {
  const view = `${name}-view`;
  const mounts = await sn.view(view, name, GC_ROOT);
  try {
    await withTempMount(tmp, mounts, (dir) => assertSameTree(check, dir, `view of ${name}`));
  } finally {
    await sn.remove(view);
  }
}

/**
 * Build a chain of snapshots from `appliers`, applying each also to one flat dir, and check
 * after each layer that a view of the chain equals the flat dir (containerd's checkSnapshots).
 */
async function checkSnapshots(ctx: SuiteContext, ...appliers: Applier[]): Promise<void> {
  const flat = await Deno.makeTempDir({ dir: ctx.work, prefix: "flat" });
  let parent = "";
  for (const a of appliers) {
    const name = await createSnapshot(ctx.sn, ctx.tmp, parent, a);
    await a(flat);
    await checkSnapshot(ctx.sn, ctx.tmp, name, flat);
    parent = name;
  }
  await Deno.remove(flat, { recursive: true });
}

/** containerd's base set: c1 ← c2 committed, a1 on c2, a2 alone, v1 on c2, v2 alone. */
async function baseSnapshots(sn: Snapshotter, prefix = ""): Promise<void> {
  await sn.prepare(`${prefix}c1-a`, "", GC_ROOT);
  await sn.commit(`${prefix}c1`, `${prefix}c1-a`, GC_ROOT);
  await sn.prepare(`${prefix}c2-a`, `${prefix}c1`, GC_ROOT);
  await sn.commit(`${prefix}c2`, `${prefix}c2-a`, GC_ROOT);
  await sn.prepare(`${prefix}a1`, `${prefix}c2`, GC_ROOT);
  await sn.prepare(`${prefix}a2`, "", GC_ROOT);
  await sn.view(`${prefix}v1`, `${prefix}c2`, GC_ROOT);
  await sn.view(`${prefix}v2`, "", GC_ROOT);
}

async function names(sn: Snapshotter, filters?: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  await sn.walk((info) => {
    out.push(info.name);
  }, filters);
  return out.sort();
}

// ---------------------------------------------------------------------------------------
// The cases

type Case = (ctx: SuiteContext) => Promise<void>;

const cases: Record<string, Case> = {
  async Basic({ sn, tmp }) {
    const initial = apply(
      createFile("foo", "foo\n", 0o777),
      createDir("a", 0o755),
      createDir("a/b", 0o755),
      createDir("a/b/c", 0o755),
    );
    const diff = apply(
      createFile("bar", "bar\n", 0o777),
      createFile("foo", "bar\n", 0o777),
      removeAll("a/b"),
    );
    const mounts = await sn.prepare("preparing", "", GC_ROOT);
    assert.ok(mounts.length >= 1, "prepare returns mounts");
    await applyToMounts(tmp, mounts, initial);
    await sn.commit("committed", "preparing", GC_ROOT);
    const si = await sn.stat("committed");
    assert.equal(si.parent, "");
    assert.equal(si.kind, Kind.COMMITTED);
    await expectCode(sn.stat("preparing"), Code.NotFound);

    const expected = await Deno.makeTempDir({ dir: tmp });
    await initial(expected);
    const next = await sn.prepare("nextlayer", "committed", GC_ROOT);
    await withTempMount(tmp, next, async (dir) => {
      await assertSameTree(expected, dir, "child of committed");
      await diff(dir);
    });
    const ni = await sn.stat("nextlayer");
    assert.equal(ni.parent, "committed");
    assert.equal(ni.kind, Kind.ACTIVE);
    await sn.commit("committed-next", "nextlayer", GC_ROOT);
    const si2 = await sn.stat("committed-next");
    assert.equal(si2.parent, "committed");
    assert.equal(si2.kind, Kind.COMMITTED);
    await expectCode(sn.stat("nextlayer"), Code.NotFound);

    const walked = new Map<string, SnapshotInfo>();
    await sn.walk((info) => {
      walked.set(info.name, info);
    });
    assert.deepEqual(walked.get("committed"), si);
    assert.deepEqual(walked.get("committed-next"), si2);

    await diff(expected);
    const view = await sn.view("nextnextlayer", "committed-next", GC_ROOT);
    await withTempMount(tmp, view, (dir) => assertSameTree(expected, dir, "view of the chain"));
    await sn.remove("nextnextlayer");
    await expectCode(sn.remove("committed"), Code.FailedPrecondition, /remove/);
    await sn.remove("committed-next");
    await sn.remove("committed");
  },

  async StatActive({ sn, tmp }) {
    const mounts = await sn.prepare("preparing", "", GC_ROOT);
    await applyToMounts(tmp, mounts, createFile("foo", "foo\n", 0o777));
    const si = await sn.stat("preparing");
    assert.equal(si.name, "preparing");
    assert.equal(si.kind, Kind.ACTIVE);
    assert.equal(si.parent, "");
    assert.deepEqual(si.labels, GC_ROOT);
  },

  async StatCommitted({ sn, tmp }) {
    const mounts = await sn.prepare("preparing", "", GC_ROOT);
    await applyToMounts(tmp, mounts, createFile("foo", "foo\n", 0o777));
    await sn.commit("committed", "preparing", { l: "commit" });
    const si = await sn.stat("committed");
    assert.equal(si.name, "committed");
    assert.equal(si.kind, Kind.COMMITTED);
    assert.equal(si.parent, "");
    assert.deepEqual(si.labels, { l: "commit" }, "a commit's labels replace the active's");
  },

  async Transitivity({ sn, tmp }) {
    const a = await sn.prepare("preparing", "", GC_ROOT);
    await applyToMounts(tmp, a, createFile("foo", "foo\n", 0o777));
    await sn.commit("snapA", "preparing", GC_ROOT);
    const b = await sn.prepare("next", "snapA", GC_ROOT);
    await applyToMounts(tmp, b, createFile("foo", "foo bar\n", 0o777));
    await sn.commit("snapB", "next", GC_ROOT);
    const siA = await sn.stat("snapA");
    const siB = await sn.stat("snapB");
    const siParentB = await sn.stat(siB.parent);
    assert.equal(siA.parent, "");
    assert.equal(siB.parent, "snapA");
    assert.equal(siParentB.parent, "");
  },

  async PrepareViewFailing({ sn }) {
    await sn.prepare("preparing", "", GC_ROOT);
    await sn.commit("snapA", "preparing", GC_ROOT);
    await sn.prepare("newlayer", "snapA", GC_ROOT);
    await expectCode(
      sn.view("newlayer", "snapA", GC_ROOT),
      Code.AlreadyExists,
      /snapshot newlayer: already exists/,
    );
    await sn.prepare("prepLayer", "snapA", GC_ROOT);
    await expectCode(sn.prepare("prepLayer", "snapA", GC_ROOT), Code.AlreadyExists);
    await sn.view("viewLayer", "snapA", GC_ROOT);
    await expectCode(sn.view("viewLayer", "snapA", GC_ROOT), Code.AlreadyExists);
  },

  async Update({ sn }) {
    const t1 = Date.now();
    await baseSnapshots(sn);
    const t2 = Date.now();
    const table: [string, Kind, string][] = [
      ["c1", Kind.COMMITTED, ""],
      ["c2", Kind.COMMITTED, "c1"],
      ["a1", Kind.ACTIVE, "c2"],
      ["a2", Kind.ACTIVE, ""],
      ["v1", Kind.VIEW, "c2"],
      ["v2", Kind.VIEW, ""],
    ];
    for (const [name, kind, parent] of table) {
      const st = await sn.stat(name);
      assert.ok(st.created.getTime() >= t1 && st.created.getTime() <= t2, `${name}: created time`);
      assert.equal(st.updated.getTime(), st.created.getTime(), `${name}: updated = created`);
      assert.equal(st.kind, kind);
      assert.equal(st.parent, parent);
      assert.equal(st.name, name);

      const rootTime = new Date().toISOString();
      let expected: Record<string, string> = {
        l1: "v1",
        l2: "v2",
        l3: "v3",
        "containerd.io/gc.root": rootTime,
      };
      const u1 = Date.now();
      const changed: SnapshotInfo = { ...st, parent: "doesnotexist", labels: expected };
      let up = await sn.update(changed);
      const u2 = Date.now();
      assert.equal(up.created.getTime(), st.created.getTime(), `${name}: created kept`);
      assert.ok(up.updated.getTime() >= u1 && up.updated.getTime() <= u2, `${name}: updated time`);
      assert.equal(up.kind, kind);
      assert.equal(up.parent, parent, `${name}: parent is immutable`);
      assert.equal(up.name, name);
      assert.deepEqual(up.labels, expected);

      expected = { l1: "updated", l3: "v3", "containerd.io/gc.root": rootTime };
      up = await sn.update({ ...up, labels: { l1: "updated", l4: "v4" } }, [
        "labels.l1",
        "labels.l2",
      ]);
      assert.deepEqual(up.labels, expected);

      expected = { l4: "v4", "containerd.io/gc.root": rootTime };
      up = await sn.update({ ...up, labels: expected }, ["labels"]);
      assert.deepEqual(up.labels, expected);
      assert.deepEqual((await sn.stat(name)).labels, expected, `${name}: update is stored`);

      const reparented: SnapshotInfo = { ...up, parent: "doesnotexist" };
      await expectCode(
        sn.update(reparented, ["parent"]),
        Code.InvalidArgument,
        /cannot update "parent" field on snapshot "/,
      );
    }
  },

  async Remove({ sn }) {
    await sn.prepare("committed-a", "", GC_ROOT);
    await sn.commit("committed-1", "committed-a", GC_ROOT);
    await sn.prepare("reuse-1", "committed-1", GC_ROOT);
    await sn.remove("reuse-1");
    await sn.view("reuse-1", "committed-1", GC_ROOT);
    await sn.remove("reuse-1");
    await sn.prepare("reuse-1", "", GC_ROOT);
    await sn.remove("committed-1");
    await sn.commit("committed-1", "reuse-1", GC_ROOT);
    assert.equal((await sn.stat("committed-1")).kind, Kind.COMMITTED);
  },

  async Walk({ sn }) {
    const opt = { "containerd.io/gc.root": "check-walk" };
    await sn.prepare("a-np", "", opt);
    await sn.prepare("p-tmp", "", opt);
    await sn.commit("p", "p-tmp", opt);
    await sn.prepare("a", "p", opt);
    await sn.view("v", "p", opt);
    await sn.prepare("p-wl-tmp", "", opt);
    await sn.commit("p-wl", "p-wl-tmp", { l: "1", ...opt });
    await sn.prepare("a-wl", "p-wl", { l: "2", ...opt });
    await sn.view("v-wl", "p-wl", { l: "3", ...opt });
    await sn.prepare("a-np-wl", "", { l: "2", ...opt });
    const table: [string[], string[]][] = [
      [['labels."containerd.io/gc.root"==check-walk'], [
        "a-np",
        "p",
        "a",
        "v",
        "p-wl",
        "a-wl",
        "v-wl",
        "a-np-wl",
      ]],
      [['kind==active,labels."containerd.io/gc.root"==check-walk'], [
        "a-np",
        "a",
        "a-wl",
        "a-np-wl",
      ]],
      [['kind==view,labels."containerd.io/gc.root"==check-walk'], ["v", "v-wl"]],
      [['kind==committed,labels."containerd.io/gc.root"==check-walk'], ["p", "p-wl"]],
      [["name==p", "name==a-np-wl"], ["p", "a-np-wl"]],
      [["name==a-wl,labels.l"], ["a-wl"]],
      [["parent==p"], ["a", "v"]],
      [['parent!="",labels."containerd.io/gc.root"==check-walk'], ["a", "v", "a-wl", "v-wl"]],
      [["labels.l"], ["p-wl", "a-wl", "v-wl", "a-np-wl"]],
      [["labels.l==2"], ["a-wl", "a-np-wl"]],
    ];
    for (const [filters, want] of table) {
      assert.deepEqual(
        await names(sn, filters),
        [...want].sort(),
        `walk ${JSON.stringify(filters)}`,
      );
    }
    assert.equal((await names(sn)).length, 8, "no filter walks all");
    await expectCode(sn.walk(() => {}, ["labels.l=="]), Code.InvalidArgument);
  },

  async LayerFileUpdate(ctx) {
    const l1 = apply(
      createDir("etc", 0o700),
      createFile("etc/hosts", "mydomain 10.0.0.1", 0o644),
      createFile("etc/profile", "PATH=/usr/bin", 0o644),
    );
    const l2 = apply(
      createFile("etc/hosts", "mydomain 10.0.0.2", 0o644),
      createFile("etc/profile", "PATH=/usr/bin", 0o666),
      createDir("root", 0o700),
      createFile("root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
    );
    // Repeated across a second boundary: a same-size rewrite in the same second must show.
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
      await checkSnapshots(ctx, l1, l2);
    }
  },

  async RemoveDirectoryInLowerLayer(ctx) {
    await checkSnapshots(
      ctx,
      apply(createDir("lib", 0o700), createFile("lib/hidden", "", 0o644)),
      apply(removeAll("lib"), createDir("lib", 0o700), createFile("lib/not-hidden", "", 0o644)),
      apply(createFile("lib/newfile", "", 0o644)),
    );
  },

  async Chown(ctx) {
    await checkSnapshots(
      ctx,
      apply(
        createDir("opt", 0o700),
        createDir("opt/a", 0o700),
        createDir("opt/a/b", 0o700),
        createFile("opt/a/b/file.txt", "hello", 0o644),
      ),
      apply(
        chown("opt", 1, 1),
        chown("opt/a", 1, 1),
        chown("opt/a/b", 1, 1),
        chown("opt/a/b/file.txt", 1, 1),
      ),
    );
  },

  async DirectoryPermissionOnCommit(ctx) {
    await checkSnapshots(
      ctx,
      apply(
        createDir("dir1", 0o700),
        createDir("dir2", 0o700),
        createDir("dir3", 0o700),
        createDir("dir4", 0o700),
        createFile("dir4/f1", "...", 0o644),
        createDir("dir5", 0o700),
        createFile("dir5/f1", "...", 0o644),
        chown("dir1", 1, 1),
        chown("dir2", 1, 1),
        chown("dir3", 1, 1),
        chown("dir5", 1, 1),
        chown("dir5/f1", 1, 1),
      ),
      apply(chown("dir2", 0, 0), removeAll("dir3"), chown("dir4", 1, 1), chown("dir4/f1", 1, 1)),
      apply(
        createDir("dir3", 0o700),
        chown("dir3", 1, 1),
        removeAll("dir5"),
        createDir("dir5", 0o700),
        chown("dir5", 1, 1),
      ),
    );
  },

  async RemoveIntermediateSnapshot({ sn, tmp }) {
    const base = await sn.prepare("base", "", GC_ROOT);
    await applyToMounts(tmp, base, createFile("base-file", "x", 0o644));
    await sn.commit("committed-base", "base", GC_ROOT);
    await sn.prepare("intermediate", "committed-base", GC_ROOT);
    await sn.commit("committed-inter", "intermediate", GC_ROOT);
    await sn.prepare("toplayer", "committed-inter", GC_ROOT);
    await expectCode(
      sn.remove("committed-inter"),
      Code.FailedPrecondition,
      /cannot remove snapshot with child/,
    );
    await sn.remove("toplayer");
    await sn.remove("committed-inter");
    await sn.remove("committed-base");
    assert.deepEqual(await names(sn), []);
  },

  async DeletedFilesInChildSnapshot(ctx) {
    await checkSnapshots(
      ctx,
      apply(createFile("foo", "foo\n", 0o777), createFile("foobar", "foobar\n", 0o777)),
      apply(removeAll("foobar")),
      apply(),
    );
  },

  async MoveFileFromLowerLayer(ctx) {
    await checkSnapshots(
      ctx,
      apply(
        createDir("dir1", 0o700),
        createFile("dir1/f1", "Hello", 0o644),
        createDir("dir2", 0o700),
        createFile("dir2/f2", "...", 0o644),
      ),
      apply(
        createDir("dir3", 0o700),
        createFile("dir3/f1", "Hello", 0o644),
        removeAll("dir1"),
        link("dir2/f2", "dir3/f2"),
        removeAll("dir2/f2"),
      ),
    );
  },

  async Rename(ctx) {
    // containerd's case also renames a directory of a lower layer, which overlayfs refuses
    // (EXDEV) unless redirect_dir is on — and containerd skips the case; files only here.
    await checkSnapshots(
      ctx,
      apply(
        createDir("dir1", 0o700),
        createDir("somefiles", 0o700),
        createFile("somefiles/f1", "was here first!", 0o644),
        createFile("somefiles/f2", "nothing interesting", 0o644),
      ),
      apply(
        createFile("somefiles/f1-overwrite", "new content 1", 0o644),
        rename("somefiles/f1-overwrite", "somefiles/f1"),
        rename("somefiles/f2", "somefiles/f3"),
      ),
    );
  },

  async Symlinks(ctx) {
    await checkSnapshots(
      ctx,
      apply(
        createDir("bin", 0o755),
        createFile("bin/tool", "#!/bin/sh\n", 0o755),
        symlink("tool", "bin/alias"),
      ),
      apply(removeAll("bin/alias"), symlink("/bin/tool", "bin/alias"), symlink("bin", "sbin")),
    );
  },

  async ViewReadonly({ sn, tmp }) {
    await sn.prepare("preparing", "", GC_ROOT);
    await sn.commit("committed", "preparing", GC_ROOT);
    const m = await sn.view("view", "committed", GC_ROOT);
    await withTempMount(tmp, m, async (dir) => {
      await assert.rejects(
        Deno.writeTextFile(`${dir}/testfile`, "testcontent"),
        "a write to a view must fail (EROFS)",
      );
    });
    // And a view of a chain of two.
    await sn.prepare("second", "committed", GC_ROOT);
    await sn.commit("committed2", "second", GC_ROOT);
    const m2 = await sn.view("view2", "committed2", GC_ROOT);
    await withTempMount(tmp, m2, async (dir) => {
      await assert.rejects(Deno.writeTextFile(`${dir}/testfile`, "testcontent"));
    });
    await sn.remove("view2");
    await sn.remove("view");
    await sn.remove("committed2");
    await sn.remove("committed");
  },

  async StatInWalk({ sn }) {
    await baseSnapshots(sn, "stats-in-walk-");
    let seen = 0;
    await sn.walk(async (info) => {
      const again = await sn.stat(info.name);
      assert.deepEqual(again, info);
      seen++;
    });
    assert.equal(seen, 6);
  },

  async CloseTwice({ sn }) {
    await sn.prepare("closeTwice-prepare", "", GC_ROOT);
    await sn.commit("closeTwice", "closeTwice-prepare", GC_ROOT);
    await sn.remove("closeTwice");
    sn.close();
    sn.close();
  },

  async RootPermission({ sn, tmp }) {
    const mounts = await sn.prepare("preparing", "", GC_ROOT);
    await withTempMount(tmp, mounts, async (dir) => {
      const st = await Deno.stat(dir);
      assert.equal(((st.mode ?? 0) & 0o777).toString(8), "755");
    });
  },

  async Layers128Mount({ sn, tmp, work }) {
    const lowest = apply(
      createFile("bottom", "way at the bottom\n", 0o777),
      createFile("overwriteme", "FIRST!\n", 0o777),
      createDir("ADDHERE", 0o755),
      createDir("ONLYME", 0o755),
      createFile("ONLYME/bottom", "bye!\n", 0o777),
    );
    const appliers = [lowest];
    for (let i = 1; i <= 127; i++) {
      appliers.push(apply(
        createFile("overwriteme", `${i} WAS HERE!\n`, 0o777),
        createFile(`ADDHERE/file-${i}`, "same\n", 0o755),
        removeAll("ONLYME"),
        createDir("ONLYME", 0o755),
        createFile(`ONLYME/file-${i}`, "only me!\n", 0o777),
      ));
    }
    const flat = `${work}/flat`;
    await Deno.mkdir(flat);
    let parent = "";
    for (const [i, a] of appliers.entries()) {
      const key = `prepare-layer-${i}`;
      const mounts = await sn.prepare(key, parent, GC_ROOT);
      await withTempMount(tmp, mounts, async (dir) => {
        await assertSameTree(flat, dir, `layer ${i} before apply`);
        await a(flat);
        await a(dir);
        await assertSameTree(flat, dir, `layer ${i} after apply`);
      });
      parent = `committed-${i}`;
      await sn.commit(parent, key, GC_ROOT);
    }
    const view = await sn.view("fullview", parent, GC_ROOT);
    await withTempMount(tmp, view, (dir) => assertSameTree(flat, dir, "full view"));
  },

  async Errors({ sn }) {
    await expectCode(sn.prepare("x", "missing", GC_ROOT), Code.NotFound, /missing/);
    await expectCode(sn.view("x", "missing"), Code.NotFound);
    await sn.prepare("active", "");
    await expectCode(sn.prepare("x", "active"), Code.FailedPrecondition, /active.*not committed/);
    await sn.view("a-view", "");
    await expectCode(sn.prepare("x", "a-view"), Code.FailedPrecondition);
    await expectCode(sn.commit("c", "a-view"), Code.FailedPrecondition, /a-view/);
    await expectCode(sn.commit("c", "missing"), Code.NotFound, /snapshot missing does not exist/);
    await expectCode(
      sn.commit("active", "a-view"),
      Code.AlreadyExists,
      /snapshot active: already exists/,
    );
    await expectCode(
      sn.remove("missing"),
      Code.NotFound,
      /^snapshot missing does not exist: not found$/,
    );
    await expectCode(sn.stat("missing"), Code.NotFound, /missing/);
    await expectCode(sn.usage("missing"), Code.NotFound);
    await expectCode(sn.mounts("missing"), Code.NotFound);
    await expectCode(sn.update({ name: "missing", labels: {} }), Code.NotFound);
    await expectCode(sn.prepare("", ""), Code.InvalidArgument);
    await expectCode(sn.commit("", "active"), Code.InvalidArgument);
    await sn.commit("committed", "active");
    await expectCode(sn.mounts("committed"), Code.FailedPrecondition, /committed/);
    await sn.prepare("child", "committed");
    await expectCode(
      sn.remove("committed"),
      Code.FailedPrecondition,
      /cannot remove snapshot with child/,
    );
    // Nothing half-made: a failed prepare leaves no record behind.
    assert.deepEqual(await names(sn), ["a-view", "child", "committed"]);
  },

  async MountsAgain({ sn, tmp }) {
    const first = await sn.prepare("base-a", "", GC_ROOT);
    assert.deepEqual(await sn.mounts("base-a"), first, "mounts of an active = prepare's");
    await applyToMounts(tmp, first, createFile("f", "1", 0o644));
    await sn.commit("base", "base-a");
    const top = await sn.prepare("top", "base");
    assert.deepEqual(await sn.mounts("top"), top);
    const view = await sn.view("v", "base");
    assert.deepEqual(await sn.mounts("v"), view);
    // Writes through the active's mounts are seen by a later mount of the same key.
    await applyToMounts(tmp, await sn.mounts("top"), createFile("g", "2", 0o644));
    await withTempMount(tmp, await sn.mounts("top"), async (dir) => {
      assert.equal(await Deno.readTextFile(`${dir}/f`), "1");
      assert.equal(await Deno.readTextFile(`${dir}/g`), "2");
    });
  },

  async Usage({ sn, tmp }) {
    const mounts = await sn.prepare("a", "", GC_ROOT);
    const empty = await sn.usage("a");
    assert.ok(empty.inodes >= 1, "the snapshot's root counts");
    await applyToMounts(tmp, mounts, async (dir) => {
      await Deno.writeFile(`${dir}/blob`, new Uint8Array(256 * 1024).fill(7));
      await Deno.mkdir(`${dir}/d`);
      await Deno.writeTextFile(`${dir}/d/small`, "x");
      await Deno.link(`${dir}/blob`, `${dir}/d/blob-link`);
    });
    const active = await sn.usage("a");
    assert.equal(active.inodes, empty.inodes + 3, "a hard link counts once");
    assert.ok(active.size >= empty.size + 256 * 1024, `size ${active.size} includes the blob`);
    await sn.commit("c", "a");
    const committed = await sn.usage("c");
    assert.deepEqual(committed, active, "committed usage is the one measured at commit");
    await sn.view("v", "c");
    assert.deepEqual(await sn.usage("v"), { size: 0, inodes: 0 });
    const child = await sn.prepare("child", "c");
    const before = await sn.usage("child");
    await applyToMounts(tmp, child, createFile("new", "n", 0o644));
    const after = await sn.usage("child");
    assert.ok(after.inodes > before.inodes, "a new file in the child shows in its usage");
  },

  async Cleanup({ sn, root }) {
    await sn.prepare("keep-a", "", GC_ROOT);
    await sn.commit("keep", "keep-a");
    await sn.prepare("active", "keep");
    await sn.view("view", "keep");
    await sn.prepare("gone-a", "");
    await sn.commit("gone", "gone-a");
    await sn.remove("gone");
    await sn.prepare("gone-too", "keep");
    await sn.remove("gone-too");
    await Deno.mkdir(`${root}/snapshots/999999/fs`, { recursive: true }); // left by a crash
    await Deno.mkdir(`${root}/snapshots/rm-77`, { recursive: true });
    await sn.cleanup();
    const left: string[] = [];
    for await (const e of Deno.readDir(`${root}/snapshots`)) left.push(e.name);
    const owned = new Set<string>();
    for (const key of ["keep", "active", "view"]) {
      for (const m of await sn.mounts(key).catch(() => [])) {
        for (const text of [m.source, ...m.options]) {
          const match = /\/snapshots\/([^/]+)\//.exec(`${text}/`);
          if (match?.[1]) owned.add(match[1]);
        }
      }
    }
    for (const name of left) assert.ok(/^\d+$/.test(name), `cleanup left ${name}`);
    assert.ok(!left.includes("999999"));
    for (const id of owned) assert.ok(left.includes(id), `cleanup kept live dir ${id}`);
    // Still usable after cleanup.
    assert.equal((await sn.stat("keep")).kind, Kind.COMMITTED);
    await sn.prepare("after", "keep");
  },

  async Reopen({ sn, root, make, tmp }) {
    const m = await sn.prepare("a", "", { l: "1" });
    await applyToMounts(tmp, m, createFile("persist", "yes", 0o644));
    await sn.commit("c", "a", { l: "2" });
    await sn.prepare("b", "c");
    const before = await sn.stat("c");
    const idsBefore = (await sn.mounts("b")).map((x) => x.options.join(",") + x.source).join();
    sn.close();
    await expectCode(sn.stat("c"), Code.Unknown);
    const again = await make(root);
    try {
      assert.deepEqual(await again.stat("c"), before);
      assert.equal(
        (await again.mounts("b")).map((x) => x.options.join(",") + x.source).join(),
        idsBefore,
      );
      await withTempMount(tmp, await again.mounts("b"), async (dir) => {
        assert.equal(await Deno.readTextFile(`${dir}/persist`), "yes");
      });
      // Ids are never reused: a new snapshot gets a directory of its own.
      await again.remove("b");
      const fresh = await again.prepare("b2", "c");
      assert.notEqual(fresh.map((x) => x.options.join(",") + x.source).join(), idsBefore);
    } finally {
      again.close();
    }
  },

  async Concurrent({ sn }) {
    await sn.prepare("base-a", "");
    await sn.commit("base", "base-a");
    const keys = Array.from({ length: 8 }, (_, i) => `c-${i}`);
    await Promise.all(keys.map((k) => sn.prepare(k, "base")));
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => sn.prepare("same", "base")),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.equal(codeOf(r.reason), Code.AlreadyExists);
    }
    assert.equal((await names(sn, ["parent==base"])).length, 9);
  },
};

/** The names of the suite's cases, in order. */
export const caseNames: readonly string[] = Object.keys(cases);

/**
 * Register every case as a Deno test named `<name>: <case>`. Each runs on a fresh temp dir
 * (`root/` for the snapshotter, `work/` for scratch), closes the snapshotter, asserts that
 * nothing is left mounted and removes the dir. Needs root (mounts).
 */
export function snapshotterSuite(
  name: string,
  make: MakeSnapshotter,
  options: SuiteOptions = {},
): void {
  for (const [caseName, fn] of Object.entries(cases)) {
    Deno.test({
      name: `${name}: ${caseName}`,
      ignore: options.skip?.includes(caseName) ?? false,
      async fn() {
        const tmp = await Deno.makeTempDir({ prefix: `snapshot-suite-${name}-` });
        const root = `${tmp}/root`;
        const work = `${tmp}/work`;
        await Deno.mkdir(root);
        await Deno.mkdir(work);
        const sn = await make(root);
        try {
          await fn({ sn, root, work, tmp, make });
        } finally {
          sn.close();
          const leftover = await isMounted(tmp);
          if (leftover) await unmountAll(tmp);
          await Deno.remove(tmp, { recursive: true }).catch(() => {});
          assert.equal(leftover, false, `something is still mounted under ${tmp}`);
        }
      },
    });
  }
}
