/**
 * Images, snapshots and diff, end to end: the real binary on temp dirs driven by Debian's
 * ctr, with Debian's real containerd as the reference.
 *
 * - `ctr images import` of OCI and docker archives (3 layers with whiteouts and an opaque
 *   dir) with the native and the overlayfs snapshotter unpacks a tree equal to what the real
 *   containerd unpacks from the same archive (paths, types, modes, owners, sizes, content
 *   hashes, symlink targets, device numbers); `ctr images rm --sync` frees every blob and
 *   snapshot.
 * - `ctr snapshots prepare/ls/info/mounts/commit/usage/label/rm` and their errors.
 * - `ctr events` started before an import prints the image and snapshot events.
 * - Hand-made malicious layers (traversal, absolute paths, symlink and hardlink escapes, a
 *   whiteout outside, over-long names, a truncated gzip) fail the import with a clear error
 *   and leave everything outside the snapshot untouched.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { tarArchive, type TarWriteEntry } from "../plugins/diff/tar.ts";
import { ctr, ctrMissing, lines, makeTestImageTool, ok, sh, startDaemon } from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool() ?? "../shared/tools/make-test-image (missing)";
const CONTAINERD = "/usr/bin/containerd";
const SNAPSHOTTERS = ["native", "overlayfs"] as const;

function missing(): string | undefined {
  const ctrSkip = ctrMissing();
  if (ctrSkip) return ctrSkip;
  for (const path of [CONTAINERD, MAKE_TEST_IMAGE]) {
    try {
      Deno.statSync(path);
    } catch {
      return `SKIP: ${path} is missing`;
    }
  }
  if (Deno.uid() !== 0) return "SKIP: mounting snapshots needs root";
  return undefined;
}

const skip = missing();
if (skip) console.error(`images_test: ${skip}`);

// ------------------------------------------------------------------------------------------
// Debian's containerd as the reference

interface RealContainerd {
  address: string;
  stop(): Promise<void>;
}

async function startRealContainerd(): Promise<RealContainerd> {
  const dir = await Deno.makeTempDir({ prefix: "real-containerd-" });
  const address = `${dir}/containerd.sock`;
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    [
      "version = 2",
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${address}"`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(CONTAINERD, {
    args: ["--config", `${dir}/config.toml`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const pump = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) log += dec.decode(chunk, { stream: true });
  })();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    await child.status;
    clearTimeout(timer);
    await pump.catch(() => {});
    await unmountBelow(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const v = await ctr(address, ["version"]);
    if (v.code === 0) return { address, stop };
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`real containerd did not start:\n${log}`);
}

/** Unmount whatever is still mounted below `dir` (a failed test must not leak mounts). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await sh("umount", ["-l", point]);
}

// ------------------------------------------------------------------------------------------
// Test images

interface ImageSummary {
  ref: string;
  layers: { chain_id: string; diff_id: string; digest: string }[];
  expect: { present: string[]; absent: string[] };
}

async function makeImage(dir: string, format: "oci" | "docker"): Promise<ImageSummary> {
  const out = await ok(
    sh(MAKE_TEST_IMAGE, ["--format", format, "--layers", "3", "--json", `${dir}/${format}.tar`]),
    "make-test-image",
  );
  return JSON.parse(out.stdout) as ImageSummary;
}

// ------------------------------------------------------------------------------------------
// File trees

interface Node {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: number;
}

async function fileHash(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** Every path below `root` (and `root` itself as "/") with its attributes. */
async function walkTree(root: string): Promise<Record<string, Node>> {
  const out: Record<string, Node> = {};
  const visit = async (path: string, rel: string) => {
    const st = await Deno.lstat(path);
    const fmt = (st.mode ?? 0) & 0o170000;
    const node: Node = {
      type: st.isSymlink
        ? "symlink"
        : st.isDirectory
        ? "dir"
        : st.isFile
        ? "file"
        : `0o${fmt.toString(8)}`,
      mode: (st.mode ?? 0) & 0o7777,
      uid: st.uid ?? -1,
      gid: st.gid ?? -1,
    };
    if (st.isFile) {
      node.size = st.size;
      node.sha256 = await fileHash(path);
    } else if (st.isSymlink) {
      node.target = await Deno.readLink(path);
    } else if (!st.isDirectory) {
      node.rdev = st.rdev ?? 0;
    }
    out[rel === "" ? "/" : rel] = node;
    if (st.isDirectory) {
      const names: string[] = [];
      for await (const e of Deno.readDir(path)) names.push(e.name);
      for (const name of names.sort()) await visit(`${path}/${name}`, `${rel}/${name}`);
    }
  };
  await visit(root, "");
  return out;
}

/**
 * The file tree of the committed snapshot `chainId`, through an active child mounted with the
 * mount command `ctr snapshots mounts` prints.
 */
async function snapshotTree(
  address: string,
  namespace: string,
  snapshotter: string,
  chainId: string,
): Promise<Record<string, Node>> {
  const key = `tree-view-${crypto.randomUUID()}`;
  const sn = ["snapshots", "--snapshotter", snapshotter];
  // `prepare`, not `view`: ctr labels a prepared snapshot containerd.io/gc.root, while a bare
  // view (as in containerd) may be collected by a GC triggered meanwhile.
  await ok(ctr(address, [...sn, "prepare", key, chainId], { namespace }));
  const target = await Deno.makeTempDir({ prefix: "tree-" });
  try {
    const printed = await ok(ctr(address, [...sn, "mounts", target, key], { namespace }));
    const command = lines(printed.stdout)[0] ?? "";
    assert.match(command, /^mount -t /, printed.stdout);
    await ok(sh("sh", ["-c", command]), command);
    try {
      return await walkTree(target);
    } finally {
      await ok(sh("umount", [target]), `umount ${target}`);
    }
  } finally {
    await Deno.remove(target).catch(() => {});
    await ok(ctr(address, [...sn, "rm", key], { namespace }));
  }
}

// ------------------------------------------------------------------------------------------

Deno.test({
  name:
    "import of OCI and docker archives with native and overlayfs unpacks what containerd unpacks; rm --sync frees it all",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "images-test-" });
    const ours = await startDaemon();
    let real: RealContainerd | undefined;
    try {
      real = await startRealContainerd();
      const images = { oci: await makeImage(work, "oci"), docker: await makeImage(work, "docker") };
      for (const format of ["oci", "docker"] as const) {
        const image = images[format];
        const top = image.layers.at(-1)!.chain_id;
        for (const snapshotter of SNAPSHOTTERS) {
          const namespace = `${format}-${snapshotter}`;
          const args = ["images", "import", "--snapshotter", snapshotter, `${work}/${format}.tar`];
          const started = performance.now();
          await ok(ctr(ours.address, args, { namespace }), `import into ours (${namespace})`);
          const ms = Math.round(performance.now() - started);
          const realStarted = performance.now();
          await ok(ctr(real.address, args, { namespace }), `import into containerd (${namespace})`);
          const realMs = Math.round(performance.now() - realStarted);
          const ls = await ok(ctr(ours.address, ["images", "ls"], { namespace }));
          assert.match(ls.stdout, new RegExp(image.ref.replaceAll(".", "\\.")));
          const snaps = await ok(
            ctr(ours.address, ["snapshots", "--snapshotter", snapshotter, "ls"], { namespace }),
          );
          for (const layer of image.layers) assert.match(snaps.stdout, new RegExp(layer.chain_id));
          assert.doesNotMatch(snaps.stdout, /extract-/);

          const mine = await snapshotTree(ours.address, namespace, snapshotter, top);
          const theirs = await snapshotTree(real.address, namespace, snapshotter, top);
          assert.deepEqual(mine, theirs, `${namespace}: unpacked trees differ`);
          for (const path of image.expect.present) assert.ok(mine[path], `${path} missing`);
          for (const path of image.expect.absent) assert.equal(mine[path], undefined, path);
          console.error(
            `  ${namespace}: import ${ms} ms (containerd ${realMs} ms), ${
              Object.keys(mine).length
            } paths equal to containerd's`,
          );
        }
      }
      // A namespace holding an image cannot be removed.
      const busy = await ctr(ours.address, ["namespaces", "rm", "oci-native"]);
      assert.equal(busy.code, 1);
      assert.match(
        busy.stderr,
        /namespace "oci-native" must be empty, but it still has images, blobs, snapshots on "native" snapshotter/,
      );
      // Removal with a synchronous GC frees blobs and snapshots of every namespace.
      for (const format of ["oci", "docker"] as const) {
        for (const snapshotter of SNAPSHOTTERS) {
          const namespace = `${format}-${snapshotter}`;
          await ok(
            ctr(ours.address, ["images", "rm", "--sync", images[format].ref], { namespace }),
          );
          const content = await ok(ctr(ours.address, ["content", "ls", "-q"], { namespace }));
          assert.deepEqual(lines(content.stdout), [], `${namespace}: blobs left`);
          const snaps = await ok(
            ctr(ours.address, ["snapshots", "--snapshotter", snapshotter, "ls"], { namespace }),
          );
          assert.equal(lines(snaps.stdout).length, 1, `${namespace}: snapshots left`);
        }
      }
      for (
        const dir of [
          "io.containerd.content.v1.content/blobs/sha256",
          "io.containerd.snapshotter.v1.native/snapshots",
          "io.containerd.snapshotter.v1.overlayfs/snapshots",
        ]
      ) {
        const left = [];
        for await (const e of Deno.readDir(`${ours.root}/${dir}`)) left.push(e.name);
        assert.deepEqual(left, [], `${dir} still holds ${left.join(", ")}`);
      }
      const namespaces = await ok(ctr(ours.address, ["namespaces", "rm", "oci-native"]));
      assert.equal(namespaces.code, 0);
    } finally {
      await real?.stop();
      await ours.stop();
      await unmountBelow(work);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "ctr snapshots prepare/ls/info/mounts/commit/usage/label/rm and their errors",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const daemon = await startDaemon();
    const target = await Deno.makeTempDir({ prefix: "snap-mount-" });
    try {
      const bogus = await ctr(daemon.address, ["snapshots", "--snapshotter", "bogus", "ls"]);
      assert.equal(bogus.code, 1);
      assert.match(bogus.stderr, /snapshotter not loaded: bogus/);
      for (const snapshotter of SNAPSHOTTERS) {
        const run = (...args: string[]) =>
          ctr(daemon.address, ["snapshots", "--snapshotter", snapshotter, ...args]);
        await ok(run("prepare", "k1"));
        const dup = await run("prepare", "k1");
        assert.equal(dup.code, 1);
        assert.match(dup.stderr, /snapshot "k1": already exists/);
        const ls = await ok(run("ls"));
        assert.match(ls.stdout, /k1\s+Active/);
        const info = JSON.parse((await ok(run("info", "k1"))).stdout);
        assert.equal(info.Name, "k1");
        assert.equal(info.Kind, "Active");
        assert.ok(info.Labels["containerd.io/gc.root"], JSON.stringify(info));

        const mounts = await ok(run("mounts", target, "k1"));
        const command = lines(mounts.stdout)[0] ?? "";
        assert.match(command, /^mount -t bind .* -o (rbind,rw|rw,rbind)$/);
        await ok(sh("sh", ["-c", command]), command);
        try {
          await Deno.writeFile(`${target}/data`, new Uint8Array(64 * 1024).fill(7));
        } finally {
          await ok(sh("umount", [target]));
        }
        const usage = await ok(run("usage", "k1"));
        const row = lines(usage.stdout).find((l) => l.startsWith("k1"));
        assert.ok(row, usage.stdout);
        assert.match(row, /k1\s+\d+(\.\d+)?\s?[kKM]i?B\s+\d+/);

        // Diff/Diff: the change (a 64 KiB file on an empty parent) as a gzip layer on stdout.
        const diff = await new Deno.Command("sh", {
          args: [
            "-c",
            `/usr/bin/ctr -a '${daemon.address}' snapshots --snapshotter ${snapshotter} diff k1 | tar tvzf -`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const listing = new TextDecoder().decode(diff.stdout);
        assert.equal(diff.code, 0, new TextDecoder().decode(diff.stderr));
        assert.match(listing, /-rw-r--r-- 0\/0\s+65536 .* data$/m);

        await ok(run("commit", "c1", "k1"));
        const after = await ok(run("ls"));
        assert.match(after.stdout, /c1\s+Committed/);
        assert.doesNotMatch(after.stdout, /\bk1\b/);
        await ok(run("prepare", "k2", "c1"));
        const kids = await run("rm", "c1");
        assert.equal(kids.code, 1);
        assert.match(kids.stderr, /cannot remove snapshot with child/);
        await ok(run("label", "c1", "tier=base"));
        assert.equal(JSON.parse((await ok(run("info", "c1"))).stdout).Labels.tier, "base");
        const filtered = await ok(
          ctr(daemon.address, ["snapshots", "--snapshotter", snapshotter, "ls"]),
        );
        assert.match(filtered.stdout, /k2\s+c1\s+Active/);
        await ok(run("rm", "k2"));
        await ok(run("rm", "c1"));
        const gone = await run("rm", "c1");
        assert.equal(gone.code, 1);
        assert.match(gone.stderr, /snapshot c1 does not exist: not found/);
        const noInfo = await run("info", "c1");
        assert.equal(noInfo.code, 1);
        assert.match(noInfo.stderr, /does not exist/);
      }
    } finally {
      await unmountBelow(target).catch(() => {});
      await sh("umount", [target]).catch(() => {});
      await Deno.remove(target).catch(() => {});
      await daemon.stop();
    }
  },
});

Deno.test({
  name: "ctr events started before an import prints the image and snapshot events",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "images-events-" });
    const daemon = await startDaemon();
    try {
      const image = await makeImage(work, "oci");
      const events = new Deno.Command("/usr/bin/ctr", {
        args: ["-a", daemon.address, "events"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      let text = "";
      const reading = (async () => {
        const dec = new TextDecoder();
        for await (const chunk of events.stdout) text += dec.decode(chunk, { stream: true });
      })();
      const until = async (what: string, check: () => boolean | Promise<boolean>) => {
        const deadline = Date.now() + 20_000;
        while (!(await check())) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${text}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      // Subscribed once a namespace event comes through.
      let probe = 0;
      await until("the events subscription", async () => {
        await ok(ctr(daemon.address, ["namespaces", "create", `probe${probe++}`]));
        await new Promise((r) => setTimeout(r, 100));
        return text.includes("/namespaces/create");
      });
      await ok(ctr(daemon.address, ["images", "import", `${work}/oci.tar`]));
      await ok(ctr(daemon.address, ["images", "rm", image.ref]));
      await until("/images/delete", () => text.includes("/images/delete"));
      events.kill("SIGTERM");
      await events.status;
      await reading.catch(() => {});
      const topics = lines(text).map((l) => l.split(" ")[5]);
      assert.deepEqual(topics.filter((t) => t?.startsWith("/images/")), [
        "/images/create",
        "/images/delete",
      ], text);
      assert.equal(topics.filter((t) => t === "/snapshot/prepare").length, 3, text);
      assert.equal(topics.filter((t) => t === "/snapshot/commit").length, 3, text);
      assert.match(text, new RegExp(`/images/create \\{"name":"${image.ref}"`));
      const top = image.layers.at(-1)!.chain_id;
      assert.match(
        text,
        new RegExp(`/snapshot/commit \\{"key":"extract-[^"]+ ${top}","name":"${top}"\\}`),
      );
    } finally {
      await daemon.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

// ------------------------------------------------------------------------------------------
// Malicious layers

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = ReadableStream.from([new Uint8Array(data)]).pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const ARCH = ({ x86_64: "amd64", aarch64: "arm64" } as Record<string, string>)[Deno.build.arch] ??
  Deno.build.arch;

/** An OCI archive of one image whose layers are the given tars (`blob` overrides the bytes). */
async function ociArchive(
  ref: string,
  layers: { tar: Uint8Array; blob?: Uint8Array }[],
): Promise<Uint8Array> {
  const blobs = new Map<string, Uint8Array>();
  const put = (data: Uint8Array) => {
    const digest = `sha256:${sha256Hex(data)}`;
    blobs.set(digest, data);
    return { digest, size: data.length };
  };
  const layerDescs = [];
  for (const layer of layers) {
    const blob = layer.blob ?? await gzip(layer.tar);
    layerDescs.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...put(blob) });
  }
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: ARCH,
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${sha256Hex(l.tar)}`) },
  }));
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...put(config) },
    layers: layerDescs,
  }));
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...put(manifest),
      annotations: {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": "latest",
      },
      platform: { architecture: ARCH, os: "linux" },
    }],
  });
  const entries: TarWriteEntry[] = [
    { header: { name: "oci-layout" }, data: '{"imageLayoutVersion":"1.0.0"}' },
    { header: { name: "index.json" }, data: index },
  ];
  for (const [digest, data] of blobs) {
    entries.push({ header: { name: `blobs/sha256/${digest.slice(7)}` }, data });
  }
  return tarArchive(entries);
}

interface Victims {
  dir: string;
  /** A snapshot of everything in `dir`: names, sizes, link counts, contents. */
  state(): Promise<string>;
}

async function victims(): Promise<Victims> {
  const dir = await Deno.makeTempDir({ prefix: "victims-" });
  await Deno.writeTextFile(`${dir}/existing`, "precious\n");
  await Deno.mkdir(`${dir}/sub`);
  await Deno.writeTextFile(`${dir}/sub/inner`, "also precious\n");
  return {
    dir,
    async state() {
      const tree = await walkTree(dir);
      const links: Record<string, number> = {};
      for (const path of Object.keys(tree)) {
        links[path] = (await Deno.lstat(`${dir}${path === "/" ? "" : path}`)).nlink ?? 0;
      }
      return JSON.stringify({ tree, links });
    },
  };
}

/** Paths below `dir` whose name contains `marker`. */
async function findMarked(dir: string, marker: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (path: string) => {
    for await (const e of Deno.readDir(path)) {
      const child = `${path}/${e.name}`;
      if (e.name.includes(marker)) found.push(child);
      if (e.isDirectory && !e.isSymlink) await visit(child);
    }
  };
  await visit(dir).catch(() => {});
  return found;
}

Deno.test({
  name: "malicious layers fail the import with a clear error and touch nothing outside",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const work = await Deno.makeTempDir({ prefix: "images-evil-" });
    const v = await victims();
    const daemon = await startDaemon();
    try {
      const up = "../".repeat(24);
      const benign: TarWriteEntry = { header: { name: "ok.txt" }, data: "fine\n" };
      const marker = "pwned";
      const file = (name: string): TarWriteEntry => ({ header: { name }, data: "evil\n" });
      const goodTar = tarArchive([benign, file("etc/x")]);
      const cases: { name: string; entries: TarWriteEntry[]; error: RegExp; blob?: "truncate" }[] =
        [
          {
            name: "traversal",
            entries: [benign, file(`${up}${v.dir.slice(1)}/trav-${marker}`)],
            error: /escapes the target directory/,
          },
          {
            name: "shallow-traversal",
            entries: [benign, file(`../shallow-${marker}`)],
            error: /escapes the target directory/,
          },
          {
            name: "absolute",
            entries: [benign, file(`${v.dir}/abs-${marker}`)],
            error: /is an absolute path/,
          },
          {
            name: "symlink-root",
            entries: [
              benign,
              { header: { name: "rootlink", type: "symlink", linkname: "/" } },
              file(`rootlink${v.dir}/sym-${marker}`),
            ],
            error: /escapes the target directory through symlink "rootlink"/,
          },
          {
            name: "symlink-up",
            entries: [
              benign,
              { header: { name: "uplink", type: "symlink", linkname: up } },
              file(`uplink${v.dir}/symup-${marker}`),
            ],
            error: /escapes the target directory/,
          },
          {
            name: "hardlink-outside",
            entries: [
              benign,
              {
                header: {
                  name: `hl-${marker}`,
                  type: "link",
                  linkname: `${up}${v.dir.slice(1)}/existing`,
                },
              },
            ],
            error: /hardlink target .* escapes the target directory/,
          },
          {
            name: "hardlink-absolute",
            entries: [
              benign,
              { header: { name: `hla-${marker}`, type: "link", linkname: `${v.dir}/existing` } },
            ],
            error: /hardlink target .* is an absolute path/,
          },
          {
            name: "whiteout-outside",
            entries: [benign, file(`${up}${v.dir.slice(1)}/.wh.existing`)],
            error: /escapes the target directory/,
          },
          {
            name: "long-name",
            entries: [benign, file(`${marker}-${"n".repeat(300)}`)],
            error: /component longer than 255 bytes/,
          },
          {
            name: "long-path",
            entries: [benign, file(`${`${"d".repeat(200)}/`.repeat(25)}${marker}`)],
            error: /longer than 4096 bytes/,
          },
          {
            name: "truncated-gzip",
            entries: [],
            error: /unexpected end|truncated/i,
            blob: "truncate",
          },
        ];
      const before = await v.state();
      for (const snapshotter of SNAPSHOTTERS) {
        for (const c of cases) {
          await t.step(`${snapshotter}: ${c.name}`, async () => {
            const layers = c.blob === "truncate"
              ? [{ tar: goodTar, blob: (await gzip(goodTar)).slice(0, 40) }]
              : [{ tar: goodTar }, { tar: tarArchive(c.entries) }];
            const ref = `docker.io/library/evil-${c.name}:latest`;
            const archive = `${work}/${c.name}.tar`;
            await Deno.writeFile(archive, await ociArchive(ref, layers));
            // A namespace per case: a base layer left unreferenced by an earlier failed import
            // may be collected while the next import reuses it (as in containerd).
            const namespace = `evil-${snapshotter}-${c.name}`;
            const r = await ctr(daemon.address, [
              "images",
              "import",
              "--snapshotter",
              snapshotter,
              archive,
            ], { namespace });
            assert.notEqual(r.code, 0, `import of ${c.name} succeeded:\n${r.stdout}`);
            assert.match(r.stderr, c.error, r.stderr);
            console.error(`    ${lines(r.stderr).at(-1)}`);
            assert.match(r.stderr, /failed to extract layer sha256:[0-9a-f]{64}/, r.stderr);
            assert.equal(await v.state(), before, `${c.name} changed the victim dir`);
            assert.deepEqual(await findMarked(v.dir, marker), []);
            assert.deepEqual(await findMarked(daemon.dir, marker), []);
            const snaps = await ok(
              ctr(daemon.address, ["snapshots", "--snapshotter", snapshotter, "ls"], {
                namespace,
              }),
            );
            assert.doesNotMatch(snaps.stdout, /extract-/, "the failed extraction was not removed");
          });
        }
      }
      // Nothing was ever written through the escapes, in /tmp or next to the daemon's root.
      assert.deepEqual(await findMarked("/tmp", `shallow-${marker}`), []);
      assert.equal(await v.state(), before);
    } finally {
      await daemon.stop();
      await Deno.remove(v.dir, { recursive: true }).catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
