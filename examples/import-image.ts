/**
 * Import an OCI image-layout archive like `ctr images import`, then print the image name
 * and its layers (digest, size, chain ID).
 *
 * ```sh
 * deno run -A examples/import-image.ts --address /run/containerd-ts/containerd-ts.sock ./testbox.tar
 * deno run -A examples/import-image.ts -a /tmp/x.sock -n build --snapshotter native ./img.tar
 * ```
 * Output: `image <name> <target digest>`, then one `layer <i> <digest> <size> <chainID>` line
 * per layer. Exit status 1 on error (docker-save archives are refused).
 * @module
 */
import { parseArgs } from "node:util";
import { connect, importArchive } from "../client/mod.ts";

const { values, positionals } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    namespace: { type: "string", short: "n", default: "default" },
    snapshotter: { type: "string" },
    "no-unpack": { type: "boolean", default: false },
  },
  allowPositionals: true,
});

const file = positionals[0];
if (!file) {
  console.error("usage: import-image.ts [--address SOCK] [-n NS] [--snapshotter SN] FILE.tar");
  Deno.exit(2);
}

try {
  await using client = connect({ address: values.address, namespace: values.namespace });
  const images = await importArchive(client, file, {
    unpack: !values["no-unpack"],
    ...(values.snapshotter ? { snapshotter: values.snapshotter } : {}),
    onProgress: (p) => console.error(`${p.stage} ${p.digest ?? ""} ${p.name ?? p.chainID ?? ""}`),
  });
  for (const img of images) {
    console.log(`image ${img.name} ${img.target.digest}`);
    img.layers.forEach((l, i) => {
      console.log(`layer ${i} ${l.digest} ${l.size} ${img.chainIDs[i]}`);
    });
  }
} catch (err) {
  console.error(`import-image: ${err instanceof Error ? err.message : err}`);
  Deno.exit(1);
}
