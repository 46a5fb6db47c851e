/**
 * `deno task build` and what it makes: the bundle dist/bundle/ is built in a temp tree
 * laid out like the repo (bin/containerd-ts, deno.json, dist/), and that tree's launcher runs
 * it as the daemon. Real `ctr` then drives it, through a container whose exit comes back by
 * the shim running the launcher's `publish` (the path the bundle has to find from dist/).
 */
import assert from "node:assert/strict";
import {
  containersMissing,
  ctr,
  ctrMissing,
  makeTestImageTool,
  ok,
  reapNamespace,
  REPO,
  sh,
  startDaemon,
  type TestDaemon,
  uniqueNamespace,
} from "./harness.ts";

const skip = ctrMissing();
const noContainers = containersMissing();
const MAKE_TEST_IMAGE = makeTestImageTool();

/**
 * What evaluating these chunks of a split bundle imports, their static imports followed
 * through the other chunks: the Node modules (`node:*`) and the chunks.
 */
function staticClosure(dir: string, chunks: string[]): Set<string> {
  const seen = new Set<string>();
  const queue = [...chunks];
  while (queue.length > 0) {
    const chunk = queue.pop()!;
    if (seen.has(chunk)) continue;
    seen.add(chunk);
    const code = Deno.readTextFileSync(`${dir}/${chunk}`);
    // Minified static imports: `import{a as b}from"./c.js"`, `import*as n from"node:net"`.
    // `import("...")` (a dynamic import) has no `from` and a parenthesis: not matched.
    for (const m of code.matchAll(/\bimport\s*(?:[^"'()]*?\bfrom\s*)?"([^"]+)"/g)) {
      const spec = m[1]!;
      if (spec.startsWith("./")) queue.push(spec.slice(2));
      else seen.add(spec);
    }
  }
  return seen;
}

/** A temp tree with the launcher, deno.json and deno.lock, and the build's dist/. */
async function builtTree(): Promise<{ tree: string; build: { code: number; stderr: string } }> {
  const tree = await Deno.makeTempDir({ prefix: "cts-build-" });
  await Deno.mkdir(`${tree}/bin`);
  await Deno.copyFile(`${REPO}/bin/containerd-ts`, `${tree}/bin/containerd-ts`);
  await Deno.chmod(`${tree}/bin/containerd-ts`, 0o755);
  for (const file of ["deno.json", "deno.lock"]) {
    await Deno.copyFile(`${REPO}/${file}`, `${tree}/${file}`);
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${REPO}/tools/build.ts`, "--out-dir", `${tree}/dist`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { tree, build: { code: out.code, stderr: new TextDecoder().decode(out.stderr) } };
}

Deno.test({
  name: "deno task build writes a bundle the launcher runs as a daemon ctr can drive",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { tree, build } = await builtTree();
    let daemon: TestDaemon | undefined;
    const namespace = uniqueNamespace("build");
    try {
      assert.equal(build.code, 0, build.stderr);
      assert.match(build.stderr, /wrote .*\/dist\/bundle \(containerd-ts /);
      // Without Deno's denort runtime (unreachable here) there is no binary, and it says so.
      const binary = await Deno.stat(`${tree}/dist/containerd-ts`).then(() => true, () => false);
      if (!binary) assert.match(build.stderr, /no .*dist\/containerd-ts: .*DENORT_BIN/);
      const partials = [...Deno.readDirSync(`${tree}/dist`)].filter((e) => /partial/.test(e.name));
      assert.deepEqual(partials, []);
      // Split at the dynamic imports: what a boot evaluates (main.js, the plugins, the CLI and
      // the server) leaves out the Node modules only other commands, metrics and layer
      // decompression need, and node's streams (sockets, hashes), which load on first use.
      const bundleDir = `${tree}/dist/bundle`;
      const chunks = [...Deno.readDirSync(bundleDir)].map((e) => e.name);
      const named = (prefix: string) => chunks.filter((c) => c.startsWith(`${prefix}-`));
      const boot = staticClosure(bundleDir, [
        "main.js",
        ...named("mod"),
        ...named("cli"),
        ...named("server"),
      ]);
      assert.ok(boot.has("node:sqlite") && boot.has("node:path"), [...boot].join(" "));
      const unneeded = ["node:http2", "node:https", "node:module", "node:zlib", "node:url"];
      const streams = ["node:stream", "node:stream/promises", "node:net", "node:crypto"];
      for (const name of [...unneeded, ...streams]) {
        assert.ok(!boot.has(name), `${name} in the boot's chunks`);
      }
      assert.ok(staticClosure(bundleDir, named("publish")).has("node:http2"));

      // Metrics on: prom-client is CommonJS, the part of the bundle that needs `require`.
      daemon = await startDaemon({
        launcher: `${tree}/bin/containerd-ts`,
        config: `version = 2\n[metrics]\n  address = "127.0.0.1:0"\n`,
      });
      const version = await ok(ctr(daemon.address, ["version"]));
      assert.match(version.stdout, /Server:\s+Version:\s+\S+/);
      // The build stamped the commit it bundled (`.m` when the tree had changes).
      const head = await sh("git", ["-C", REPO, "rev-parse", "HEAD"]);
      const revision = head.code === 0 ? head.stdout.trim() : "unknown";
      assert.match(version.stdout, new RegExp(`Server:[^]*Revision:\\s+${revision}(\\.m)?\\n`));
      // The daemon is the bundle (or the binary), not main.ts.
      const ps = await sh("ps", ["-eo", "args"]);
      const running = ps.stdout.split("\n").find((l) => l.includes(daemon!.address)) ?? "";
      assert.match(running, binary ? /dist\/containerd-ts / : /dist\/bundle\/main\.js /);
      const metricsAddr = /metrics server serving.*address=(\S+)/.exec(daemon.log())?.[1];
      assert.ok(metricsAddr, daemon.log());
      const metrics = await (await fetch(`http://${metricsAddr}/v1/metrics`)).text();
      assert.match(metrics, /grpc_server_handled_total\{[^}]*grpc_method="Version"[^}]*\} 1/);
      assert.match(metrics, /process_resident_memory_bytes \d+/);
      const plugins = await ok(ctr(daemon.address, ["plugins", "ls"]));
      for (const id of ["content", "overlayfs", "native", "sqlite", "task"]) {
        assert.match(plugins.stdout, new RegExp(`\\s${id}\\s+\\S+\\s+ok`), plugins.stdout);
      }
      if (noContainers !== undefined || MAKE_TEST_IMAGE === undefined) {
        console.warn(`build_test: no container run (${noContainers ?? "no make-test-image"})`);
        return;
      }
      await ok(sh(MAKE_TEST_IMAGE, [`${tree}/img.tar`]), "make-test-image");
      await ok(ctr(daemon.address, ["images", "import", `${tree}/img.tar`], { namespace }));
      const image = "docker.io/library/testbox:latest";
      const run = await ok(
        ctr(daemon.address, ["run", "--rm", image, "b1", "/bin/echo", "from the bundle"], {
          namespace,
        }),
      );
      assert.equal(run.stdout.trim(), "from the bundle");
      // The exit status comes back through the shim's `publish` of the TaskExit event.
      const failed = await ctr(daemon.address, [
        "run",
        "--rm",
        image,
        "b2",
        "/bin/sh",
        "-c",
        "exit 3",
      ], {
        namespace,
      });
      assert.equal(failed.code, 3, failed.stderr);
    } finally {
      await reapNamespace(namespace, daemon);
      await daemon?.stop();
      await Deno.remove(tree, { recursive: true }).catch(() => {});
    }
  },
});
