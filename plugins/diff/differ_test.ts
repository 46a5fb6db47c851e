/**
 * Tests for the walking differ: Apply through a real temp mount (root only), its cleanup on
 * failure, Diff of two trees as a layer, and the Diff service's differ order.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { NotFoundError, NotImplementedError } from "../../server/errdefs.ts";
import { readMounts } from "../../server/mount.ts";
import { Diff } from "../../proto/gen/containerd/services/diff/v1/diff_pb.ts";
import { ingest, inNamespace, memoryMetadata, serviceTransport } from "../metadata/testing.ts";
import { treeChanges } from "./compare.ts";
import { type Differ, LABEL_UNCOMPRESSED, readonlyMounts, WalkingDiffer } from "./differ.ts";
import { diffService } from "./service.ts";
import { readTar, tarArchive } from "./tar.ts";

const isRoot = Deno.uid() === 0;

function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = ReadableStream.from([new Uint8Array(data)]).pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function tmpmountsLeft(root: string): Promise<string[]> {
  const left: string[] = [];
  try {
    for await (const e of Deno.readDir(`${root}/tmpmounts`)) left.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const mounted = (await readMounts()).filter((m) => m.mountPoint.startsWith(root));
  return [...left, ...mounted.map((m) => m.mountPoint)];
}

Deno.test({
  name: "apply unpacks a gzip layer through a bind mount and reports the diff ID",
  ignore: !isRoot,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "differ-root-" });
    const target = await Deno.makeTempDir({ prefix: "differ-target-" });
    const { md } = memoryMetadata();
    try {
      const tar = tarArchive([
        { header: { name: "etc/", type: "dir" } },
        { header: { name: "etc/hostname", mode: 0o600 }, data: "box\n" },
        { header: { name: "link", type: "symlink", linkname: "etc/hostname" } },
      ]);
      const blob = await gzip(tar);
      const scope = { namespace: "default" };
      const digest = await ingest(md.content(scope), "layer", blob);
      const differ = new WalkingDiffer({ metadata: md, root });
      const applied = await differ.apply(scope, {
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        digest,
        size: blob.length,
      }, [{ type: "bind", source: target, options: ["rbind", "rw"] }]);
      assert.deepEqual(applied, {
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: sha256(tar),
        size: tar.length,
      });
      assert.equal(await Deno.readTextFile(`${target}/etc/hostname`), "box\n");
      assert.equal((await Deno.stat(`${target}/etc/hostname`)).mode! & 0o777, 0o600);
      assert.equal(await Deno.readLink(`${target}/link`), "etc/hostname");
      assert.deepEqual(await tmpmountsLeft(root), []);

      // A bad layer fails, and the temp mount still goes.
      const evil = await gzip(tarArchive([{ header: { name: "../x" }, data: "x" }]));
      const evilDigest = await ingest(md.content(scope), "evil", evil);
      await assert.rejects(
        differ.apply(scope, {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: evilDigest,
          size: evil.length,
        }, [{ type: "bind", source: target, options: ["rbind", "rw"] }]),
        /escapes the target directory/,
      );
      assert.deepEqual(await tmpmountsLeft(root), []);

      // A blob the namespace does not have.
      await assert.rejects(
        differ.apply({ namespace: "other" }, {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest,
          size: blob.length,
        }, [{ type: "bind", source: target, options: ["rbind", "rw"] }]),
        (err: unknown) =>
          err instanceof NotFoundError && /content digest .* not found/.test(err.message),
      );
      // A mount that fails leaves nothing behind either.
      await assert.rejects(
        differ.apply(scope, {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest,
          size: blob.length,
        }, [{ type: "bind", source: `${target}/missing`, options: ["rbind", "rw"] }]),
      );
      assert.deepEqual(await tmpmountsLeft(root), []);
    } finally {
      await md.close();
      await Deno.remove(root, { recursive: true });
      await Deno.remove(target, { recursive: true });
    }
  },
});

Deno.test({
  name: "compare writes the changes between two trees as a labelled gzip layer",
  ignore: !isRoot,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "differ-root-" });
    const lower = await Deno.makeTempDir({ prefix: "differ-lower-" });
    const upper = await Deno.makeTempDir({ prefix: "differ-upper-" });
    const { md } = memoryMetadata();
    try {
      const when = new Date("2024-01-01T00:00:00Z");
      for (const dir of [lower, upper]) {
        await Deno.mkdir(`${dir}/etc`);
        await Deno.writeTextFile(`${dir}/etc/same`, "same");
        await Deno.utime(`${dir}/etc/same`, when, when);
        await Deno.writeTextFile(`${dir}/gone`, "bye");
        await Deno.utime(`${dir}/etc`, when, when);
      }
      await Deno.remove(`${upper}/gone`);
      await Deno.writeTextFile(`${upper}/etc/new`, "new!");
      await Deno.writeTextFile(`${upper}/hard1`, "linked");
      await Deno.link(`${upper}/hard1`, `${upper}/hard2`);
      const scope = { namespace: "default" };
      const differ = new WalkingDiffer({ metadata: md, root });
      const desc = await differ.compare(
        scope,
        [{ type: "bind", source: lower, options: ["rbind", "rw"] }],
        [{ type: "bind", source: upper, options: ["rbind", "rw"] }],
        { labels: { mine: "yes" } },
      );
      assert.equal(desc.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
      const info = md.content(scope).info(desc.digest);
      assert.equal(info.size, desc.size);
      assert.equal(info.labels.mine, "yes");
      const chunks: Uint8Array<ArrayBuffer>[] = [];
      for await (const c of md.content(scope).read(desc.digest)) chunks.push(new Uint8Array(c));
      const gz = new Uint8Array(await new Blob(chunks).arrayBuffer());
      const tar = new Uint8Array(
        await new Response(
          ReadableStream.from([gz]).pipeThrough(new DecompressionStream("gzip")),
        ).arrayBuffer(),
      );
      assert.equal(info.labels[LABEL_UNCOMPRESSED], sha256(tar));
      const entries: [string, string, string][] = [];
      for await (const e of readTar(ReadableStream.from([tar]))) {
        entries.push([e.header.name, e.header.type, e.header.linkname]);
      }
      assert.deepEqual(entries, [
        ["etc/", "dir", ""],
        ["etc/new", "file", ""],
        [".wh.gone", "file", ""],
        ["hard1", "file", ""],
        ["hard2", "link", "hard1"],
      ]);
      assert.deepEqual(await tmpmountsLeft(root), []);
    } finally {
      await md.close();
      for (const d of [root, lower, upper]) await Deno.remove(d, { recursive: true });
    }
  },
});

Deno.test("treeChanges orders parents first and reports type changes", async () => {
  const lower = await Deno.makeTempDir();
  const upper = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${lower}/was-file`, "x");
    await Deno.mkdir(`${upper}/was-file`);
    await Deno.writeTextFile(`${upper}/was-file/inside`, "y");
    await Deno.mkdir(`${lower}/dir`);
    await Deno.writeTextFile(`${lower}/dir/old`, "o");
    const changes = [];
    for await (const c of treeChanges(lower, upper)) changes.push([c.kind, c.path]);
    assert.deepEqual(changes, [
      ["delete", "dir"],
      ["modify", "was-file"],
      ["add", "was-file/inside"],
    ]);
  } finally {
    await Deno.remove(lower, { recursive: true });
    await Deno.remove(upper, { recursive: true });
  }
});

Deno.test("readonlyMounts turns binds ro and an overlay's upperdir into a lowerdir", () => {
  assert.deepEqual(readonlyMounts([{ type: "bind", source: "/a", options: ["rbind", "rw"] }]), [
    { type: "bind", source: "/a", options: ["rbind", "ro"] },
  ]);
  assert.deepEqual(
    readonlyMounts([{
      type: "overlay",
      source: "overlay",
      options: ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"],
    }]),
    [{ type: "overlay", source: "overlay", options: ["index=off", "lowerdir=/u:/l1:/l2"] }],
  );
});

Deno.test("the Diff service tries differs in order, skipping NotImplemented", async () => {
  const calls: string[] = [];
  const differ = (name: string, implemented: boolean): Differ => ({
    apply() {
      calls.push(name);
      if (!implemented) return Promise.reject(new NotImplementedError(`${name} cannot`));
      return Promise.resolve({ mediaType: "m", digest: `sha256:${"b".repeat(64)}`, size: 3 });
    },
    compare() {
      calls.push(name);
      return Promise.reject(new NotImplementedError(`${name} cannot diff`));
    },
  });
  const client = createClient(
    Diff,
    serviceTransport([diffService([differ("first", false), differ("second", true)])]),
  );
  const ns = inNamespace("default");
  const res = await client.apply({
    diff: { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: "x", size: 1n },
    mounts: [{ type: "bind", source: "/x", options: ["rbind"] }],
  }, ns);
  assert.deepEqual(calls, ["first", "second"]);
  assert.equal(res.applied?.size, 3n);
  const err = await client.diff({}, ns).then(
    () => undefined,
    (e) => ConnectError.from(e),
  );
  assert.equal(err?.code, Code.Unimplemented);
  assert.match(err?.rawMessage ?? "", /second cannot diff/);
});
