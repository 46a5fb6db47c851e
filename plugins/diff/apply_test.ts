import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { Code, codeOf } from "../../server/errdefs.ts";
import type { ApplyResult } from "./api.ts";
import { applyLayer, createApplier } from "./apply.ts";
import { LayerMediaTypes as T } from "./decompress.ts";
import { openLibc } from "./libc.ts";
import { encodeHeader, endOfArchive, tarArchive, type TarWriteEntry } from "./tar.ts";

const T0 = 1704067200; // 2024-01-01T00:00:00Z
const text = (s: string) => new TextEncoder().encode(s);

function sha256(b: Uint8Array): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

interface ApplyOpts {
  mediaType?: string;
  overlay?: boolean;
  chunk?: number;
  warnings?: string[];
}

function apply(blob: Uint8Array, target: string, opts: ApplyOpts = {}): Promise<ApplyResult> {
  const warnings = opts.warnings;
  const applier = createApplier(
    warnings ? { log: { warn: (msg, fields) => warnings.push(`${msg} ${fields?.xattr}`) } } : {},
  );
  return applier.apply(
    { mediaType: opts.mediaType ?? T.ociTar, digest: sha256(blob), size: blob.length },
    () => chunked(blob, opts.chunk ?? 65536),
    target,
    { overlay: opts.overlay ?? false },
  );
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "diff-apply-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
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

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Every path under `dir` with type, mode, owner, size, mtime and content hash / link target. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string, rel: string) => {
    const st = await Deno.lstat(path);
    let what = "";
    if (st.isFile) what = sha256(await Deno.readFile(path));
    if (st.isSymlink) what = `-> ${await Deno.readLink(path)}`;
    const kind = st.isFile ? "f" : st.isDirectory ? "d" : st.isSymlink ? "l" : "o";
    out.push(
      `${rel} ${kind} ${st.mode!.toString(8)} ${st.uid}:${st.gid} ${st.size} ` +
        `${st.mtime?.getTime()} ${st.rdev} ${what}`,
    );
    if (st.isDirectory) {
      for (const name of await names(path)) await walk(`${path}/${name}`, `${rel}/${name}`);
    }
  };
  await walk(dir, ".");
  return out;
}

function run(cmd: string, args: string[]): Promise<Deno.CommandOutput> {
  return new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
}

async function tryMountOverlay(lower: string[], merged: string): Promise<boolean> {
  const out = await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower.join(":")}`,
    merged,
  ]);
  return out.code === 0;
}

Deno.test("apply: every entry kind with owner, mode, times and xattrs", async () => {
  await withTemp(async (root) => {
    const binary = new Uint8Array([0, 1, 0xff, 0x80, 0x7f]);
    const layer = tarArchive([
      { header: { name: "d/", type: "dir", mode: 0o1777, uid: 11, gid: 12, mtime: T0 + 1 } },
      {
        header: {
          name: "d/f",
          mode: 0o4755,
          uid: 1234,
          gid: 5678,
          mtime: T0 + 2.5,
          xattrs: { "user.bin": binary, "trusted.evil": "x" },
        },
        data: "file data\n",
      },
      { header: { name: "d/sgid/", type: "dir", mode: 0o2750, mtime: T0 + 3 } },
      {
        header: {
          name: "d/link",
          type: "symlink",
          linkname: "f",
          uid: 21,
          gid: 22,
          mtime: T0 + 4,
          xattrs: { "user.onlink": "v" },
        },
      },
      // Tar writers repeat the file's attributes on its hardlinks; they apply to the inode.
      {
        header: {
          name: "d/hard",
          type: "link",
          linkname: "./d/f",
          mode: 0o4755,
          uid: 1234,
          gid: 5678,
          mtime: T0 + 2.5,
        },
      },
      { header: { name: "d/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 } },
      { header: { name: "d/loop", type: "block", devmajor: 7, devminor: 1, mode: 0o660 } },
      { header: { name: "d/fifo", type: "fifo", mode: 0o600, mtime: T0 + 5 } },
      { header: { name: "deep/a/b/file", mtime: T0 }, data: "deep" },
      { header: { name: "./", type: "dir", mode: 0o700 } }, // the root: ignored
    ]);
    await Deno.chmod(root, 0o755);
    const warnings: string[] = [];
    const result = await apply(layer, root, { warnings, chunk: 100 });
    assert.equal(result.digest, sha256(layer));
    assert.equal(result.size, layer.length);

    const d = await Deno.lstat(`${root}/d`);
    assert.ok(d.isDirectory);
    assert.equal(d.mode! & 0o7777, 0o1777);
    assert.deepEqual([d.uid, d.gid], [11, 12]);
    // Restored after its children were written.
    assert.equal(d.mtime!.getTime(), (T0 + 1) * 1000);

    const f = await Deno.lstat(`${root}/d/f`);
    assert.ok(f.isFile);
    assert.equal(f.mode! & 0o7777, 0o4755);
    assert.deepEqual([f.uid, f.gid], [1234, 5678]);
    assert.equal(f.mtime!.getTime(), (T0 + 2.5) * 1000);
    assert.equal(await Deno.readTextFile(`${root}/d/f`), "file data\n");
    assert.equal(f.nlink, 2);
    assert.equal((await Deno.lstat(`${root}/d/hard`)).ino, f.ino);

    assert.equal((await Deno.lstat(`${root}/d/sgid`)).mode! & 0o7777, 0o2750);

    const link = await Deno.lstat(`${root}/d/link`);
    assert.ok(link.isSymlink);
    assert.equal(await Deno.readLink(`${root}/d/link`), "f");
    assert.deepEqual([link.uid, link.gid], [21, 22]);
    assert.equal(link.mtime!.getTime(), (T0 + 4) * 1000);

    const nul = await Deno.lstat(`${root}/d/null`);
    assert.ok(nul.isCharDevice);
    assert.equal(nul.rdev, (1 << 8) | 3);
    assert.equal(nul.mode! & 0o7777, 0o666);
    const loop = await Deno.lstat(`${root}/d/loop`);
    assert.ok(loop.isBlockDevice);
    assert.equal(loop.rdev, (7 << 8) | 1);
    const fifo = await Deno.lstat(`${root}/d/fifo`);
    assert.ok(fifo.isFifo);
    assert.equal(fifo.mode! & 0o7777, 0o600);
    assert.equal(fifo.mtime!.getTime(), (T0 + 5) * 1000);

    assert.equal(await Deno.readTextFile(`${root}/deep/a/b/file`), "deep");
    assert.equal((await Deno.lstat(`${root}/deep/a`)).mode! & 0o7777, 0o755);
    // The root entry did not change the target's mode.
    assert.equal((await Deno.lstat(root)).mode! & 0o7777, 0o755);

    using libc = openLibc();
    assert.deepEqual(libc.lgetxattr(`${root}/d/f`, "user.bin"), binary);
    assert.equal(libc.lgetxattr(`${root}/d/f`, "trusted.evil"), null);
    assert.deepEqual(warnings.sort(), [
      "ignored trusted xattr in layer trusted.evil",
      "ignored user xattr on special file user.onlink",
    ]);
  });
});

Deno.test("apply: an entry replaces what is there; a directory merges", async () => {
  await withTemp(async (root) => {
    await apply(
      tarArchive([
        { header: { name: "dir/", type: "dir", mode: 0o700 } },
        { header: { name: "dir/old" }, data: "old" },
        { header: { name: "was-dir/", type: "dir" } },
        { header: { name: "was-dir/x" }, data: "x" },
        { header: { name: "was-file" }, data: "f" },
      ]),
      root,
    );
    await apply(
      tarArchive([
        { header: { name: "dir/", type: "dir", mode: 0o751, uid: 5 } },
        { header: { name: "dir/new" }, data: "new" },
        { header: { name: "was-dir", type: "symlink", linkname: "dir" } },
        { header: { name: "was-file/", type: "dir" } },
      ]),
      root,
    );
    assert.deepEqual(await names(`${root}/dir`), ["new", "old"]);
    const dir = await Deno.lstat(`${root}/dir`);
    assert.equal(dir.mode! & 0o7777, 0o751);
    assert.equal(dir.uid, 5);
    assert.ok((await Deno.lstat(`${root}/was-dir`)).isSymlink);
    assert.ok((await Deno.lstat(`${root}/was-file`)).isDirectory);
  });
});

Deno.test("apply: the diff ID is the sha256 of the uncompressed tar, whatever the compression", async () => {
  const entries: TarWriteEntry[] = [
    { header: { name: "etc/", type: "dir", mtime: T0 } },
    { header: { name: "etc/hostname", mtime: T0 }, data: "box\n" },
    { header: { name: "bin/", type: "dir", mtime: T0 } },
    { header: { name: "bin/sh", type: "symlink", linkname: "busybox", mtime: T0 } },
    { header: { name: "data.bin", mtime: T0 }, data: new Uint8Array(300_000).map((_, i) => i * 7) },
  ];
  const tar = tarArchive(entries);
  const zstdFrames = new Uint8Array([
    ...zstdCompressSync(tar.subarray(0, 100_000)),
    ...zstdCompressSync(tar.subarray(100_000)),
  ]);
  const blobs: [string, Uint8Array][] = [
    [T.ociTar, tar],
    [T.ociTarGzip, gzipSync(tar)],
    [T.ociTarZstd, zstdCompressSync(tar)],
    [T.ociTarZstd, zstdFrames],
    [T.dockerTarGzip, gzipSync(tar)],
    [T.dockerTar, tar],
    [T.dockerTar, zstdCompressSync(tar)],
    [T.ociNondistributableTarGzip, gzipSync(tar)],
  ];
  let reference: string[] | undefined;
  for (const [mediaType, blob] of blobs) {
    await withTemp(async (root) => {
      const result = await apply(blob, root, { mediaType, chunk: 4096 });
      assert.equal(result.digest, sha256(tar), mediaType);
      assert.equal(result.size, tar.length, mediaType);
      const list = (await listing(root)).slice(1); // without the temp dir itself
      reference ??= list;
      assert.deepEqual(list, reference, mediaType);
    });
  }
});

Deno.test("apply: whiteouts and opaque directories over a lower layer", async () => {
  await withTemp(async (root) => {
    const passwd = sha256(await Deno.readFile("/etc/passwd"));
    await apply(
      tarArchive([
        { header: { name: "a/keep" }, data: "k" },
        { header: { name: "a/gone" }, data: "g" },
        { header: { name: "a/gonedir/x" }, data: "x" },
        { header: { name: "opq/lower1" }, data: "1" },
        { header: { name: "opq/sub/lower2" }, data: "2" },
        { header: { name: "victim-link", type: "symlink", linkname: "/etc" } },
        { header: { name: "host-link", type: "symlink", linkname: "/etc/passwd" } },
      ]),
      root,
    );
    await apply(
      tarArchive([
        { header: { name: "a/.wh.gone" } },
        { header: { name: "a/.wh.gonedir" } },
        { header: { name: "a/.wh.never-was" } },
        { header: { name: "opq/", type: "dir" } },
        { header: { name: "opq/new" }, data: "n" }, // before the marker: still kept
        { header: { name: "opq/.wh..wh..opq" } },
        { header: { name: "opq/sub/", type: "dir" } },
        { header: { name: "opq/sub/new2" }, data: "n2" },
        { header: { name: ".wh.victim-link" } },
        { header: { name: "host-link" }, data: "replaced, not written through" },
      ]),
      root,
    );
    assert.deepEqual(await names(`${root}/a`), ["keep"]);
    assert.deepEqual(await names(`${root}/opq`), ["new", "sub"]);
    assert.deepEqual(await names(`${root}/opq/sub`), ["new2"]);
    assert.equal(await exists(`${root}/victim-link`), false);
    assert.ok((await Deno.lstat(`${root}/host-link`)).isFile);
    assert.equal(sha256(await Deno.readFile("/etc/passwd")), passwd);
    assert.ok((await Deno.lstat("/etc")).isDirectory);
  });
});

Deno.test("apply: overlay mode writes overlay whiteouts into a bare upperdir", async () => {
  await withTemp(async (dir) => {
    const lowerLayer = tarArchive([
      { header: { name: "a/keep" }, data: "k" },
      { header: { name: "a/gone" }, data: "g" },
      { header: { name: "opq/old" }, data: "o" },
    ]);
    const upperLayer = tarArchive([
      { header: { name: "a/.wh.gone", uid: 7, gid: 8 } },
      { header: { name: "opq/", type: "dir" } },
      { header: { name: "opq/.wh..wh..opq" } },
      { header: { name: "opq/new" }, data: "n" },
    ]);
    for (const d of ["lower", "upper", "merged", "flat"]) await Deno.mkdir(`${dir}/${d}`);
    await apply(lowerLayer, `${dir}/lower`, { overlay: true });
    const result = await apply(upperLayer, `${dir}/upper`, { overlay: true });
    assert.equal(result.digest, sha256(upperLayer));

    const wh = await Deno.lstat(`${dir}/upper/a/gone`);
    assert.ok(wh.isCharDevice);
    assert.equal(wh.rdev, 0);
    assert.deepEqual([wh.uid, wh.gid], [7, 8]);
    using libc = openLibc();
    assert.deepEqual(libc.lgetxattr(`${dir}/upper/opq`, "trusted.overlay.opaque"), text("y"));
    assert.deepEqual(await names(`${dir}/upper/opq`), ["new"]);

    // The merged view equals applying both layers onto one directory.
    await apply(lowerLayer, `${dir}/flat`);
    await apply(upperLayer, `${dir}/flat`);
    if (await tryMountOverlay([`${dir}/upper`, `${dir}/lower`], `${dir}/merged`)) {
      try {
        assert.deepEqual(await names(`${dir}/merged/a`), ["keep"]);
        assert.deepEqual(await names(`${dir}/merged/opq`), ["new"]);
        assert.deepEqual(await names(`${dir}/flat/a`), ["keep"]);
        assert.deepEqual(await names(`${dir}/flat/opq`), ["new"]);
      } finally {
        await run("umount", [`${dir}/merged`]);
      }
    } else {
      console.warn("overlay mount not permitted here: merged view not checked");
    }
  });
});

interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

Deno.test("apply: make-test-image layers rebuild the image's root filesystem", async () => {
  const tool = new URL("../../../shared/tools/make-test-image", import.meta.url).pathname;
  const script = (await exists(tool)) ? tool : "/work/shared/tools/make-test-image";
  await withTemp(async (dir) => {
    const made = await run(script, ["--layers", "3", "--format", "oci", `${dir}/image.tar`]);
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
    await Deno.mkdir(`${dir}/oci`);
    const untar = await run("tar", ["-x", "-f", `${dir}/image.tar`, "-C", `${dir}/oci`]);
    assert.equal(untar.code, 0, new TextDecoder().decode(untar.stderr));
    const blob = (d: string) => `${dir}/oci/blobs/${d.replace(":", "/")}`;
    const json = async <J>(d: string): Promise<J> => JSON.parse(await Deno.readTextFile(blob(d)));
    const index = JSON.parse(await Deno.readTextFile(`${dir}/oci/index.json`));
    const manifest = await json<{ config: OciDescriptor; layers: OciDescriptor[] }>(
      index.manifests[0].digest,
    );
    const config = await json<{ rootfs: { diff_ids: string[] } }>(manifest.config.digest);
    assert.equal(manifest.layers.length, 3);

    const check = async (rootfs: string) => {
      for (const n of [1, 2, 3]) assert.ok(await exists(`${rootfs}/etc/layers/${n}`), `layer ${n}`);
      assert.deepEqual(await names(`${rootfs}/victims`), ["v3"]);
      assert.deepEqual(await names(`${rootfs}/opq`), ["from-layer-2"]);
      const busybox = await Deno.lstat(`${rootfs}/bin/busybox`);
      assert.ok(busybox.isFile && (busybox.mode! & 0o111) !== 0);
      assert.equal(await Deno.readLink(`${rootfs}/bin/sh`), "busybox");
    };

    // One directory, layers applied in order (the native snapshotter's way).
    await Deno.mkdir(`${dir}/rootfs`);
    for (const [i, layer] of manifest.layers.entries()) {
      const result = await applyLayer(
        layer,
        async () => (await Deno.open(blob(layer.digest))).readable,
        `${dir}/rootfs`,
        { overlay: false },
      );
      assert.equal(result.digest, config.rootfs.diff_ids[i], `diff_id of layer ${i + 1}`);
    }
    await check(`${dir}/rootfs`);

    // One bare upperdir per layer, stacked by overlayfs (the overlay snapshotter's way).
    const uppers: string[] = [];
    for (const [i, layer] of manifest.layers.entries()) {
      const upper = `${dir}/upper${i + 1}`;
      await Deno.mkdir(upper);
      const result = await applyLayer(
        layer,
        async () => (await Deno.open(blob(layer.digest))).readable,
        upper,
        { overlay: true },
      );
      assert.equal(result.digest, config.rootfs.diff_ids[i]);
      uppers.unshift(upper);
    }
    await Deno.mkdir(`${dir}/merged`);
    if (await tryMountOverlay(uppers, `${dir}/merged`)) {
      try {
        await check(`${dir}/merged`);
      } finally {
        await run("umount", [`${dir}/merged`]);
      }
    } else {
      console.warn("overlay mount not permitted here: stacked upperdirs not checked");
    }
  });
});

/** A target beside a sentinel directory that no layer may touch. */
async function withSentinel(
  fn: (target: string, sentinel: string) => Promise<void>,
): Promise<void> {
  await withTemp(async (dir) => {
    const target = `${dir}/target`;
    const sentinel = `${dir}/sentinel`;
    await Deno.mkdir(target);
    await Deno.mkdir(`${sentinel}/sub`, { recursive: true });
    await Deno.writeTextFile(`${sentinel}/file`, "precious");
    await Deno.writeTextFile(`${sentinel}/sub/other`, "also precious");
    await Deno.mkdir(`${target}/inside`);
    await Deno.writeTextFile(`${target}/inside/ok`, "ok");
    await fn(target, sentinel);
  });
}

Deno.test("apply: malicious layers fail with InvalidArgument and touch nothing outside", async () => {
  const hostPasswd = sha256(await Deno.readFile("/etc/passwd"));
  const cases: [string, (sentinel: string, target: string) => Uint8Array, string?][] = [
    ["../ traversal", () => tarArchive([{ header: { name: "../sentinel/pwned" }, data: "x" }])],
    [
      "deep ../ traversal",
      () => tarArchive([{ header: { name: "inside/../../sentinel/file" }, data: "x" }]),
    ],
    ["absolute path", (s) => tarArchive([{ header: { name: `${s}/pwned` }, data: "x" }])],
    [
      "absolute path over a file",
      (s) => tarArchive([{ header: { name: `${s}/file` }, data: "x" }]),
    ],
    ["symlink to / then a file through it", (s) =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "/" } },
        { header: { name: `evil${s}/pwned` }, data: "x" },
      ])],
    ["symlink to ../../.. then a file through it", (s) =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "../../../../../../../../.." } },
        { header: { name: `evil${s}/pwned` }, data: "x" },
      ])],
    ["symlink to ../sentinel then a file through it", () =>
      tarArchive([
        { header: { name: "inside/evil", type: "symlink", linkname: "../../sentinel" } },
        { header: { name: "inside/evil/file" }, data: "x" },
      ])],
    ["symlink chain escaping", () =>
      tarArchive([
        { header: { name: "a", type: "symlink", linkname: "inside/b" } },
        { header: { name: "inside/b", type: "symlink", linkname: "../.." } },
        { header: { name: "a/sentinel/sub/", type: "dir" } },
      ])],
    ["directory through a symlink to /", (s) =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "/" } },
        { header: { name: `evil${s}/newdir/`, type: "dir" } },
      ])],
    [
      "hardlink to /etc/passwd",
      () => tarArchive([{ header: { name: "pw", type: "link", linkname: "/etc/passwd" } }]),
    ],
    [
      "hardlink to ../sentinel/file",
      () => tarArchive([{ header: { name: "pw", type: "link", linkname: "../sentinel/file" } }]),
    ],
    ["hardlink through a symlink to /", (s) =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "/" } },
        { header: { name: "pw", type: "link", linkname: `evil${s}/file` } },
      ])],
    [
      "whiteout naming a path outside",
      () => tarArchive([{ header: { name: "../sentinel/.wh.file" } }]),
    ],
    ["whiteout of ..", () => tarArchive([{ header: { name: "inside/.wh..." } }])],
    ["whiteout of .", () => tarArchive([{ header: { name: "inside/.wh.." } }])],
    ["whiteout through a symlink to /", (s) =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "/" } },
        { header: { name: `evil${s}/.wh.file` } },
      ])],
    ["opaque marker through a symlink to ../..", () =>
      tarArchive([
        { header: { name: "evil", type: "symlink", linkname: "../.." } },
        { header: { name: "evil/.wh..wh..opq" } },
      ])],
    [
      "over-long name component",
      () => tarArchive([{ header: { name: `inside/${"n".repeat(256)}` }, data: "x" }]),
    ],
    [
      "over-long path",
      () => tarArchive([{ header: { name: `${"d/".repeat(2100)}f` }, data: "x" }]),
    ],
    [
      "over-long symlink target",
      () => tarArchive([{ header: { name: "l", type: "symlink", linkname: "t/".repeat(2100) } }]),
    ],
    ["truncated gzip", () => {
      const gz = gzipSync(
        tarArchive([{ header: { name: "inside/big" }, data: new Uint8Array(100_000).fill(1) }]),
      );
      return gz.slice(0, gz.length - 20);
    }, T.ociTarGzip],
    ["truncated zstd", () => {
      const zs = zstdCompressSync(
        tarArchive([{ header: { name: "inside/big" }, data: new Uint8Array(100_000).fill(1) }]),
      );
      return zs.slice(0, zs.length - 20);
    }, T.ociTarZstd],
    [
      "truncated tar",
      () =>
        tarArchive([{ header: { name: "inside/big" }, data: new Uint8Array(100_000).fill(1) }])
          .slice(0, 50_000),
    ],
    ["tar without end marker", () => encodeHeader({ name: "inside/empty" })],
    ["unsupported entry type", () => tarArchive([{ header: { name: "vol", typeflag: "V" } }])],
  ];
  for (const [what, make, mediaType] of cases) {
    await withSentinel(async (target, sentinel) => {
      const before = await listing(sentinel);
      const blob = make(sentinel, target);
      await assert.rejects(
        apply(blob, target, { mediaType: mediaType ?? T.ociTar }),
        (err: unknown) => {
          if (Deno.env.get("DIFF_TEST_VERBOSE")) console.log(`${what}: ${err}`);
          assert.equal(codeOf(err), Code.InvalidArgument, `${what}: ${err}`);
          assert.match(String(err), new RegExp(`layer ${sha256(blob)}`), what);
          return true;
        },
        what,
      );
      assert.deepEqual(await listing(sentinel), before, what);
      assert.equal(await Deno.readTextFile(`${target}/inside/ok`), "ok", what);
    });
  }
  assert.equal(sha256(await Deno.readFile("/etc/passwd")), hostPasswd);
});

Deno.test("apply: errors name the layer and the entry", async () => {
  await withSentinel(async (target) => {
    const blob = tarArchive([
      { header: { name: "fine" }, data: "x" },
      { header: { name: "evil", type: "symlink", linkname: "/" } },
      { header: { name: "evil/etc/shadow" }, data: "x" },
    ]);
    await assert.rejects(apply(blob, target), (err: unknown) => {
      assert.equal(codeOf(err), Code.InvalidArgument);
      assert.match(
        String(err),
        /apply layer sha256:[0-9a-f]{64} onto .*target: entry "evil\/etc\/shadow": path escapes the target directory through symlink "evil" -> "\/"/,
      );
      return true;
    });
  });
});

Deno.test("apply: absolute symlinks inside the tree resolve relative to the target", async () => {
  await withSentinel(async (target, sentinel) => {
    const before = await listing(sentinel);
    await apply(
      tarArchive([
        { header: { name: "inside/real/", type: "dir" } },
        { header: { name: "inside/real/f" }, data: "inner" },
        // /var/run -> /run style: absolute, meant relative to the image root.
        { header: { name: "abs", type: "symlink", linkname: "/inside/real" } },
        { header: { name: "abs/written-through" }, data: "through" },
        { header: { name: "hl", type: "link", linkname: "abs/f" } },
        // An absolute link naming the sentinel's host path lands inside the target.
        { header: { name: "host", type: "symlink", linkname: sentinel } },
        { header: { name: "host/file" }, data: "shadow copy" },
        // A symlink at a name is replaced, not written through.
        { header: { name: "x", type: "symlink", linkname: `${sentinel}/file` } },
        { header: { name: "x" }, data: "replaced" },
        // Relative links that stay inside are followed.
        { header: { name: "inside/up", type: "symlink", linkname: "../inside/real" } },
        { header: { name: "inside/up/rel" }, data: "rel" },
      ]),
      target,
    );
    assert.equal(await Deno.readTextFile(`${target}/inside/real/written-through`), "through");
    assert.equal(
      (await Deno.lstat(`${target}/hl`)).ino,
      (await Deno.lstat(`${target}/inside/real/f`)).ino,
    );
    assert.equal(await Deno.readTextFile(`${target}${sentinel}/file`), "shadow copy");
    assert.ok((await Deno.lstat(`${target}/x`)).isFile);
    assert.equal(await Deno.readTextFile(`${target}/inside/real/rel`), "rel");
    assert.deepEqual(await listing(sentinel), before);
  });
});

Deno.test("apply: a large layer streams in bounded memory", async () => {
  await withTemp(async (root) => {
    const size = 512 * 1024 * 1024;
    const hash = createHash("sha256");
    let total = 0;
    async function* layer(): AsyncGenerator<Uint8Array> {
      const emit = (b: Uint8Array) => {
        hash.update(b);
        total += b.length;
        return b;
      };
      yield emit(encodeHeader({ name: "big.bin", size }));
      const chunk = new Uint8Array(1 << 20);
      for (let off = 0; off < size; off += chunk.length) {
        chunk.fill(off / chunk.length);
        yield emit(chunk.slice());
      }
      yield emit(endOfArchive());
    }
    const rssBefore = Deno.memoryUsage().rss;
    let peak = rssBefore;
    const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 5);
    try {
      const result = await createApplier().apply(
        { mediaType: T.ociTar, digest: "sha256:unused", size: 0 },
        layer,
        root,
        { overlay: false },
      );
      assert.equal(result.size, total);
      assert.equal(result.digest, `sha256:${hash.digest("hex")}`);
    } finally {
      clearInterval(timer);
    }
    assert.equal((await Deno.lstat(`${root}/big.bin`)).size, size);
    // Garbage collection lags, so some growth is expected; holding the layer would be 512 MiB.
    assert.ok(peak - rssBefore < 200 * 1024 * 1024, `rss grew by ${(peak - rssBefore) >> 20} MiB`);
  });
});

Deno.test("apply: bad requests and failures have their kinds", async () => {
  await withTemp(async (root) => {
    const tar = tarArchive([{ header: { name: "f" }, data: "x" }]);
    await assert.rejects(
      apply(tar, root, { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" }),
      (err) => codeOf(err) === Code.Unimplemented,
    );
    await assert.rejects(apply(tar, `${root}/missing`), (err) => codeOf(err) === Code.NotFound);
    await Deno.writeTextFile(`${root}/file`, "");
    await assert.rejects(apply(tar, `${root}/file`), (err) => codeOf(err) === Code.InvalidArgument);

    const boom = new Error("content store read failed");
    await assert.rejects(
      createApplier().apply(
        { mediaType: T.ociTarGzip, digest: "sha256:x", size: 1 },
        async function* () {
          yield gzipSync(tar).slice(0, 10);
          throw boom;
        },
        root,
        { overlay: false },
      ),
      (err) => err === boom,
    );

    // A reader failing in the middle of an entry's data.
    const big = tarArchive([{ header: { name: "big" }, data: new Uint8Array(200_000) }]);
    await assert.rejects(
      createApplier().apply(
        { mediaType: T.ociTar, digest: "sha256:z", size: big.length },
        async function* () {
          yield big.slice(0, 100_000);
          throw boom;
        },
        root,
        { overlay: false },
      ),
      (err) => err === boom,
    );

    const controller = new AbortController();
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield tar.slice(0, 512);
      controller.abort();
      yield tar.slice(512);
    }
    await assert.rejects(
      createApplier().apply(
        { mediaType: T.ociTar, digest: "sha256:y", size: tar.length },
        slow,
        root,
        { overlay: false, signal: controller.signal },
      ),
      (err) => codeOf(err) === Code.Canceled,
    );

    // A parent that is a file, a hardlink to nothing: the layer is inconsistent.
    await assert.rejects(
      apply(tarArchive([{ header: { name: "file/child" }, data: "x" }]), root),
      (err) => codeOf(err) === Code.InvalidArgument && /not a directory/.test(String(err)),
    );
    await assert.rejects(
      apply(tarArchive([{ header: { name: "h", type: "link", linkname: "nothing" } }]), root),
      (err) => codeOf(err) === Code.InvalidArgument && /does not exist/.test(String(err)),
    );
    await assert.rejects(
      apply(
        tarArchive([
          { header: { name: "loop", type: "symlink", linkname: "loop2" } },
          { header: { name: "loop2", type: "symlink", linkname: "./loop" } },
          { header: { name: "loop/f" }, data: "x" },
        ]),
        root,
      ),
      (err) => codeOf(err) === Code.InvalidArgument && /too many levels/.test(String(err)),
    );
  });
});
