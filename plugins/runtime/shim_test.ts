import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeleteResponseSchema } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import { silentLogger } from "../../server/log.ts";
import { createBundle } from "./bundle.ts";
import { resolveShimBinary, runShimDelete, runShimStart, type ShimCommand } from "./shim.ts";

/** A fake shim that records how it was run and answers like the runc shim. */
const FAKE_SHIM = `#!/bin/sh
rec="$(dirname "$0")/record"
printf '%s\\n' "$@" > "$rec.args"
pwd > "$rec.cwd"
printf '%s %s\\n' "$TTRPC_ADDRESS" "$GOMAXPROCS" > "$rec.env"
cat > "$rec.stdin"
for last; do :; done
case "$last" in
  start) [ -f "$(dirname "$0")/fail" ] && { echo "boom from shim" >&2; exit 3; }
         echo "unix:///run/fake/shim.sock" ;;
  delete) cat "$(dirname "$0")/delete-response" ;;
esac
`;

async function setup() {
  const dir = await Deno.makeTempDir();
  const binary = `${dir}/bin/containerd-shim-fake-v9`;
  await Deno.mkdir(`${dir}/bin`);
  await Deno.writeTextFile(binary, FAKE_SHIM, { mode: 0o755 });
  const bundle = await createBundle(
    { state: `${dir}/state`, root: `${dir}/root` },
    { namespace: "ns1", id: "c1" },
    new TextEncoder().encode("{}"),
  );
  const command: ShimCommand = {
    binary,
    bundle,
    grpcAddress: "/run/x/containerd.sock",
    ttrpcAddress: "/run/x/containerd.sock.ttrpc",
    publishBinary: "/usr/local/bin/containerd-ts",
    debug: false,
  };
  return { dir, binary, bundle, command, rec: `${dir}/bin/record` };
}

Deno.test("the shim's start action gets containerd's flags, env, cwd and options on stdin", async () => {
  const { dir, binary, bundle, command, rec } = await setup();
  try {
    const options = {
      typeUrl: "containerd.runc.v1.Options",
      value: new Uint8Array([0x3a, 1, 0x78]),
    };
    const address = await runShimStart(command, options);
    assert.equal(address, "unix:///run/fake/shim.sock");
    assert.deepEqual((await Deno.readTextFile(`${rec}.args`)).trim().split("\n"), [
      "-namespace",
      "ns1",
      "-address",
      "/run/x/containerd.sock",
      "-publish-binary",
      "/usr/local/bin/containerd-ts",
      "-id",
      "c1",
      "start",
    ]);
    assert.equal((await Deno.readTextFile(`${rec}.cwd`)).trim(), bundle.path);
    assert.equal((await Deno.readTextFile(`${rec}.env`)).trim(), "/run/x/containerd.sock.ttrpc 2");
    // protobuf Any: field 1 type_url, field 2 value
    const stdin = await Deno.readFile(`${rec}.stdin`);
    assert.equal(new TextDecoder().decode(stdin.subarray(2, 2 + 26)), "containerd.runc.v1.Options");
    assert.equal(await Deno.readTextFile(`${bundle.path}/shim-binary-path`), binary);

    await runShimStart({ ...command, debug: true }, undefined);
    assert.deepEqual((await Deno.readTextFile(`${rec}.args`)).trim().split("\n").slice(-2), [
      "-debug",
      "start",
    ]);
    assert.equal((await Deno.readFile(`${rec}.stdin`)).byteLength, 0);

    await Deno.writeTextFile(`${dir}/bin/fail`, "");
    await assert.rejects(runShimStart(command, undefined), (err: Error) => {
      assert.match(err.message, /boom from shim: exit status 3/);
      assert.equal(err.name, "FailedPreconditionError");
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the shim's delete action runs with -bundle and its DeleteResponse is read", async () => {
  const { dir, bundle, command, rec } = await setup();
  try {
    const exitedAt = new Date("2026-01-02T03:04:05.678Z");
    await Deno.writeFile(
      `${dir}/bin/delete-response`,
      toBinary(
        DeleteResponseSchema,
        create(DeleteResponseSchema, {
          pid: 42,
          exitStatus: 137,
          exitedAt: timestampFromDate(exitedAt),
        }),
      ),
    );
    const exit = await runShimDelete(command, silentLogger());
    assert.deepEqual(exit, { pid: 42, exitStatus: 137, exitedAt });
    assert.deepEqual((await Deno.readTextFile(`${rec}.args`)).trim().split("\n").slice(-4), [
      "c1",
      "-bundle",
      bundle.path,
      "delete",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runtime names resolve to containerd-shim-<name>-<version> on PATH", async () => {
  const { dir, binary } = await setup();
  const path = Deno.env.get("PATH") ?? "";
  try {
    Deno.env.set("PATH", `/nonexistent:${dir}/bin`);
    assert.equal(resolveShimBinary("io.containerd.fake.v9"), binary);
    assert.equal(resolveShimBinary(binary), binary);
    assert.throws(
      () => resolveShimBinary("io.containerd.other.v1"),
      /binary not installed "containerd-shim-other-v1"/,
    );
    assert.throws(() => resolveShimBinary("plain"), /not a valid runtime name/);
  } finally {
    Deno.env.set("PATH", path);
    await Deno.remove(dir, { recursive: true });
  }
});
