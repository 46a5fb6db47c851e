/**
 * Import an image archive like `ctr images import` — an OCI image layout or a `docker save`
 * tar, from a file or (`-`) from stdin — then print the image names and their layers
 * (digest, size, chain ID).
 *
 * ```sh
 * deno run -A examples/import-image.ts --address /run/containerd-ts/containerd-ts.sock ./testbox.tar
 * deno run -A examples/import-image.ts -a /tmp/x.sock -n build --snapshotter native ./img.tar
 * docker save busybox | deno run -A examples/import-image.ts -a /tmp/x.sock -
 * ```
 * `--platform os/arch[/variant]`, `--all-platforms`, `--base-name NAME`, `--index-name NAME` and
 * `--no-unpack` mean what they mean to ctr. Output: `image <name> <target digest>`, then one
 * `layer <i> <digest> <size> <chainID>` line per layer, for each image. Exit status 1 on error.
 * @module
 */
import { parseArgs } from "node:util";
import { connect, importArchive } from "../client/mod.ts";

const { values, positionals } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    namespace: { type: "string", short: "n", default: "default" },
    snapshotter: { type: "string" },
    platform: { type: "string" },
    "all-platforms": { type: "boolean", default: false },
    "base-name": { type: "string" },
    "index-name": { type: "string" },
    "no-unpack": { type: "boolean", default: false },
  },
  allowPositionals: true,
});

const file = positionals[0];
if (!file) {
  console.error(
    "usage: import-image.ts [--address SOCK] [-n NS] [--snapshotter SN] [--platform P] " +
      "[--all-platforms] [--base-name NAME] [--index-name NAME] [--no-unpack] FILE.tar|-",
  );
  Deno.exit(2);
}

try {
  await using client = connect({ address: values.address, namespace: values.namespace });
  const images = await importArchive(client, file === "-" ? Deno.stdin.readable : file, {
    unpack: !values["no-unpack"],
    allPlatforms: values["all-platforms"],
    ...(values.snapshotter ? { snapshotter: values.snapshotter } : {}),
    ...(values.platform ? { platform: values.platform } : {}),
    ...(values["base-name"] ? { baseName: values["base-name"] } : {}),
    ...(values["index-name"] ? { indexName: values["index-name"] } : {}),
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
