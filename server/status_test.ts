import assert from "node:assert/strict";
import { formatDuration, processUptime, renderStatus, type StatusReport } from "./status.ts";
import { runLauncher, startDaemon } from "../tests/harness.ts";

Deno.test("processUptime reads starttime (field 22) past a comm with spaces and parens", () => {
  // 20 fields after the comm: state (3) ... starttime (22) is the 20th.
  const after = ["S", ...Array.from({ length: 18 }, (_, i) => String(i + 4)), "2500", "0", "0"];
  const stat = `123 (deno (a) b) ${after.join(" ")}`;
  assert.equal(processUptime(stat, "125.50 9999.00\n"), 100.5);
  assert.equal(processUptime("garbage", "1"), undefined);
  assert.equal(processUptime(stat, "x"), undefined);
});

Deno.test("formatDuration drops leading zero units", () => {
  assert.equal(formatDuration(5.9), "5s");
  assert.equal(formatDuration(65), "1m 5s");
  assert.equal(formatDuration(3600), "1h 0m 0s");
  assert.equal(formatDuration(90061), "1d 1h 1m 1s");
});

const serving: StatusReport = {
  address: "/run/x.sock",
  health: "SERVING",
  version: { version: "0.1.0", revision: "abc" },
  server: { uuid: "u-u-i-d", pid: 7, pidns: 1n, deprecations: [] },
  uptime: { seconds: 61, source: "/proc/7/stat" },
  plugins: [
    {
      type: "io.containerd.grpc.v1",
      id: "version",
      uri: "io.containerd.grpc.v1.version",
      requires: [],
      platforms: [],
      exports: {},
      capabilities: [],
      status: "ok",
    },
    {
      type: "io.containerd.snapshotter.v1",
      id: "zfs",
      uri: "io.containerd.snapshotter.v1.zfs",
      requires: [],
      platforms: [],
      exports: {},
      capabilities: [],
      status: "skip",
      error: { code: 2, message: "path /var/lib/x must be a zfs filesystem: skip plugin" },
    },
    {
      type: "io.containerd.internal.v1",
      id: "broken",
      uri: "io.containerd.internal.v1.broken",
      requires: [],
      platforms: [],
      exports: {},
      capabilities: [],
      status: "error",
      error: { code: 2, message: "first line\nsecond line" },
    },
  ],
};

Deno.test("renderStatus: facts, plugin table, full reasons, how to get init times", () => {
  const text = renderStatus(serving);
  assert.equal(text.split("\n")[0], "containerd-ts status: serving");
  assert.match(text, /^ {2}version +0\.1\.0 \(revision abc\)$/m);
  assert.match(text, /^ {2}uuid +u-u-i-d$/m);
  assert.match(text, /^ {2}pid +7$/m);
  assert.match(text, /^ {2}uptime +1m 1s \(from \/proc\/7\/stat\)$/m);
  assert.match(text, /^ {2}plugins +3: 1 ok, 1 skip, 1 error$/m);
  assert.match(text, /^TYPE +ID +STATUS +INIT$/m);
  assert.match(text, /^io\.containerd\.grpc\.v1 +version +ok +-$/m);
  assert.match(
    text,
    /^io\.containerd\.snapshotter\.v1\.zfs: skip: path \/var\/lib\/x must be a zfs filesystem: skip plugin$/m,
  );
  assert.match(text, /^io\.containerd\.internal\.v1\.broken: error: first line\n {4}second line$/m);
  assert.match(text, /init times: shown only through the debug endpoint; pass --debug-address/);
});

Deno.test("renderStatus: init times from /debug/vars, unknown uptime, debug errors", () => {
  const withDebug = renderStatus({
    ...serving,
    uptime: { reason: "unknown (daemon pid 7 is in another pid namespace)" },
    initMs: new Map([["io.containerd.grpc.v1.version", 1.234], ["io.containerd.grpc.v1.x", 12]]),
    debugAddress: "/run/d.sock",
  });
  assert.match(withDebug, /^io\.containerd\.grpc\.v1 +version +ok +1\.23 ms$/m);
  assert.match(withDebug, /^ {2}uptime +unknown \(daemon pid 7 is in another pid namespace\)$/m);
  assert.doesNotMatch(withDebug, /init times:/);
  const broken = renderStatus({ ...serving, debugAddress: "/run/d.sock", debugError: "ENOENT" });
  assert.match(broken, /^init times: debug endpoint \/run\/d\.sock: ENOENT$/m);
});

Deno.test("renderStatus: one line when not reachable or not serving", () => {
  assert.equal(
    renderStatus({
      address: "/x.sock",
      health: "UNREACHABLE",
      unreachable: "connect to /x.sock: no such socket",
    }),
    "containerd-ts status: not reachable: connect to /x.sock: no such socket\n",
  );
  assert.equal(
    renderStatus({ address: "/x.sock", health: "UNREACHABLE", unreachable: "timed out" }),
    "containerd-ts status: not reachable at /x.sock: timed out\n",
  );
  assert.equal(
    renderStatus({ address: "/x.sock", health: "NOT_SERVING" }),
    "containerd-ts status: not serving (NOT_SERVING) at /x.sock\n",
  );
});

const PLUGINS = `export const plugins = [{
  type: { name: "io.containerd.snapshotter.v1" },
  id: "status-skip",
  init: () => {
    const e = new Error("status test filesystem missing: skip plugin");
    e.name = "SkipPluginError";
    throw e;
  },
}, {
  type: { name: "io.containerd.internal.v1" },
  id: "status-broken",
  init: () => { throw new Error("status test failure, in full detail"); },
}];
`;

Deno.test("containerd-ts status against the booted daemon", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cts-status-" });
  await Deno.mkdir(`${dir}/plugins`);
  await Deno.writeTextFile(`${dir}/plugins/p.ts`, PLUGINS);
  const debug = `${dir}/debug.sock`;
  const daemon = await startDaemon({
    dir,
    config: `version = 2\nplugin_dir = "${dir}/plugins"\n[debug]\n  address = "${debug}"\n`,
  });
  try {
    await t.step("-a only: serving, identity, /proc uptime, plugins, no init times", async () => {
      const { code, stdout, stderr } = await runLauncher(["status", "-a", daemon.address]);
      assert.equal(code, 0, stderr);
      assert.equal(stdout.split("\n")[0], "containerd-ts status: serving");
      assert.match(stdout, /^ {2}version +\d+\.\d+\.\d+ \(revision .+\)$/m);
      assert.match(stdout, /^ {2}uuid +[0-9a-f-]{36}$/m);
      const pid = Number(/^ {2}pid +(\d+)$/m.exec(stdout)?.[1]);
      assert.ok(pid > 0);
      assert.match(
        stdout,
        new RegExp(`^ {2}uptime +(\\d+[dhms] ?)+ \\(from /proc/${pid}/stat\\)$`, "m"),
      );
      assert.match(stdout, /^io\.containerd\.grpc\.v1 +version +ok +-$/m);
      assert.match(stdout, /^io\.containerd\.snapshotter\.v1 +status-skip +skip +-$/m);
      assert.match(stdout, /^io\.containerd\.internal\.v1 +status-broken +error +-$/m);
      assert.match(
        stdout,
        /^io\.containerd\.snapshotter\.v1\.status-skip: skip: status test filesystem missing: skip plugin$/m,
      );
      assert.match(
        stdout,
        /^io\.containerd\.internal\.v1\.status-broken: error: status test failure, in full detail$/m,
      );
      assert.match(stdout, /^init times: shown only through the debug endpoint/m);
    });

    await t.step("--debug-address: init times and uptime from /debug/vars", async () => {
      const { code, stdout, stderr } = await runLauncher([
        "status",
        "--address",
        daemon.address,
        "--debug-address",
        debug,
      ]);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^ {2}uptime +\d+s \(from \/debug\/vars\)$/m);
      assert.match(stdout, /^io\.containerd\.grpc\.v1 +version +ok +\d+\.\d+ ms$/m);
      assert.match(stdout, /^io\.containerd\.internal\.v1 +status-broken +error +\d+\.\d+ ms$/m);
      assert.doesNotMatch(stdout, /init times:/);
    });

    await t.step("-c: address and debug address from the config file", async () => {
      const config = `${dir}/client.toml`;
      await Deno.writeTextFile(
        config,
        `version = 2\n[grpc]\n  address = "${daemon.address}"\n[debug]\n  address = "${debug}"\n`,
      );
      const { code, stdout, stderr } = await runLauncher(["status", "-c", config]);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^ {2}address +.*containerd-ts\.sock$/m);
      assert.match(stdout, /^io\.containerd\.grpc\.v1 +version +ok +\d+\.\d+ ms$/m);
    });
  } finally {
    await daemon.stop();
  }
  await t.step("not reachable: one line on stderr, status 1", async () => {
    const { code, stdout, stderr } = await runLauncher(["status", "-a", daemon.address]);
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      `containerd-ts status: not reachable: connect to ${daemon.address}: no such socket\n`,
    );
  });
  await t.step("a bad flag is a usage error", async () => {
    const { code, stderr } = await runLauncher(["status", "--nope"]);
    assert.equal(code, 2);
    assert.match(stderr, /unknown flag --nope/);
  });
  await Deno.remove(dir, { recursive: true });
});
