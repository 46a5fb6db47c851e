/**
 * Boot, end to end: the real binary on temp dirs, driven by Debian's ctr and curl.
 */
import assert from "node:assert/strict";
import { ctr, ctrMissing, curlConnect, REPO, runLauncher, sh, startDaemon } from "./harness.ts";
import { connect } from "../client/mod.ts";

const skip = ctrMissing();
if (skip) console.error(`boot_test: ${skip}`);

/** A plugin_dir module: a Version service that answers after `ms`, plus failing plugins. */
function pluginModule(body: string): string {
  return `import { Version } from "file://${REPO}/proto/gen/containerd/services/version/v1/version_pb.ts";
export const plugins = [${body}];
`;
}

const slowVersion = `{
  type: { name: "io.containerd.grpc.v1" },
  id: "slow-version",
  init: () => ({
    services: [{
      service: Version,
      impl: {
        version: async () => {
          await new Promise((r) => setTimeout(r, 2500));
          return { version: "slow-1", revision: "slow" };
        },
      },
    }],
  }),
}`;

const brokenPlugins = `{
  type: { name: "io.containerd.content.v1" },
  id: "broken",
  init: () => { throw new Error("disk on fire"); },
}, {
  type: { name: "io.containerd.snapshotter.v1" },
  id: "needs-content",
  requires: [{ name: "io.containerd.content.v1" }],
  init: (ctx) => ctx.get({ name: "io.containerd.content.v1" }, "broken"),
}, {
  type: { name: "io.containerd.snapshotter.v1" },
  id: "zfs-like",
  init: () => {
    const e = new Error("zfs is not on this machine: skip plugin");
    e.name = "SkipPluginError";
    throw e;
  },
}`;

Deno.test({
  name: "ctr version answers with our version and a UUID stable across restarts",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cts-" });
    try {
      const first = await startDaemon({ dir });
      // Made when first asked for (containerd's getUUID), not by the boot.
      const uuidFile = `${first.root}/io.containerd.grpc.v1.introspection/uuid`;
      assert.equal(await Deno.stat(uuidFile).then(() => true, () => false), false);
      const v1 = await ctr(first.address, ["version"]);
      assert.equal(v1.code, 0, v1.stderr);
      const meta = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
      assert.match(v1.stdout, new RegExp(`Server:\\s+Version:\\s+${meta.version}`));
      const uuid1 = /UUID:\s+(\S+)/.exec(v1.stdout)?.[1];
      assert.match(uuid1 ?? "", /^[0-9a-f-]{36}$/);
      assert.equal(await Deno.readTextFile(uuidFile), uuid1);
      assert.equal((await first.stop()).code, 0);

      const second = await startDaemon({ dir });
      const v2 = await ctr(second.address, ["version"]);
      assert.equal(/UUID:\s+(\S+)/.exec(v2.stdout)?.[1], uuid1);
      assert.equal((await second.stop()).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "ctr plugins ls shows every plugin with ok, skip and error, and the dependency chain",
  ignore: skip !== undefined,
  async fn() {
    const pluginDir = await Deno.makeTempDir({ prefix: "cts-plugins-" });
    await Deno.writeTextFile(`${pluginDir}/broken.ts`, pluginModule(brokenPlugins));
    const daemon = await startDaemon({ config: `version = 2\nplugin_dir = "${pluginDir}"\n` });
    try {
      const ls = await ctr(daemon.address, ["plugins", "ls"]);
      assert.equal(ls.code, 0, ls.stderr);
      const rows = ls.stdout.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/));
      const status = new Map(rows.map((r) => [`${r[0]}.${r[1]}`, r.at(-1)]));
      assert.equal(status.get("io.containerd.grpc.v1.version"), "ok");
      assert.equal(status.get("io.containerd.grpc.v1.introspection"), "ok");
      assert.equal(status.get("io.containerd.grpc.v1.healthcheck"), "ok");
      assert.equal(status.get("io.containerd.content.v1.broken"), "error");
      assert.equal(status.get("io.containerd.snapshotter.v1.needs-content"), "error");
      assert.equal(status.get("io.containerd.snapshotter.v1.zfs-like"), "skip");

      const detailed = await ctr(daemon.address, ["plugins", "ls", "-d", "id==needs-content"]);
      assert.equal(detailed.code, 0, detailed.stderr);
      assert.match(
        detailed.stdout,
        /requires io\.containerd\.content\.v1\.broken: broken failed: disk on fire/,
      );
      assert.match(detailed.stdout, /io\.containerd\.content\.v1/);

      const filtered = await ctr(daemon.address, ["plugins", "ls", "type==io.containerd.grpc.v1"]);
      const types = filtered.stdout.trim().split("\n").slice(1).map((l) =>
        l.trim().split(/\s+/)[0]
      );
      assert.ok(types.length >= 3);
      assert.ok(types.every((t) => t === "io.containerd.grpc.v1"), filtered.stdout);

      assert.match(
        daemon.log(),
        /failed to load plugin.*io\.containerd\.content\.v1\.broken.*disk on fire/,
      );
    } finally {
      await daemon.stop();
      await Deno.remove(pluginDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a required plugin that fails stops boot, naming it and its cause",
  async fn() {
    const pluginDir = await Deno.makeTempDir({ prefix: "cts-plugins-" });
    await Deno.writeTextFile(`${pluginDir}/broken.ts`, pluginModule(brokenPlugins));
    const daemon = await startDaemon({
      config: `version = 2\nplugin_dir = "${pluginDir}"\n` +
        `required_plugins = ["io.containerd.content.v1.broken", "io.containerd.grpc.v1.nope"]\n`,
      waitReady: false,
    });
    const status = await daemon.exited;
    await daemon.stop();
    await Deno.remove(pluginDir, { recursive: true });
    assert.notEqual(status.code, 0);
    assert.match(daemon.log(), /io\.containerd\.content\.v1\.broken: disk on fire/);
    assert.match(daemon.log(), /io\.containerd\.grpc\.v1\.nope: not registered or disabled/);
  },
});

Deno.test({
  name: "curl gets Connect JSON from Version; an unknown method gets grpc-status 12",
  async fn() {
    const daemon = await startDaemon();
    try {
      const json = await curlConnect(
        daemon.address,
        "containerd.services.version.v1.Version/Version",
      );
      assert.equal(json.code, 0, json.stderr);
      const meta = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
      assert.equal(JSON.parse(json.stdout).version, meta.version);

      const unknown = await sh("curl", [
        "-sS",
        "-i",
        "--http2-prior-knowledge",
        "--unix-socket",
        daemon.address,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "@/dev/null",
        "http://localhost/containerd.services.nothing.v1.Nothing/Missing",
      ]);
      assert.equal(unknown.code, 0, unknown.stderr);
      assert.match(unknown.stdout, /^HTTP\/2 200/);
      assert.match(unknown.stdout, /grpc-status: 12/);
    } finally {
      await daemon.stop();
    }
  },
});

Deno.test({
  name: "metrics and debug endpoints answer",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cts-" });
    const config = `version = 2
[debug]
  address = "${dir}/debug.sock"
[metrics]
  address = "127.0.0.1:0"
`;
    const daemon = await startDaemon({ dir, config });
    try {
      const metricsAddr = /metrics server serving.*address=(\S+)/.exec(daemon.log())?.[1];
      assert.ok(metricsAddr, daemon.log());
      await curlConnect(daemon.address, "containerd.services.version.v1.Version/Version");
      const metrics = await (await fetch(`http://${metricsAddr}/v1/metrics`)).text();
      assert.match(
        metrics,
        /grpc_server_handled_total\{[^}]*grpc_service="containerd.services.version.v1.Version"[^}]*\} 1/,
      );
      assert.match(metrics, /process_resident_memory_bytes/);
      const vars = await sh("curl", [
        "-sS",
        "--unix-socket",
        `${dir}/debug.sock`,
        "http://localhost/debug/vars",
      ]);
      assert.equal(vars.code, 0, vars.stderr);
      const parsed = JSON.parse(vars.stdout);
      assert.ok(JSON.stringify(parsed).includes("io.containerd.grpc.v1.version"), vars.stdout);
      // The launcher's V8 flags reached the daemon: a young generation of 16 MiB less page
      // headers (V8's default starts at 1 MiB), under deno run or as the compiled binary.
      const young = parsed.heapSpaces.new_space;
      assert.ok(young.used + young.available >= 15 * 1024 * 1024, JSON.stringify(young));
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "SIGTERM during a slow RPC lets it finish, exits 0 and removes the socket",
  ignore: skip !== undefined,
  async fn() {
    const pluginDir = await Deno.makeTempDir({ prefix: "cts-plugins-" });
    await Deno.writeTextFile(`${pluginDir}/slow.ts`, pluginModule(slowVersion));
    const daemon = await startDaemon({
      config: `version = 2\nplugin_dir = "${pluginDir}"\n` +
        `disabled_plugins = ["io.containerd.grpc.v1.version"]\n`,
    });
    try {
      // One RPC (ctr version makes two, and no new RPC is accepted once stopping begins).
      const call = curlConnect(daemon.address, "containerd.services.version.v1.Version/Version");
      await new Promise((r) => setTimeout(r, 800));
      daemon.process.kill("SIGTERM");
      const answer = await call;
      assert.equal(answer.code, 0, answer.stderr);
      assert.equal(JSON.parse(answer.stdout).version, "slow-1");
      const status = await daemon.exited;
      assert.equal(status.code, 0, daemon.log());
      await assert.rejects(Deno.stat(daemon.address), Deno.errors.NotFound);
    } finally {
      await daemon.stop();
      await Deno.remove(pluginDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a bind mount left under tmpmounts is unmounted at boot",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cts-" });
    const leftover = `${dir}/root/tmpmounts/containerd-mount123`;
    const source = `${dir}/src`;
    await Deno.mkdir(leftover, { recursive: true });
    await Deno.mkdir(source);
    await Deno.writeTextFile(`${source}/marker`, "x");
    const mounted = await sh("mount", ["--bind", source, leftover]);
    assert.equal(mounted.code, 0, mounted.stderr);
    try {
      const daemon = await startDaemon({ dir });
      await daemon.stop();
      const table = await Deno.readTextFile("/proc/self/mountinfo");
      assert.ok(!table.includes(leftover), "leftover mount still present");
      await assert.rejects(Deno.stat(leftover), Deno.errors.NotFound);
    } finally {
      await sh("umount", [leftover]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "a live daemon's socket is never taken over",
  async fn() {
    const daemon = await startDaemon();
    try {
      const second = await runLauncher([
        "--root",
        `${daemon.dir}/root2`,
        "--state",
        `${daemon.dir}/state2`,
        "--address",
        daemon.address,
      ]);
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, new RegExp(daemon.address.replaceAll(".", "\\.")));
      const health = await curlConnect(daemon.address, "grpc.health.v1.Health/Check");
      assert.equal(JSON.parse(health.stdout).status, "SERVING");
    } finally {
      await daemon.stop();
    }
  },
});

const badConfigs: [string, string, RegExp][] = [
  ["syntax error", `version = 2\nroot = "/x\n`, /config\.toml:2:\d+/],
  ["wrong type", `version = 2\n[grpc]\n  uid = "root"\n`, /grpc\.uid.*integer/],
  ["version 1", `version = 1\n`, /version/],
  ["bad log level", `version = 2\n[debug]\n  level = "loud"\n`, /level/],
];

Deno.test("every bad config exits non-zero with one clear line", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cts-" });
  try {
    for (const [name, text, pattern] of badConfigs) {
      await t.step(name, async () => {
        await Deno.writeTextFile(`${dir}/config.toml`, text);
        const out = await runLauncher([
          "--config",
          `${dir}/config.toml`,
          "--root",
          `${dir}/root`,
          "--state",
          `${dir}/state`,
          "--address",
          `${dir}/s.sock`,
        ]);
        assert.notEqual(out.code, 0);
        const lines = out.stderr.trim().split("\n");
        assert.equal(lines.length, 1, out.stderr);
        assert.match(lines[0] ?? "", pattern);
        assert.doesNotMatch(out.stderr, /\n\s+at /);
      });
    }
    await t.step("missing --config file", async () => {
      const out = await runLauncher(["--config", `${dir}/absent.toml`]);
      assert.notEqual(out.code, 0);
      assert.match(out.stderr.trim(), /absent\.toml/);
      assert.equal(out.stderr.trim().split("\n").length, 1);
    });
    await t.step("unknown flag", async () => {
      const out = await runLauncher(["--bogus"]);
      assert.equal(out.code, 2);
      assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    });
    await t.step("root equals state", async () => {
      const out = await runLauncher(["--root", `${dir}/same`, "--state", `${dir}/same`]);
      assert.notEqual(out.code, 0);
      assert.match(out.stderr, /differ|different/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a second SIGTERM exits at once; an immediate echo of the first does not",
  async fn() {
    const pluginDir = await Deno.makeTempDir({ prefix: "cts-plugins-" });
    await Deno.writeTextFile(`${pluginDir}/slow.ts`, pluginModule(slowVersion));
    const config = `version = 2\nplugin_dir = "${pluginDir}"\n` +
      `disabled_plugins = ["io.containerd.grpc.v1.version"]\n`;
    const slowCall = (address: string) =>
      curlConnect(address, "containerd.services.version.v1.Version/Version");
    try {
      const echoed = await startDaemon({ config });
      const call1 = slowCall(echoed.address);
      await new Promise((r) => setTimeout(r, 500));
      echoed.process.kill("SIGTERM");
      echoed.process.kill("SIGTERM");
      assert.equal((await echoed.exited).code, 0, echoed.log());
      assert.equal(JSON.parse((await call1).stdout).version, "slow-1");
      await echoed.stop();

      const forced = await startDaemon({ config });
      const call2 = slowCall(forced.address);
      await new Promise((r) => setTimeout(r, 300));
      forced.process.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 400));
      forced.process.kill("SIGTERM");
      const started = performance.now();
      assert.equal((await forced.exited).code, 1);
      assert.ok(performance.now() - started < 1500, "forced exit did not wait for the slow RPC");
      await call2;
      assert.match(forced.log(), /second signal/);
      await forced.stop();
    } finally {
      await Deno.remove(pluginDir, { recursive: true });
    }
  },
});

Deno.test("health answers SERVING for the daemon and mounted services, NotFound for others", async () => {
  const daemon = await startDaemon();
  const check = (service: string) =>
    curlConnect(daemon.address, "grpc.health.v1.Health/Check", { service });
  try {
    assert.equal(JSON.parse((await check("")).stdout).status, "SERVING");
    const version = await check("containerd.services.version.v1.Version");
    assert.equal(JSON.parse(version.stdout).status, "SERVING");
    const unknown = JSON.parse((await check("no.such.Service")).stdout);
    assert.equal(unknown.code, "not_found");
    assert.match(unknown.message, /unknown service no\.such\.Service/);
  } finally {
    await daemon.stop();
  }
});

Deno.test("SIGUSR1 writes a diagnostic dump and opens no debugger", async () => {
  const daemon = await startDaemon();
  try {
    daemon.process.kill("SIGUSR1");
    for (let i = 0; i < 50 && !daemon.log().includes("SIGUSR1 diagnostic dump"); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(daemon.log(), /SIGUSR1 diagnostic dump[\s\S]*io\.containerd\.grpc\.v1\.version/);
    const probe = await sh("curl", ["-s", "-m", "2", "http://127.0.0.1:9229/json/list"]);
    assert.notEqual(probe.code, 0, `a debugger answered: ${probe.stdout}`);
    assert.doesNotMatch(daemon.log(), /Debugger listening/);
  } finally {
    await daemon.stop();
  }
});

Deno.test("grpc.tcp_address serves the same API over TCP", async () => {
  const daemon = await startDaemon({
    config: `version = 2\n[grpc]\n  tcp_address = "127.0.0.1:0"\n`,
  });
  try {
    const bound = /serving\.\.\." address=(127\.0\.0\.1:\d+)/.exec(daemon.log())?.[1];
    assert.ok(bound, daemon.log());
    const json = await curlConnect(
      `tcp://${bound}`,
      "containerd.services.version.v1.Version/Version",
    );
    assert.equal(json.code, 0, json.stderr);
    assert.ok(JSON.parse(json.stdout).version);
    // gRPC over the same listener: the TS client, several calls on one connection.
    await using client = connect({ address: bound, timeoutMs: 10_000 });
    const calls = await Promise.all(Array.from({ length: 20 }, () => client.version.get()));
    assert.ok(calls.every((v) => v.version === JSON.parse(json.stdout).version));
    await client.namespaces.create("over-tcp");
    assert.ok((await client.namespaces.list()).some((ns) => ns.name === "over-tcp"));
  } finally {
    await daemon.stop();
  }
});
