/**
 * Push a file into the daemon's content store under a lease, with a progress bar on stderr,
 * read it back and compare digests (ctr content ingest + get).
 *
 * ```sh
 * deno run -A examples/blob-roundtrip.ts --address /run/containerd-ts/containerd-ts.sock ./layer.tar
 * deno run -A examples/blob-roundtrip.ts -a /tmp/x.sock            # a random 8 MiB file
 * ```
 * Prints the digests on stdout; exit status 0 when they match, 1 otherwise or on error.
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { connect } from "../client/mod.ts";

const { values, positionals } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    namespace: { type: "string", short: "n", default: "default" },
    size: { type: "string", default: String(8 << 20) },
  },
  allowPositionals: true,
});

/** sha256 of a byte stream, as `sha256:<hex>`, and its length. */
async function digestOf(stream: ReadableStream<Uint8Array>): Promise<[string, number]> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.length;
  }
  return [`sha256:${hash.digest("hex")}`, size];
}

function bar(done: number, total: number): string {
  const width = 30;
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  const pct = total > 0 ? Math.floor((done / total) * 100) : 0;
  const mib = (n: number) => (n / (1 << 20)).toFixed(1);
  return `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${String(pct).padStart(3)}% ` +
    `${mib(done)}/${mib(total)} MiB`;
}

let path = positionals[0];
if (path === undefined) {
  path = await Deno.makeTempFile({ prefix: "blob-roundtrip-" });
  const data = new Uint8Array(Number(values.size));
  for (let at = 0; at < data.length; at += 65536) {
    crypto.getRandomValues(data.subarray(at, at + 65536));
  }
  await Deno.writeFile(path, data);
}

const encoder = new TextEncoder();
await using client = connect({ address: values.address, namespace: values.namespace });
try {
  const [local, size] = await digestOf((await Deno.open(path)).readable);
  console.log(`file     ${path} (${size} bytes)`);
  console.log(`digest   ${local}`);
  // Hold the blob with a lease while we work; deleting the lease lets GC collect it.
  await using lease = await client.leases.create({ expiresInMs: 3_600_000 });
  const written = await client.withLease(lease).content.writeFile(`roundtrip-${local}`, path, {
    expected: local,
    onProgress: (p) => Deno.stderr.writeSync(encoder.encode(bar(p.offset, p.total))),
  });
  Deno.stderr.writeSync(encoder.encode("\n"));
  const how = written.existed ? "already there" : `resumed from ${written.resumedFrom}`;
  console.log(`written  ${written.digest} (${how})`);
  const [remote, remoteSize] = await digestOf(client.content.read(written.digest));
  console.log(`read     ${remote} (${remoteSize} bytes)`);
  const match = remote === local && remoteSize === size;
  console.log(`match    ${match ? "yes" : "NO"}`);
  if (!match) Deno.exitCode = 1;
} catch (err) {
  console.error(`\nblob-roundtrip: ${err instanceof Error ? err.message : err}`);
  Deno.exitCode = 1;
} finally {
  if (positionals[0] === undefined) await Deno.remove(path);
}
