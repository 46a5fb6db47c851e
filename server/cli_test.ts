import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "smol-toml";
import meta from "../deno.json" with { type: "json" };
import { type CliIO, main } from "./cli.ts";
import { pluginType, type Registration } from "./plugin.ts";
import { configSchema, field } from "./schema.ts";
import { REVISION, VERSION } from "./version.ts";

const GC_URI = "io.containerd.gc.v1.scheduler";

function registrations(): Registration[] {
  return [
    {
      type: pluginType("io.containerd.gc.v1"),
      id: "scheduler",
      config: configSchema({
        pause_threshold: field.number(0.02),
        schedule_delay: field.duration("0s"),
      }),
      init: () => ({}),
    } as Registration,
    { type: pluginType("io.containerd.grpc.v1"), id: "version", init: () => ({}) },
  ];
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[], io: Partial<CliIO> = {}): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const dir = await Deno.makeTempDir({ prefix: "cli_test_env_" });
  try {
    const code = await main(args, {
      stdout: (s) => stdout += s,
      stderr: (s) => stderr += s,
      env: { uid: 0, defaultConfigPath: join(dir, "absent.toml") },
      registrations: registrations(),
      ...io,
    });
    return { code, stdout, stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertUserError(result: Run, message: RegExp): void {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, "");
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.match(lines[0]!, /^containerd-ts: /);
  assert.match(lines[0]!, message);
  assert.ok(!result.stderr.includes("    at "), "no stack trace");
}

Deno.test("--version and -v print version and revision", async () => {
  assert.equal(VERSION, meta.version);
  for (const flag of ["--version", "-v"]) {
    const result = await run([flag]);
    assert.equal(result.code, 0);
    assert.equal(result.stdout, `containerd-ts ${meta.version} ${REVISION}\n`);
    assert.equal(result.stderr, "");
  }
});

Deno.test("--help and -h list flags and commands", async () => {
  for (const flag of ["--help", "-h"]) {
    const result = await run([flag]);
    assert.equal(result.code, 0);
    for (const text of ["--config", "--log-level", "--address", "--root", "--state"]) {
      assert.ok(result.stdout.includes(text), text);
    }
    assert.ok(result.stdout.includes("config default"));
    assert.ok(result.stdout.includes("config dump"));
  }
  // Help wins over the rest of the line.
  assert.equal((await run(["config", "dump", "--help"])).code, 0);
});

Deno.test("config default prints TOML with every registered plugin's defaults", async () => {
  const result = await run(["config", "default"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  const doc = parse(result.stdout) as Record<string, unknown>;
  assert.equal(doc.version, 2);
  assert.equal(doc.root, "/var/lib/containerd-ts");
  const plugins = doc.plugins as Record<string, Record<string, unknown>>;
  assert.deepEqual({ ...plugins[GC_URI] }, { pause_threshold: 0.02, schedule_delay: "0s" });
  // A plugin without a config section gets none.
  assert.equal(Object.hasOwn(plugins, "io.containerd.grpc.v1.version"), false);
});

Deno.test("config default follows the environment for rootless defaults", async () => {
  const result = await run(["config", "default"], {
    env: { uid: 1000, home: "/home/u", xdgRuntimeDir: "/run/user/1000" },
  });
  const doc = parse(result.stdout) as Record<string, unknown>;
  assert.equal(doc.root, "/home/u/.local/share/containerd-ts");
  assert.equal(doc.state, "/run/user/1000/containerd-ts");
});

Deno.test("config dump applies file, imports and flags; --explain says where from", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(
      file,
      `version = 2
root = "/from/file"
imports = ["more.toml"]
bogus = 1
[plugins."${GC_URI}"]
pause_threshold = 0.5
`,
    );
    await Deno.writeTextFile(
      join(dir, "more.toml"),
      `[plugins."${GC_URI}"]\nschedule_delay = "1s"\n`,
    );

    const plain = await run(["config", "dump", "-c", file, "-a", "/flag.sock"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(
      plain.stderr,
      `containerd-ts: warning: unknown key "bogus" in ${file} (ignored)\n`,
    );
    const doc = parse(plain.stdout) as Record<string, Record<string, unknown>>;
    assert.equal(doc.grpc!.address, "/flag.sock");
    assert.equal(doc.root as unknown, "/from/file");
    assert.deepEqual({ ...doc.plugins![GC_URI] as object }, {
      pause_threshold: 0.5,
      schedule_delay: "1s",
    });
    assert.ok(!plain.stdout.includes("# from:"));

    const explained = await run([
      "config",
      "dump",
      "--explain",
      "--config",
      file,
      "--address",
      "/flag.sock",
    ]);
    assert.equal(explained.code, 0, explained.stderr);
    const lines = explained.stdout.split("\n");
    assert.ok(lines.includes(`address = "/flag.sock" # from: flag --address`), explained.stdout);
    assert.ok(lines.includes(`root = "/from/file" # from: ${file}`), explained.stdout);
    assert.ok(lines.includes(`schedule_delay = "1s" # from: ${join(dir, "more.toml")}`));
    assert.ok(lines.includes(`state = "/run/containerd-ts" # from: default`));
    parse(explained.stdout); // comments keep it valid TOML

    // Flags before the command words work too.
    const before = await run(["-a", "/x.sock", "config", "dump"]);
    assert.equal(before.code, 0, before.stderr);
    assert.equal((parse(before.stdout).grpc as Record<string, unknown>).address, "/x.sock");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("usage errors: one line on stderr, exit 2", async () => {
  assertUserError(await run(["--bogus"]), /unknown flag --bogus/);
  assertUserError(await run(["config", "dump", "-x"]), /unknown flag -x/);
  assertUserError(await run(["config", "dump", "--config"]), /flag -c, --config needs a value/);
  assertUserError(await run(["--version=1"]), /flag -v, --version takes no value/);
  assertUserError(await run(["frobnicate"]), /unknown command "frobnicate"/);
  assertUserError(await run(["config"]), /config: missing subcommand \(one of default, dump\)/);
  assertUserError(await run(["config", "nope"]), /config: unknown subcommand "nope"/);
  assertUserError(await run(["config", "default", "extra"]), /unexpected argument "extra"/);
  assertUserError(await run(["config", "default", "--explain"]), /unknown flag --explain/);
  assertUserError(await run(["--explain"]), /unknown flag --explain/);
});

Deno.test("config errors: one line on stderr, exit 2, before the server loads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    const missing = join(dir, "missing.toml");
    assertUserError(await run(["-c", missing]), /config file .*missing\.toml does not exist/);
    assertUserError(await run(["config", "dump", "-c", missing]), /does not exist/);
    assertUserError(
      await run(["--log-level", "loud"]),
      /flag --log-level: "loud" is not a log level/,
    );
    assertUserError(await run(["config", "dump", "--root", "rel"]), /must be an absolute path/);

    const broken = join(dir, "broken.toml");
    await Deno.writeTextFile(broken, "root = \n");
    assertUserError(await run(["config", "dump", "-c", broken]), /broken\.toml:1:8: /);

    const badPlugin = join(dir, "bad-plugin.toml");
    await Deno.writeTextFile(badPlugin, `[plugins."${GC_URI}"]\npause_threshold = "x"\n`);
    assertUserError(
      await run(["config", "dump", "-c", badPlugin]),
      /plugins\."io\.containerd\.gc\.v1\.scheduler"\.pause_threshold: expected a number, got string "x"/,
    );
    assertUserError(await run(["-c", badPlugin]), /pause_threshold: expected a number/);

    const v1 = join(dir, "v1.toml");
    await Deno.writeTextFile(v1, "version = 1\n");
    assertUserError(await run(["-c", v1]), /only config version 2 is supported/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
