/**
 * Print the daemon's plugins as a table: type, id, status and init error (ctr plugins ls).
 *
 * ```sh
 * deno run -A examples/list-plugins.ts --address /run/containerd-ts/containerd-ts.sock
 * deno run -A examples/list-plugins.ts -a /tmp/x.sock --filter type==io.containerd.grpc.v1
 * ```
 * Exit status 0, or 1 with one line on stderr when the daemon cannot be asked.
 * @module
 */
import { parseArgs } from "node:util";
import { connect } from "../client/mod.ts";

const { values } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    filter: { type: "string", multiple: true },
  },
});

await using client = connect({ address: values.address, timeoutMs: 5000 });
try {
  const plugins = await client.introspection.plugins({ filters: values.filter ?? [] });
  const rows = [
    ["TYPE", "ID", "STATUS", "INIT ERROR"],
    ...plugins.map((p) => [p.type, p.id, p.status, p.error?.message ?? ""]),
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) {
    console.log(
      row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join("  ").trimEnd(),
    );
  }
} catch (err) {
  console.error(`list-plugins: ${err instanceof Error ? err.message : err}`);
  Deno.exitCode = 1;
}
