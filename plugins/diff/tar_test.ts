import assert from "node:assert/strict";
import { Code, codeOf } from "../../server/errdefs.ts";
import {
  encodeHeader,
  endOfArchive,
  padBlock,
  parsePaxRecords,
  readTar,
  tarArchive,
  type TarHeader,
  type TarWriteEntry,
} from "./tar.ts";

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

interface Read {
  header: TarHeader;
  data: Uint8Array;
}

async function readAll(source: AsyncIterable<Uint8Array>): Promise<Read[]> {
  const out: Read[] = [];
  for await (const e of readTar(source)) {
    const parts: Uint8Array[] = [];
    for await (const c of e.body) parts.push(c.slice());
    const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      data.set(p, off);
      off += p.length;
    }
    out.push({ header: e.header, data });
  }
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: Code, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.equal(codeOf(err), code, String(err));
    assert.match(String(err), pattern);
    return true;
  });
}

const text = (s: string) => new TextEncoder().encode(s);

const SAMPLE: TarWriteEntry[] = [
  { header: { name: "dir/", type: "dir", mode: 0o1777, mtime: 1704067200 } },
  { header: { name: "dir/file.txt", mode: 0o4755, uid: 1000, gid: 100 }, data: "hello\n" },
  { header: { name: "dir/link", type: "symlink", linkname: "file.txt" } },
  { header: { name: "dir/hard", type: "link", linkname: "dir/file.txt" } },
  { header: { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 } },
  { header: { name: "dev/loop0", type: "block", devmajor: 7, devminor: 0 } },
  { header: { name: "pipe", type: "fifo" } },
  {
    header: {
      name: `long/${"d".repeat(120)}/${"n".repeat(200)}`,
      uid: 70000000,
      gid: 3000000000,
      mtime: 1704067200.25,
      xattrs: { "user.bin": new Uint8Array([0, 1, 0xff, 0xfe, 0x80]), "user.t": "v" },
    },
    data: "x".repeat(1000),
  },
  { header: { name: "l2", type: "symlink", linkname: `/${"t".repeat(300)}` } },
];

Deno.test("tar: writer output reads back with every field, in chunks of any size", async () => {
  const bytes = tarArchive(SAMPLE);
  for (const size of [1, 7, 512, 513, 100000]) {
    const got = await readAll(chunked(bytes, size));
    assert.deepEqual(got.map((e) => e.header.name), SAMPLE.map((e) => e.header.name));
    const [dir, file, link, hard, chr, blk, fifo, long, l2] = got.map((e) => e.header);
    assert.equal(dir!.type, "dir");
    assert.equal(dir!.mode, 0o1777);
    assert.deepEqual(dir!.mtime, { sec: 1704067200, nsec: 0 });
    assert.equal(file!.type, "file");
    assert.equal(file!.mode, 0o4755);
    assert.equal(file!.uid, 1000);
    assert.equal(file!.gid, 100);
    assert.equal(new TextDecoder().decode(got[1]!.data), "hello\n");
    assert.equal(link!.type, "symlink");
    assert.equal(link!.linkname, "file.txt");
    assert.equal(hard!.type, "link");
    assert.equal(hard!.linkname, "dir/file.txt");
    assert.equal(chr!.type, "char");
    assert.deepEqual([chr!.devmajor, chr!.devminor, chr!.mode], [1, 3, 0o666]);
    assert.equal(blk!.type, "block");
    assert.deepEqual([blk!.devmajor, blk!.devminor], [7, 0]);
    assert.equal(fifo!.type, "fifo");
    assert.equal(long!.uid, 70000000);
    assert.equal(long!.gid, 3000000000);
    assert.deepEqual(long!.mtime, { sec: 1704067200, nsec: 250000000 });
    assert.deepEqual(long!.xattrs.get("user.bin"), new Uint8Array([0, 1, 0xff, 0xfe, 0x80]));
    assert.deepEqual(long!.xattrs.get("user.t"), text("v"));
    assert.equal(got[7]!.data.length, 1000);
    assert.equal(l2!.linkname, `/${"t".repeat(300)}`);
  }
});

Deno.test("tar: skips unread data and reads past the end marker", async () => {
  const bytes = tarArchive([
    { header: { name: "a" }, data: "A".repeat(3000) },
    { header: { name: "b" }, data: "B" },
  ]);
  // GNU tar pads archives to 10 KiB records; extra bytes after the marker are consumed.
  const padded = new Uint8Array(bytes.length + 8192 + 5);
  padded.set(bytes);
  padded.set([1, 2, 3, 4, 5], padded.length - 5);
  let pulled = 0;
  async function* counting() {
    for await (const c of chunked(padded, 1000)) {
      pulled += c.length;
      yield c;
    }
  }
  const names: string[] = [];
  for await (const e of readTar(counting())) names.push(e.header.name);
  assert.deepEqual(names, ["a", "b"]);
  assert.equal(pulled, padded.length);
});

Deno.test("tar: an empty stream is an empty archive", async () => {
  assert.deepEqual(await readAll(chunked(new Uint8Array(0), 1)), []);
  assert.deepEqual(await readAll(chunked(endOfArchive(), 100)), []);
});

Deno.test("tar: truncation is InvalidArgument", async () => {
  const bytes = tarArchive([{ header: { name: "a" }, data: "A".repeat(3000) }]);
  // Cut inside the data, inside the header, at a block boundary before the marker.
  await rejectsWith(
    readAll(chunked(bytes.slice(0, 1500), 100)),
    Code.InvalidArgument,
    /truncated.*"a"/,
  );
  await rejectsWith(readAll(chunked(bytes.slice(0, 300), 100)), Code.InvalidArgument, /truncated/);
  const noMarker = bytes.slice(0, 512 + 3072);
  await rejectsWith(readAll(chunked(noMarker, 512)), Code.InvalidArgument, /end-of-archive/);
  // A header cut after PAX records.
  const pax = encodeHeader({ name: "x".repeat(300) });
  await rejectsWith(readAll(chunked(pax.slice(0, 700), 512)), Code.InvalidArgument, /truncated/);
});

Deno.test("tar: garbage is InvalidArgument", async () => {
  await rejectsWith(
    readAll(chunked(new Uint8Array(1024).fill(7), 512)),
    Code.InvalidArgument,
    /checksum/,
  );
  const bad = tarArchive([{ header: { name: "a" }, data: "x" }]);
  bad[100] = 0x39; // '9' in the mode field, checksum now wrong as well
  await rejectsWith(readAll(chunked(bad, 512)), Code.InvalidArgument, /checksum|octal/);
  const oversized = encodeHeader({ name: "p", typeflag: "x", size: 2 << 20 });
  await rejectsWith(
    readAll(chunked(oversized, 512)),
    Code.InvalidArgument,
    /extended header.*too large/,
  );
  const sparse = tarArchive([{ header: { name: "s", typeflag: "S" } }]);
  await rejectsWith(readAll(chunked(sparse, 512)), Code.Unimplemented, /sparse/);
  const badUtf8 = tarArchive([{ header: { name: "x", pax: { path: new Uint8Array([0xff]) } } }]);
  await rejectsWith(readAll(chunked(badUtf8, 512)), Code.InvalidArgument, /UTF-8/);
});

Deno.test("tar: PAX records keep raw bytes, and malformed ones are refused", () => {
  const value = new Uint8Array([0x00, 0xff, 0x10]);
  const body = new Uint8Array([...text("8 k="), ...value, 0x0a, ...text("7 a=bc\n")]);
  const records = parsePaxRecords(body);
  assert.deepEqual(records.get("k"), value);
  assert.deepEqual(records.get("a"), text("bc"));
  assert.throws(() => parsePaxRecords(text("99 k=v\n")), /malformed/);
  assert.throws(() => parsePaxRecords(text("6 kv\nx")), /malformed|no key/);
});

Deno.test("tar: base-256 numbers and GNU long names from GNU tar", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const deep = `${dir}/src/${"a".repeat(90)}/${"b".repeat(90)}`;
    await Deno.mkdir(deep, { recursive: true });
    await Deno.writeTextFile(`${deep}/${"c".repeat(120)}.txt`, "gnu\n");
    await Deno.symlink(`${"l".repeat(150)}`, `${deep}/link`);
    const out = await new Deno.Command("tar", {
      args: [
        "--format=gnu",
        "--owner=big:3000000",
        "--group=0:0",
        "-C",
        `${dir}/src`,
        "-cf",
        `${dir}/gnu.tar`,
        ".",
      ],
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const bytes = await Deno.readFile(`${dir}/gnu.tar`);
    const got = await readAll(chunked(bytes, 4096));
    const file = got.find((e) => e.header.name.endsWith(".txt"))!;
    assert.equal(file.header.name, `./${"a".repeat(90)}/${"b".repeat(90)}/${"c".repeat(120)}.txt`);
    assert.equal(file.header.uid, 3000000);
    assert.equal(new TextDecoder().decode(file.data), "gnu\n");
    const link = got.find((e) => e.header.name.endsWith("/link"))!;
    assert.equal(link.header.type, "symlink");
    assert.equal(link.header.linkname, "l".repeat(150));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tar: errors of the source pass through and stopping early closes it", async () => {
  const boom = new Error("disk on fire");
  async function* failing() {
    yield tarArchive([{ header: { name: "a" }, data: "A" }]).slice(0, 1024);
    throw boom;
  }
  await assert.rejects(readAll(failing()), (err) => err === boom);

  let closed = false;
  async function* watched() {
    try {
      yield tarArchive([{ header: { name: "a" } }, { header: { name: "b" } }]);
    } finally {
      closed = true;
    }
  }
  for await (const _ of readTar(watched())) break;
  assert.equal(closed, true);
  // padBlock pads to whole blocks.
  assert.equal(padBlock(1).length, 511);
  assert.equal(padBlock(512).length, 0);
});
