/**
 * The typed client's importArchive against the real binary, with Debian's ctr as the
 * reference: the same make-test-image OCI archive (3 layers) imported by the client into
 * namespace `a` and by `ctr -n b images import` into namespace `b` of one daemon gives the
 * same image record, the same blobs with the same labels and the same snapshot chain.
 * The same for a make-test-image docker-save archive (manifest, index and layer media types
 * synthesized as containerd's importer does), read from a file and from a ReadableStream,
 * alone and mixed with the OCI archive in both orders. Also: the Images/Snapshots wrappers.
 */
import assert from "node:assert/strict";
import {
  chainIDs,
  connect,
  type ContentInfo,
  importArchive,
  InvalidArgumentError,
  NotFoundError,
} from "../client/mod.ts";
import type { Client } from "../client/client.ts";
import { ctr, ctrMissing, makeTestImageTool, sh, startDaemon } from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool();

function missing(): string | undefined {
  const c = ctrMissing();
  if (c) return c;
  if (!MAKE_TEST_IMAGE) return "SKIP: make-test-image is missing";
  if (Deno.uid() !== 0) return "SKIP: mounting snapshots needs root";
  return undefined;
}
const skip = missing();
if (skip) console.error(`client_import_test: ${skip}`);

async function makeImage(dir: string, format: "oci" | "docker"): Promise<string> {
  const out = `${dir}/${format}.tar`;
  const r = await sh(MAKE_TEST_IMAGE!, ["--format", format, "--layers", "3", out]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** Snapshot rows of `ctr snapshots ls`: KEY PARENT KIND, sorted. */
async function ctrSnapshots(address: string, ns: string): Promise<string[]> {
  const r = await ctr(address, ["snapshots", "ls"], { namespace: ns });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trimEnd().split("\n").slice(1).map((l) => l.trim().split(/\s+/).join(" "))
    .sort();
}

function blobs(list: ContentInfo[]): { digest: string; size: number; labels: unknown }[] {
  return list.map((b) => ({ digest: b.digest, size: b.size, labels: b.labels }))
    .sort((x, y) => x.digest.localeCompare(y.digest));
}

Deno.test({
  name: "importArchive matches ctr images import",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const daemon = await startDaemon();
    const work = await Deno.makeTempDir({ prefix: "cts-client-import-" });
    await using client = connect({ address: daemon.address });
    try {
      const oci = await makeImage(work, "oci");
      const a = client.withNamespace("a");
      const b = client.withNamespace("b");

      const progress: string[] = [];
      const [img] = await importArchive(a, oci, { onProgress: (p) => progress.push(p.stage) });
      const r = await ctr(daemon.address, ["images", "import", oci], { namespace: "b" });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.ok(img);

      await t.step("same image record", async () => {
        const [ia, ib] = await Promise.all([a.images.get(img.name), b.images.get(img.name)]);
        assert.equal(ia.name, "docker.io/library/testbox:latest");
        assert.deepEqual(ia.target, ib.target);
        assert.deepEqual(ia.labels, ib.labels);
        assert.deepEqual(img.target, ia.target);
        assert.deepEqual((await a.images.list()).map((i) => i.name), [img.name]);
        assert.equal(img.layers.length, 3);
        assert.deepEqual(img.chainIDs, chainIDs(img.diffIDs));
        assert.ok(progress.includes("blob") && progress.includes("layer"));
      });

      await t.step("same blobs and labels", async () => {
        // Run a collection now, so the unreferenced index.json blob is gone from both
        // namespaces whatever the scheduler's timing.
        assert.equal((await ctr(daemon.address, ["leases", "create", "--id", "gc-now"])).code, 0);
        assert.equal((await ctr(daemon.address, ["leases", "rm", "--sync", "gc-now"])).code, 0);
        const [ca, cb] = await Promise.all([a.content.list(), b.content.list()]);
        assert.deepEqual(blobs(ca), blobs(cb));
        const config = ca.find((c) => c.digest === img.config.digest);
        assert.equal(
          config?.labels["containerd.io/gc.ref.snapshot.overlayfs"],
          img.chainIDs.at(-1),
        );
      });

      await t.step("same snapshot chain", async () => {
        const [sa, sb] = await Promise.all([
          ctrSnapshots(daemon.address, "a"),
          ctrSnapshots(daemon.address, "b"),
        ]);
        assert.equal(sa.length, 3);
        assert.deepEqual(sa, sb);
        const listed = await a.snapshots.list();
        assert.deepEqual(
          listed.map((s) => `${s.name} ${s.parent || ""} ${s.kind}`.replace("  ", " ")).sort(),
          sa.map((l) => l.replace(/ Committed$/, " committed")),
        );
        const top = await a.snapshots.stat(img.chainIDs.at(-1)!);
        assert.equal(top.parent, img.chainIDs[1]);
        assert.equal(top.kind, "committed");
      });

      await t.step("no leases left; re-import skips existing snapshots", async () => {
        assert.deepEqual(await a.leases.list(), []);
        const skipped: boolean[] = [];
        await importArchive(a, oci, {
          onProgress: (p) => p.stage === "layer" && skipped.push(p.skipped === true),
        });
        assert.deepEqual(skipped, [true, true, true]);
        assert.deepEqual(await a.leases.list(), []);
      });

      await t.step("snapshots prepare/mounts/usage/view/remove", async () => {
        const opts = { snapshotter: "overlayfs" };
        const top = img.chainIDs.at(-1)!;
        // Under a lease: a collection between two calls would take unreferenced snapshots.
        await using lease = await client.withNamespace("a").leases.create();
        const a = client.withNamespace("a").withLease(lease);
        const mounts = await a.snapshots.prepare("work", top, opts);
        assert.equal(mounts[0]?.type, "overlay");
        assert.deepEqual(await a.snapshots.mounts("work", opts), mounts);
        const view = await a.snapshots.view("look", top, opts);
        assert.ok(view.length > 0);
        assert.equal((await a.snapshots.stat("look")).kind, "view");
        const usage = await a.snapshots.usage(top, opts);
        assert.ok(usage.inodes >= 0);
        await a.snapshots.commit("work-done", "work", opts);
        await a.snapshots.remove("work-done", opts);
        await a.snapshots.remove("look", opts);
        await assert.rejects(a.snapshots.stat("look"), NotFoundError);
      });

      await t.step("images create/update/delete", async () => {
        const target = img.target;
        const created = await a.images.create({ name: "example.com/copy:1", target });
        assert.equal(created.target.digest, target.digest);
        const updated = await a.images.update(
          { name: "example.com/copy:1", target, labels: { k: "v" } },
          { fields: ["labels.k"] },
        );
        assert.deepEqual(updated.labels, { k: "v" });
        await a.images.delete("example.com/copy:1", { sync: true });
        await assert.rejects(a.images.get("example.com/copy:1"), NotFoundError);
      });

      await t.step("OCI archive from a ReadableStream", async () => {
        using file = await Deno.open(oci);
        const [streamed] = await importArchive(client.withNamespace("s"), file.readable);
        assert.deepEqual(streamed, img);
      });
    } finally {
      await client.close();
      await daemon.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

/** Everything an import leaves in a namespace, after a synchronous collection. */
async function namespaceState(address: string, client: Client, ns: string) {
  const c = client.withNamespace(ns);
  const images = (await c.images.list()).map((i) => ({
    name: i.name,
    target: i.target,
    labels: i.labels,
  })).sort((x, y) => x.name.localeCompare(y.name));
  return {
    images,
    blobs: blobs(await c.content.list()),
    snapshots: await ctrSnapshots(address, ns),
    leases: await c.leases.list(),
  };
}

async function collectGarbage(address: string) {
  assert.equal((await ctr(address, ["leases", "create", "--id", "gc-now"])).code, 0);
  assert.equal((await ctr(address, ["leases", "rm", "--sync", "gc-now"])).code, 0);
}

Deno.test({
  name: "importArchive matches ctr images import for docker-save archives",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const daemon = await startDaemon();
    const work = await Deno.makeTempDir({ prefix: "cts-client-import-docker-" });
    await using client = connect({ address: daemon.address });
    const ctrImport = async (ns: string, file: string, ...flags: string[]) => {
      const r = await ctr(daemon.address, ["images", "import", ...flags, file], {
        namespace: ns,
      });
      assert.equal(r.code, 0, r.stderr + r.stdout);
    };
    try {
      const docker = await makeImage(work, "docker");
      const oci = await makeImage(work, "oci");

      // Client into the `*-a` namespaces, ctr into the `*-b` ones.
      const [img] = await importArchive(client.withNamespace("d-a"), docker);
      await ctrImport("d-b", docker);
      using file = await Deno.open(docker);
      const [streamed] = await importArchive(client.withNamespace("s-a"), file.readable);
      await importArchive(client.withNamespace("od-a"), oci);
      await importArchive(client.withNamespace("od-a"), docker);
      await ctrImport("od-b", oci);
      await ctrImport("od-b", docker);
      await importArchive(client.withNamespace("do-a"), docker);
      await importArchive(client.withNamespace("do-a"), oci);
      await ctrImport("do-b", docker);
      await ctrImport("do-b", oci);
      // The index becomes a record of its own: its bytes are compared too.
      await importArchive(client.withNamespace("i-a"), docker, { indexName: "example.com/i:1" });
      await ctrImport("i-b", docker, "--index-name", "example.com/i:1");
      // Another platform: nothing in the archive is for it; both refuse, leaving no record.
      await assert.rejects(
        importArchive(client.withNamespace("p-a"), docker, { platform: "linux/arm64" }),
        (err: unknown) => err instanceof NotFoundError && /filtered out/.test(err.message),
      );
      const refused = await ctr(
        daemon.address,
        ["images", "import", "--platform", "linux/arm64", docker],
        { namespace: "p-b" },
      );
      assert.match(refused.stderr, /image might be filtered out/);
      await collectGarbage(daemon.address);
      const state = (ns: string) => namespaceState(daemon.address, client, ns);
      assert.ok(img && streamed);

      await t.step("the image: a synthesized docker manifest of uncompressed layers", () => {
        assert.equal(img.name, "docker.io/library/testbox:latest");
        assert.equal(img.target.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
        assert.deepEqual(img.target.annotations, {
          "io.containerd.image.name": "docker.io/library/testbox:latest",
          "org.opencontainers.image.ref.name": "latest",
        });
        assert.equal(img.config.mediaType, "application/vnd.docker.container.image.v1+json");
        assert.deepEqual(
          img.layers.map((l) => l.mediaType),
          Array(3).fill("application/vnd.docker.image.rootfs.diff.tar"),
        );
        // Uncompressed layers: the blob is the diff.
        assert.deepEqual(img.layers.map((l) => l.digest), img.diffIDs);
        assert.deepEqual(img.chainIDs, chainIDs(img.diffIDs));
        assert.deepEqual(streamed, img);
      });

      await t.step("same records, blobs, labels and snapshots as ctr (file)", async () => {
        const [a, b] = await Promise.all([state("d-a"), state("d-b")]);
        assert.deepEqual(a, b);
        assert.equal(a.images.length, 1);
        assert.equal(a.snapshots.length, 3);
        assert.deepEqual(a.leases, []);
        // manifest, index... the index is unreferenced and collected; config + 3 layers +
        // manifest stay.
        assert.equal(a.blobs.length, 5);
        const manifest = a.blobs.find((x) => x.digest === img.target.digest);
        assert.ok(manifest, "the synthesized manifest is stored");
      });

      await t.step("same as ctr from a ReadableStream", async () => {
        assert.deepEqual(await state("s-a"), await state("d-b"));
      });

      await t.step("OCI then docker: the docker manifest takes the gzip twins", async () => {
        const [a, b] = await Promise.all([state("od-a"), state("od-b")]);
        assert.deepEqual(a, b);
        const target = a.images[0]!.target;
        const manifest = JSON.parse(
          await new Response(client.withNamespace("od-a").content.read(target.digest)).text(),
        );
        assert.deepEqual(
          manifest.layers.map((l: { mediaType: string }) => l.mediaType),
          Array(3).fill("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        );
      });

      await t.step("docker then OCI: the same as ctr", async () => {
        assert.deepEqual(await state("do-a"), await state("do-b"));
      });

      await t.step("--index-name: the same index bytes and records as ctr", async () => {
        const [a, b] = await Promise.all([state("i-a"), state("i-b")]);
        assert.deepEqual(a, b);
        assert.deepEqual(a.images.map((i) => i.name), [
          "docker.io/library/testbox:latest",
          "example.com/i:1",
        ]);
        const index = a.images[1]!.target;
        assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
        const text = await new Response(client.withNamespace("i-a").content.read(index.digest))
          .text();
        assert.equal(
          text,
          `{"schemaVersion":2,"manifests":[{"mediaType":` +
            `"application/vnd.docker.distribution.manifest.v2+json","digest":"${img.target.digest}",` +
            `"size":${img.target.size},"annotations":{"io.containerd.image.name":` +
            `"docker.io/library/testbox:latest","org.opencontainers.image.ref.name":"latest"},` +
            `"platform":{"architecture":"amd64","os":"linux"}}]}`,
        );
      });

      await t.step("--platform linux/arm64: refused, nothing left, as ctr", async () => {
        const [a, b] = await Promise.all([state("p-a"), state("p-b")]);
        assert.deepEqual(a, b);
        assert.deepEqual(a.images, []);
      });

      await t.step("hand-made docker archive: symlink, blobs/ path, gzip layer, tags", async () => {
        // docker.tar rearranged: layer 1 as blobs/sha256/<hex> (docker 25 style), layer 2
        // gzipped, layer 3 through a symlink; short, registry and port names, and a second
        // entry without tags. Imported with --index-name so the index is compared too.
        const dir = `${work}/custom`;
        await Deno.mkdir(dir);
        assert.equal((await sh("tar", ["-C", dir, "-xf", docker])).code, 0);
        const mf = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
        const [l1, l2, l3] = mf[0].Layers as string[];
        const bytes = await Deno.readFile(`${dir}/${l1}`);
        const hex = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
          .map((b) => b.toString(16).padStart(2, "0")).join("");
        await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
        await Deno.rename(`${dir}/${l1}`, `${dir}/blobs/sha256/${hex}`);
        assert.equal((await sh("gzip", ["-n", `${dir}/${l2}`])).code, 0);
        await Deno.mkdir(`${dir}/alias`);
        await Deno.symlink(`../${l3}`, `${dir}/alias/layer.tar`);
        const layers = [`blobs/sha256/${hex}`, `${l2}.gz`, "alias/layer.tar"];
        const entries = [
          {
            ...mf[0],
            RepoTags: ["box", "example.com/team/box:v1", "localhost:5000/box"],
            Layers: layers,
          },
          { Config: mf[0].Config, RepoTags: null, Layers: layers },
        ];
        await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(entries));
        const members = [mf[0].Config, "blobs", l2!.split("/")[0]!, l3!.split("/")[0]!, "alias"];
        const tar = `${work}/custom.tar`;
        const made = await sh("tar", ["-C", dir, "-cf", tar, ...members, "manifest.json"]);
        assert.equal(made.code, 0, made.stderr);

        const got = await importArchive(client.withNamespace("c-a"), tar, {
          indexName: "example.com/custom-index:1",
        });
        await ctrImport("c-b", tar, "--index-name", "example.com/custom-index:1");
        await collectGarbage(daemon.address);
        const [a, b] = await Promise.all([state("c-a"), state("c-b")]);
        assert.deepEqual(a, b);
        assert.deepEqual(a.images.map((i) => i.name), [
          "docker.io/library/box:latest",
          "example.com/custom-index:1",
          "example.com/team/box:v1",
          "localhost:5000/box:latest",
        ]);
        assert.deepEqual(got.map((i) => i.name), [
          "example.com/custom-index:1",
          "docker.io/library/box:latest",
          "example.com/team/box:v1",
          "localhost:5000/box:latest",
        ]);
        assert.deepEqual(got[1]!.layers.map((l) => l.mediaType.split(".").at(-1)), [
          "tar",
          "gzip",
          "tar",
        ]);
        assert.deepEqual(got[1]!.diffIDs, img.diffIDs);
      });

      await t.step(
        "OCI entries named by a tag only: ctr's import-<date> and --base-name",
        async () => {
          const dir = `${work}/tag-only`;
          await Deno.mkdir(dir);
          assert.equal((await sh("tar", ["-C", dir, "-xf", oci])).code, 0);
          const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
          index.manifests[0].annotations = { "org.opencontainers.image.ref.name": "v1" };
          await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
          const tar = `${work}/tag-only.tar`;
          const made = await sh("tar", [
            "-C",
            dir,
            "-cf",
            tar,
            "oci-layout",
            "index.json",
            "blobs",
          ]);
          assert.equal(made.code, 0, made.stderr);
          await importArchive(client.withNamespace("t-a"), tar);
          await ctrImport("t-b", tar);
          await importArchive(client.withNamespace("t-a"), tar, { baseName: "example.com/t" });
          await ctrImport("t-b", tar, "--base-name", "example.com/t");
          await collectGarbage(daemon.address);
          const [a, b] = await Promise.all([state("t-a"), state("t-b")]);
          assert.deepEqual(a, b);
          assert.equal(a.images.length, 2);
          assert.equal(a.images[0]!.name, "example.com/t:v1");
          assert.match(a.images[1]!.name, /^import-\d{4}-\d\d-\d\d:v1$/);
        },
      );

      await t.step("a tar that is neither format is refused", async () => {
        const tar = `${work}/plain.tar`;
        await Deno.writeTextFile(`${work}/hello.txt`, "hello");
        assert.equal((await sh("tar", ["-C", work, "-cf", tar, "hello.txt"])).code, 0);
        await assert.rejects(
          importArchive(client.withNamespace("x"), tar),
          (err: unknown) =>
            err instanceof InvalidArgumentError && /unrecognized image format/.test(err.message),
        );
        assert.deepEqual(await client.withNamespace("x").images.list(), []);
      });
    } finally {
      await client.close();
      await daemon.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "importArchive stores every tar member ctr stores (no collection in between)",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // No collection runs on its own here, so even the unreferenced blobs (index.json,
    // repositories, <id>/json, VERSION, the synthesized index) can be compared.
    const daemon = await startDaemon({
      config: 'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\n' +
        '  mutation_threshold = 1000000\n  startup_delay = "1h"\n  pause_threshold = 0.0001\n',
    });
    const work = await Deno.makeTempDir({ prefix: "cts-client-import-all-" });
    await using client = connect({ address: daemon.address });
    try {
      for (const format of ["docker", "oci"] as const) {
        const tar = await makeImage(work, format);
        await importArchive(client.withNamespace(`${format}-a`), tar);
        const r = await ctr(daemon.address, ["images", "import", tar], {
          namespace: `${format}-b`,
        });
        assert.equal(r.code, 0, r.stderr + r.stdout);
        const [a, b] = await Promise.all([
          namespaceState(daemon.address, client, `${format}-a`),
          namespaceState(daemon.address, client, `${format}-b`),
        ]);
        assert.deepEqual(a, b);
        // docker: config, 3 x (VERSION, json, layer.tar) with one VERSION, repositories,
        // manifest, index; oci: index.json, manifest, config, 3 layers.
        assert.equal(a.blobs.length, format === "docker" ? 11 : 6, format);
      }
    } finally {
      await client.close();
      await daemon.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
