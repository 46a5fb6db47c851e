/**
 * The scripts in examples/ run as documented (`deno run -A examples/x.ts --address SOCK`)
 * against a booted daemon, and print what they promise. `deno task examples` runs this file.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connect } from "../client/mod.ts";
import { REPO, startDaemon } from "./harness.ts";

/** A plugin_dir module: one plugin that skips itself and one that fails. */
const PLUGINS = `export const plugins = [{
  type: { name: "io.containerd.snapshotter.v1" },
  id: "example-skip",
  init: () => {
    const e = new Error("example filesystem missing: skip plugin");
    e.name = "SkipPluginError";
    throw e;
  },
}, {
  type: { name: "io.containerd.internal.v1" },
  id: "example-broken",
  init: () => { throw new Error("example disk on fire"); },
}];
`;

function example(
  name: string,
  args: string[],
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `examples/${name}`, ...args],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function run(name: string, args: string[]) {
  const out = await example(name, args).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("examples against the booted daemon", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cts-examples-" });
  await Deno.mkdir(`${dir}/plugins`);
  await Deno.writeTextFile(`${dir}/plugins/examples.ts`, PLUGINS);
  const daemon = await startDaemon({
    dir,
    config: `version = 2\nplugin_dir = "${dir}/plugins"\n`,
  });
  const client = connect({ address: daemon.address });
  try {
    const plugins = await client.introspection.plugins();
    const serves = (id: string) =>
      plugins.some((p) => p.uri === `io.containerd.grpc.v1.${id}` && p.status === "ok");

    await t.step(
      "list-plugins prints type, id, status and init error for every plugin",
      async () => {
        const { code, stdout, stderr } = await run("list-plugins.ts", [
          "--address",
          daemon.address,
        ]);
        assert.equal(code, 0, stderr);
        const lines = stdout.trimEnd().split("\n");
        assert.match(lines[0] ?? "", /^TYPE\s+ID\s+STATUS\s+INIT ERROR$/);
        assert.equal(lines.length, plugins.length + 1);
        for (const p of plugins) {
          const row = lines.find((l) =>
            l.split(/\s+/).slice(0, 2).join(" ") === `${p.type} ${p.id}`
          );
          assert.ok(row, `no row for ${p.uri}`);
          assert.equal(row.split(/\s+/)[2], p.status);
        }
        assert.match(
          stdout,
          /io\.containerd\.snapshotter\.v1\s+example-skip\s+skip\s+example filesystem missing: skip plugin/,
        );
        assert.match(
          stdout,
          /io\.containerd\.internal\.v1\s+example-broken\s+error\s+example disk on fire/,
        );
        const filtered = await run("list-plugins.ts", [
          "-a",
          daemon.address,
          "--filter",
          "type==io.containerd.grpc.v1",
        ]);
        assert.ok(
          filtered.stdout.trimEnd().split("\n").slice(1).every((l) =>
            l.startsWith("io.containerd.grpc.v1 ")
          ),
        );
      },
    );

    await t.step("list-plugins: one line and status 1 when the daemon is not there", async () => {
      const missing = `${dir}/missing.sock`;
      const { code, stdout, stderr } = await run("list-plugins.ts", ["--address", missing]);
      assert.equal(code, 1);
      assert.equal(stdout, "");
      assert.equal(stderr, `list-plugins: connect to ${missing}: no such socket\n`);
    });

    await t.step({
      name: "blob-roundtrip pushes a file with a progress bar and reads back the same digest",
      ignore: !(serves("content") && serves("leases")),
      fn: async () => {
        const data = new Uint8Array(5 * 1024 * 1024 + 3);
        for (let at = 0; at < data.length; at += 65536) {
          crypto.getRandomValues(data.subarray(at, at + 65536));
        }
        const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
        const path = `${dir}/blob.bin`;
        await Deno.writeFile(path, data);
        const { code, stdout, stderr } = await run("blob-roundtrip.ts", [
          "--address",
          daemon.address,
          path,
        ]);
        assert.equal(code, 0, stderr);
        assert.match(stdout, new RegExp(`^file +${path} \\(${data.length} bytes\\)$`, "m"));
        assert.match(stdout, new RegExp(`^digest +${digest}$`, "m"));
        assert.match(stdout, new RegExp(`^written +${digest} \\(resumed from 0\\)$`, "m"));
        assert.match(stdout, new RegExp(`^read +${digest} \\(${data.length} bytes\\)$`, "m"));
        assert.match(stdout, /^match +yes$/m);
        assert.match(stderr, /\[#{30}\] 100% 5\.0\/5\.0 MiB/);
        assert.match(stderr, / 0% 0\.0\/5\.0 MiB/);
        // Without a file it makes up one.
        const generated = await run("blob-roundtrip.ts", [
          "-a",
          daemon.address,
          "--size",
          "100000",
        ]);
        assert.equal(generated.code, 0, generated.stderr);
        assert.match(generated.stdout, /^match +yes$/m);
      },
    });
    if (!(serves("content") && serves("leases"))) {
      console.log(
        "examples_test: SKIP blob-roundtrip: content or leases not served by this daemon",
      );
    }

    await t.step({
      name: "watch-events prints a namespace creation as it happens",
      ignore: !(serves("events") && serves("namespaces")),
      fn: async () => {
        const child = example("watch-events.ts", [
          "--address",
          daemon.address,
          "--filter",
          'topic=="/namespaces/create"',
          "--count",
          "1",
        ]);
        const decoder = new TextDecoder();
        let err = "";
        const stderrDone = (async () => {
          for await (const chunk of child.stderr) err += decoder.decode(chunk, { stream: true });
        })();
        for (let i = 0; i < 600 && !err.includes("ready"); i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.match(err, /ready/);
        const name = `ex-${crypto.randomUUID().slice(0, 8)}`;
        // The subscription may reach the daemon just after "ready": create until seen.
        const exited = child.status;
        let n = 0;
        let status: Deno.CommandStatus | undefined;
        while (!status) {
          await client.namespaces.create(`${name}-${n++}`);
          status = await Promise.race([
            exited,
            new Promise<undefined>((r) => setTimeout(() => r(undefined), 200)),
          ]);
          assert.ok(n < 50, "watch-events saw no event");
        }
        const stdout = await new Response(child.stdout).text();
        await stderrDone;
        assert.equal(status.code, 0, err);
        assert.match(
          stdout,
          new RegExp(
            `^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z default /namespaces/create containerd\\.events\\.NamespaceCreate \\{"name":"${name}-\\d+"`,
          ),
        );
        assert.equal(stdout.trimEnd().split("\n").length, 1);
        for (let i = 0; i < n; i++) await client.namespaces.delete(`${name}-${i}`);
      },
    });
    if (!(serves("events") && serves("namespaces"))) {
      console.log(
        "examples_test: SKIP watch-events: events or namespaces not served by this daemon",
      );
    }
  } finally {
    await client.close();
    await daemon.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("import-image imports an OCI archive and prints its layers", async (t) => {
  const { makeTestImageTool, sh } = await import("./harness.ts");
  const tool = makeTestImageTool();
  if (!tool || Deno.uid() !== 0) {
    console.log("examples_test: SKIP import-image: make-test-image missing or not root");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "cts-examples-import-" });
  const daemon = await startDaemon();
  const client = connect({ address: daemon.address, namespace: "ex" });
  try {
    const made = await sh(tool, ["--layers", "2", "--json", `${dir}/img.tar`]);
    assert.equal(made.code, 0, made.stderr);
    await t.step("prints the image name and every layer", async () => {
      const { code, stdout, stderr } = await run("import-image.ts", [
        "--address",
        daemon.address,
        "-n",
        "ex",
        `${dir}/img.tar`,
      ]);
      assert.equal(code, 0, stderr);
      const image = await client.images.get("docker.io/library/testbox:latest");
      const lines = stdout.trimEnd().split("\n");
      assert.equal(lines[0], `image docker.io/library/testbox:latest ${image.target.digest}`);
      assert.equal(lines.length, 3);
      const blobs = new Map((await client.content.list()).map((b) => [b.digest, b]));
      const snapshots = new Set((await client.snapshots.list()).map((s) => s.name));
      for (const [i, line] of lines.slice(1).entries()) {
        const [word, index, digest, size, chainID] = line.split(" ");
        assert.equal(word, "layer");
        assert.equal(index, String(i));
        assert.equal(String(blobs.get(digest ?? "")?.size), size);
        assert.ok(snapshots.has(chainID ?? ""), `no snapshot ${chainID}`);
      }
    });
    await t.step("imports a docker-save archive into another namespace", async () => {
      const made = await sh(tool, ["--format", "docker", `${dir}/docker.tar`]);
      assert.equal(made.code, 0, made.stderr);
      const { code, stdout, stderr } = await run("import-image.ts", [
        "--address",
        daemon.address,
        "--namespace",
        "exdocker",
        `${dir}/docker.tar`,
      ]);
      assert.equal(code, 0, stderr);
      const image = await client.withNamespace("exdocker").images.get(
        "docker.io/library/testbox:latest",
      );
      const first = stdout.trimEnd().split("\n")[0];
      assert.equal(first, `image docker.io/library/testbox:latest ${image.target.digest}`);
      assert.equal(image.target.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
    });
  } finally {
    await client.close();
    await daemon.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "run-container runs a command of an imported image and prints its status and output",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const {
      containersMissing,
      makeTestImageTool,
      reapNamespace,
      sh,
      shimsOf,
      uniqueNamespace,
      waitFor,
    } = await import("./harness.ts");
    const skip = containersMissing();
    const tool = makeTestImageTool();
    if (skip !== undefined || tool === undefined) {
      console.log(`examples_test: run-container: ${skip}`);
      return;
    }
    // runc keeps state under /run/containerd/runc/<ns>, shared machine-wide: a unique namespace
    const ns = uniqueNamespace("ex-run");
    const dir = await Deno.makeTempDir({ prefix: "cts-examples-run-" });
    const daemon = await startDaemon();
    const client = connect({ address: daemon.address, namespace: ns });
    try {
      const made = await sh(tool, [`${dir}/img.tar`]);
      assert.equal(made.code, 0, made.stderr);
      const imported = await run("import-image.ts", [
        "-a",
        daemon.address,
        "-n",
        ns,
        `${dir}/img.tar`,
      ]);
      assert.equal(imported.code, 0, imported.stderr);
      const snapshotsBefore = (await client.snapshots.list()).map((s) => s.name).sort();

      await t.step("exit status 3 and the output; nothing left afterwards", async () => {
        const { code, stdout, stderr } = await run("run-container.ts", [
          "--address",
          daemon.address,
          "-n",
          ns,
          "--id",
          "ex1",
          "--log",
          `${dir}/ex1.log`,
          "docker.io/library/testbox:latest",
          "--",
          "/bin/sh",
          "-c",
          "echo out; exit 3",
        ]);
        assert.equal(code, 0, stderr);
        assert.equal(stdout, "exit status 3\noutput:\nout\n");
        assert.equal(await Deno.readTextFile(`${dir}/ex1.log`), "out\n");
        assert.deepEqual(await client.tasks.list(), []);
        assert.deepEqual(await client.containers.list(), []);
        assert.deepEqual(
          (await client.snapshots.list()).map((s) => s.name).sort(),
          snapshotsBefore,
        );
        await waitFor("the shims to exit", async () => (await shimsOf(ns)).length === 0);
      });

      await t.step("an image that is not there: one line, status 1, nothing made", async () => {
        const { code, stdout, stderr } = await run("run-container.ts", [
          "-a",
          daemon.address,
          "-n",
          ns,
          "example.com/nope:1",
          "--",
          "/bin/true",
        ]);
        assert.equal(code, 1);
        assert.equal(stdout, "");
        assert.match(stderr, /^run-container: .*example\.com\/nope:1.*not found\n$/);
        assert.deepEqual(await client.containers.list(), []);
      });
    } finally {
      await client.close();
      await reapNamespace(ns, daemon);
      await daemon.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
