import assert from "node:assert/strict";
import { createBundle, deleteBundle, listBundles, loadBundle, orphanWorkDirs } from "./bundle.ts";

async function roots() {
  const dir = await Deno.makeTempDir();
  return { dir, roots: { state: `${dir}/state/rt`, root: `${dir}/root/rt` } };
}

Deno.test("createBundle lays out config.json, rootfs, work link and the log FIFO", async () => {
  const { dir, roots: r } = await roots();
  try {
    const spec = new TextEncoder().encode('{"ociVersion":"1.0.2"}');
    const bundle = await createBundle(r, { namespace: "ns1", id: "c1" }, spec);
    assert.equal(bundle.path, `${r.state}/ns1/c1`);
    assert.equal(bundle.workDir, `${r.root}/ns1/c1`);
    assert.equal((await Deno.stat(bundle.path)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${r.state}/ns1`)).mode! & 0o777, 0o711);
    assert.equal((await Deno.stat(`${bundle.path}/rootfs`)).mode! & 0o777, 0o711);
    assert.deepEqual(await Deno.readFile(`${bundle.path}/config.json`), spec);
    assert.equal(await Deno.readLink(`${bundle.path}/work`), bundle.workDir);
    assert.ok((await Deno.lstat(`${bundle.path}/log`)).isFifo);
    assert.deepEqual((await listBundles(r)).map((b) => `${b.namespace}/${b.id}`), ["ns1/c1"]);

    // a second create of the same id starts from scratch
    await Deno.writeTextFile(`${bundle.workDir}/leftover`, "x");
    await createBundle(r, { namespace: "ns1", id: "c1" }, spec);
    assert.deepEqual([...Deno.readDirSync(bundle.workDir)], []);

    await deleteBundle(bundle);
    await assert.rejects(Deno.lstat(bundle.path), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(bundle.workDir), Deno.errors.NotFound);
    await deleteBundle(bundle); // twice is fine
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bundle paths are built only from identifiers", async () => {
  const { dir, roots: r } = await roots();
  try {
    for (const [namespace, id] of [["..", "c"], ["ns", "../../etc"], ["ns", "a/b"], ["", "c"]]) {
      await assert.rejects(
        createBundle(r, { namespace: namespace!, id: id! }, new Uint8Array()),
        /identifier/,
      );
      assert.throws(() => loadBundle(r, namespace!, id!), /identifier/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listBundles skips dot and foreign names; orphanWorkDirs finds work without a bundle", async () => {
  const { dir, roots: r } = await roots();
  try {
    await createBundle(r, { namespace: "ns", id: "kept" }, new Uint8Array());
    await Deno.mkdir(`${r.state}/ns/.hidden`, { recursive: true });
    await Deno.mkdir(`${r.state}/ns/bad name`, { recursive: true });
    await Deno.mkdir(`${r.root}/ns/orphan`, { recursive: true });
    assert.deepEqual((await listBundles(r)).map((b) => b.id), ["kept"]);
    assert.deepEqual(await orphanWorkDirs(r), [`${r.root}/ns/orphan`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
