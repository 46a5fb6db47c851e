import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "smol-toml";
import {
  type ConfigEnv,
  ConfigError,
  configToToml,
  decodePluginConfigs,
  defaultConfig,
  type Flags,
  loadConfig,
  validateConfig,
} from "./config.ts";
import { pluginType, type Registration } from "./plugin.ts";
import { configSchema, field } from "./schema.ts";

const GC = 'plugins."io.containerd.gc.v1.scheduler"';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "config_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function write(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
  return path;
}

/** Root's defaults, with the default config path pointing at nothing. */
function rootEnv(dir: string): ConfigEnv {
  return { uid: 0, defaultConfigPath: join(dir, "absent.toml") };
}

async function load(dir: string, flags: Flags) {
  return await loadConfig(flags, rootEnv(dir));
}

async function rejects(promise: Promise<unknown>, message: string | RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    assert.ok(!err.message.includes("\n"), "one line");
    return true;
  });
}

function gcRegistration(): Registration {
  return {
    type: pluginType("io.containerd.gc.v1"),
    id: "scheduler",
    config: configSchema({
      pause_threshold: field.number(0.02),
      deletion_threshold: field.integer(0),
      schedule_delay: field.duration("0s"),
    }),
    init: () => ({}),
  } as Registration;
}

function plainRegistration(type: string, id: string): Registration {
  return { type: pluginType(type), id, init: () => ({}) };
}

Deno.test("defaults as root", () => {
  const config = defaultConfig({ uid: 0 });
  assert.equal(config.version, 2);
  assert.equal(config.root, "/var/lib/containerd-ts");
  assert.equal(config.state, "/run/containerd-ts");
  assert.equal(config.grpc.address, "/run/containerd-ts/containerd-ts.sock");
  assert.equal(config.grpc.max_recv_message_size, 16 * 1024 * 1024);
  assert.equal(config.grpc.max_send_message_size, 16777216);
  assert.equal(config.ttrpc.address, "");
  assert.deepEqual(config.debug, { address: "", uid: 0, gid: 0, level: "info", format: "text" });
  assert.deepEqual(config.timeouts, {
    "io.containerd.timeout.bolt.open": "0s",
    "io.containerd.timeout.shim.cleanup": "5s",
    "io.containerd.timeout.shim.load": "5s",
    "io.containerd.timeout.shim.shutdown": "3s",
    "io.containerd.timeout.task.state": "2s",
  });
  assert.deepEqual(config.plugins, {});
  // Fresh each time.
  config.disabled_plugins.push("x");
  assert.deepEqual(defaultConfig({ uid: 0 }).disabled_plugins, []);
});

Deno.test("defaults as non-root follow XDG, then HOME and /tmp", () => {
  const xdg = defaultConfig({
    uid: 1000,
    home: "/home/u",
    xdgDataHome: "/data",
    xdgRuntimeDir: "/run/user/1000",
  });
  assert.equal(xdg.root, "/data/containerd-ts");
  assert.equal(xdg.state, "/run/user/1000/containerd-ts");
  assert.equal(xdg.grpc.address, "/run/user/1000/containerd-ts/containerd-ts.sock");

  // Empty values count as unset, as with ${VAR:-default}.
  const bare = defaultConfig({ uid: 1000, home: "/home/u", xdgDataHome: "", xdgRuntimeDir: "" });
  assert.equal(bare.root, "/home/u/.local/share/containerd-ts");
  assert.equal(bare.state, "/tmp/containerd-ts-1000/containerd-ts");
  assert.equal(bare.grpc.address, "/tmp/containerd-ts-1000/containerd-ts/containerd-ts.sock");
});

Deno.test("no config file at the default path means defaults", async () => {
  await withDir(async (dir) => {
    const { config, warnings, files, sources } = await load(dir, {});
    assert.deepEqual(config, defaultConfig({ uid: 0 }));
    assert.deepEqual(warnings, []);
    assert.deepEqual(files, []);
    assert.equal(sources.get("root"), "default");
    assert.equal(sources.get("grpc.address"), "default");
    assert.equal(sources.get('timeouts."io.containerd.timeout.shim.load"'), "default");
  });
});

Deno.test("the default path is read when present", async () => {
  await withDir(async (dir) => {
    const path = await write(dir, "etc/config.toml", "oom_score = -500\n");
    const { config, files } = await loadConfig({}, { uid: 0, defaultConfigPath: path });
    assert.equal(config.oom_score, -500);
    assert.deepEqual(files, [path]);
  });
});

Deno.test("precedence: defaults < file < imports in order < flags", async () => {
  await withDir(async (dir) => {
    const main = await write(
      dir,
      "config.toml",
      `version = 2
root = "/file/root"
state = "/file/state"
temp = "/file/temp"
oom_score = 1
disabled_plugins = ["io.a.v1.x"]
imports = ["one.toml", "two.toml"]

[grpc]
address = "/file.sock"
uid = 10

[debug]
level = "debug"

[timeouts]
"io.containerd.timeout.shim.load" = "10s"
`,
    );
    const one = await write(
      dir,
      "one.toml",
      `temp = "/one/temp"
oom_score = 2
disabled_plugins = ["io.b.v1.y", "io.a.v1.x"]
[grpc]
gid = 20
`,
    );
    const two = await write(
      dir,
      "two.toml",
      `oom_score = 3
disabled_plugins = ["io.c.v1.z"]
[debug]
format = "json"
`,
    );
    const { config, sources, files, warnings } = await load(dir, {
      config: main,
      address: "/flag.sock",
      state: "/flag/state",
      logLevel: "warn",
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(files, [main, one, two]);
    assert.equal(config.root, "/file/root");
    assert.equal(config.state, "/flag/state");
    assert.equal(config.temp, "/one/temp");
    assert.equal(config.oom_score, 3);
    assert.deepEqual(config.disabled_plugins, ["io.a.v1.x", "io.b.v1.y", "io.c.v1.z"]);
    assert.equal(config.grpc.address, "/flag.sock");
    assert.equal(config.grpc.uid, 10);
    assert.equal(config.grpc.gid, 20);
    assert.equal(config.grpc.max_recv_message_size, 16777216);
    assert.equal(config.debug.level, "warn");
    assert.equal(config.debug.format, "json");
    assert.equal(config.timeouts["io.containerd.timeout.shim.load"], "10s");
    assert.equal(config.timeouts["io.containerd.timeout.shim.cleanup"], "5s");
    assert.deepEqual(config.imports, [one, two]);

    assert.equal(sources.get("root"), main);
    assert.equal(sources.get("state"), "flag --state");
    assert.equal(sources.get("temp"), one);
    assert.equal(sources.get("oom_score"), two);
    assert.equal(sources.get("disabled_plugins"), `${main}, ${one}, ${two}`);
    assert.equal(sources.get("grpc.address"), "flag --address");
    assert.equal(sources.get("grpc.uid"), main);
    assert.equal(sources.get("grpc.gid"), one);
    assert.equal(sources.get("grpc.tcp_address"), "default");
    assert.equal(sources.get("debug.level"), "flag --log-level");
    assert.equal(sources.get("debug.format"), two);
    assert.equal(sources.get('timeouts."io.containerd.timeout.shim.load"'), main);
  });
});

Deno.test("imports are breadth first, relative to the importing file, each file once", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `imports = ["a/a.toml", "b.toml"]\ntemp = "/m"`);
    // a/a.toml imports relative to a/: a/c.toml, and b.toml again (once only).
    const a = await write(dir, "a/a.toml", `imports = ["c.toml", "../b.toml"]\ntemp = "/a"`);
    // b.toml imports a cycle back to main and to a.
    const b = await write(dir, "b.toml", `imports = ["config.toml", "a/a.toml"]\ntemp = "/b"`);
    const c = await write(dir, "a/c.toml", `temp = "/c"`);
    const { config, files } = await load(dir, { config: main });
    // Breadth first: main, then its imports a and b, then a's import c.
    assert.deepEqual(files, [main, a, b, c]);
    assert.equal(config.temp, "/c");
    assert.deepEqual(config.imports, [a, b, c]);
  });
});

Deno.test("import globs expand `*` in any segment, sorted; no match is fine", async () => {
  await withDir(async (dir) => {
    const main = await write(
      dir,
      "config.toml",
      `imports = ["conf.d/*.toml", "*/nested/*-x.toml", "empty.d/*.toml", "missing/*.toml"]`,
    );
    const second = await write(dir, "conf.d/20-second.toml", `disabled_plugins = ["two"]`);
    const first = await write(dir, "conf.d/10-first.toml", `disabled_plugins = ["one"]`);
    await write(dir, "conf.d/readme.md", `not toml at all = = =`);
    await Deno.mkdir(join(dir, "conf.d/dir.toml")); // a directory is not imported
    const nested = await write(dir, "deep/nested/9-x.toml", `disabled_plugins = ["three"]`);
    await Deno.mkdir(join(dir, "empty.d"));
    const { config, files } = await load(dir, { config: main });
    assert.deepEqual(files, [main, first, second, nested]);
    assert.deepEqual(config.disabled_plugins, ["one", "two", "three"]);
  });
});

Deno.test("an import of a plain path that does not exist is an error naming both files", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `imports = ["nope.toml"]`);
    await rejects(
      load(dir, { config: main }),
      `${main}: import "nope.toml": ${join(dir, "nope.toml")}: no such file`,
    );
  });
});

Deno.test("plugin tables merge per key across imports", async () => {
  await withDir(async (dir) => {
    const main = await write(
      dir,
      "config.toml",
      `imports = ["more.toml"]
[${GC}]
pause_threshold = 0.5
deletion_threshold = 10
[plugins."io.other.v1.x"]
keep = true
`,
    );
    const more = await write(dir, "more.toml", `[${GC}]\ndeletion_threshold = 20\n`);
    const { config, sources } = await load(dir, { config: main });
    assert.deepEqual(config.plugins["io.containerd.gc.v1.scheduler"], {
      pause_threshold: 0.5,
      deletion_threshold: 20,
    });
    assert.deepEqual(config.plugins["io.other.v1.x"], { keep: true });
    assert.equal(sources.get(`${GC}.pause_threshold`), main);
    assert.equal(sources.get(`${GC}.deletion_threshold`), more);
  });
});

Deno.test("a TOML syntax error names file:line:col and the reason", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `root = "/r"\nstate = \n`);
    await rejects(load(dir, { config: main }), new RegExp(`^${main}:2:9: invalid value`));
    const dup = await write(dir, "dup.toml", `[grpc]\nuid = 1\nuid = 2\n`);
    await rejects(load(dir, { config: dup }), new RegExp(`^${dup}:3:\\d+: `));
  });
});

Deno.test("a syntax error in an import names the import", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `imports = ["bad.toml"]`);
    const bad = await write(dir, "bad.toml", `[grpc\n`);
    await rejects(load(dir, { config: main }), new RegExp(`^${bad}:1:\\d+: `));
  });
});

Deno.test("a wrong type names the file, the key and the expected type", async () => {
  await withDir(async (dir) => {
    const cases: [string, string][] = [
      [`[grpc]\nuid = "x"`, `grpc.uid: expected an integer, got string "x"`],
      [`root = 5`, `root: expected a string, got integer 5`],
      [`oom_score = 1.5`, `oom_score: expected an integer, got float 1.5`],
      [`disabled_plugins = "x"`, `disabled_plugins: expected an array of strings, got string "x"`],
      [`grpc = "x"`, `grpc: expected a table, got string "x"`],
      [
        `[metrics]\ngrpc_histogram = "yes"`,
        `metrics.grpc_histogram: expected a boolean, got string "yes"`,
      ],
      [
        `[debug]\nlevel = "loud"`,
        `debug.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "panic", got string "loud"`,
      ],
      [`[debug]\nformat = "xml"`, `debug.format: expected one of "text", "json", got string "xml"`],
      [
        `[timeouts]\n"io.containerd.timeout.shim.load" = "soon"`,
        `timeouts."io.containerd.timeout.shim.load": expected a duration such as "100ms" or "1m30s", got string "soon"`,
      ],
      [`[plugins]\n"io.x.v1.y" = 5`, `plugins."io.x.v1.y": expected a table, got integer 5`],
      [`[grpc]\nuid = -1`, `grpc.uid: -1 is below the minimum 0`],
    ];
    for (const [text, message] of cases) {
      const path = await write(dir, "config.toml", text);
      await rejects(load(dir, { config: path }), `${path}: ${message}`);
    }
  });
});

Deno.test("unknown keys are warnings naming the key and file", async () => {
  await withDir(async (dir) => {
    const main = await write(
      dir,
      "config.toml",
      `subreaper = true
[grpc]
foo = 1
[proxy_plugins.x]
type = "snapshot"
`,
    );
    const { warnings } = await load(dir, { config: main });
    assert.deepEqual(warnings, [
      `unknown key "subreaper" in ${main} (ignored)`,
      `unknown key "grpc.foo" in ${main} (ignored)`,
      `unknown key "proxy_plugins" in ${main} (ignored)`,
    ]);
  });
});

Deno.test("a --config file that does not exist is an error naming it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "missing.toml");
    await rejects(load(dir, { config: path }), `config file ${path} does not exist`);
  });
});

Deno.test("only config version 2 is supported", async () => {
  await withDir(async (dir) => {
    for (const version of [1, 3]) {
      const path = await write(dir, "config.toml", `version = ${version}\n[plugins.cri]\nx = 1\n`);
      await rejects(
        load(dir, { config: path }),
        `${path}: version ${version}: only config version 2 is supported`,
      );
    }
    const imported = await write(dir, "old.toml", `version = 1`);
    const main = await write(dir, "config.toml", `version = 2\nimports = ["old.toml"]`);
    await rejects(
      load(dir, { config: main }),
      `${imported}: version 1: only config version 2 is supported`,
    );
  });
});

Deno.test("root and state must be set, absolute and different", async () => {
  await withDir(async (dir) => {
    const same = await write(dir, "same.toml", `root = "/x/data"\nstate = "/x/data/"`);
    await rejects(
      load(dir, { config: same }),
      `root and state must be different paths, both are "/x/data"`,
    );
    const relative = await write(dir, "rel.toml", `root = "var/lib/x"`);
    await rejects(
      load(dir, { config: relative }),
      `root "var/lib/x" (from ${relative}): must be an absolute path`,
    );
    await rejects(
      load(dir, { state: "run" }),
      `state "run" (from flag --state): must be an absolute path`,
    );
    await rejects(
      load(dir, { root: "" }),
      `root: must be set to an absolute path (from flag --root)`,
    );
    await rejects(load(dir, { address: "" }), `grpc.address: must be set (from flag --address)`);
    await rejects(
      load(dir, { logLevel: "loud" }),
      `flag --log-level: "loud" is not a log level (use one of trace, debug, info, warn, error, fatal, panic)`,
    );
  });
});

Deno.test("validateConfig checks a config built in code", () => {
  const config = defaultConfig({ uid: 0 });
  config.debug.format = "xml";
  assert.throws(() => validateConfig(config), ConfigError);
  const rootless = defaultConfig({ uid: 1000 }); // no HOME: root cannot be derived
  assert.throws(() => validateConfig(rootless), /root: must be set/);
});

Deno.test("decodePluginConfigs decodes with each schema, defaults when absent", async () => {
  await withDir(async (dir) => {
    const main = await write(
      dir,
      "config.toml",
      `disabled_plugins = ["io.off.v1.x"]
[${GC}]
pause_threshold = 0.1
extra = 1
[plugins."io.nobody.v1.x"]
a = 1
[plugins."io.plain.v1.x"]
b = 2
[plugins."io.off.v1.x"]
c = "anything"
`,
    );
    const { config } = await load(dir, { config: main });
    const registrations = [
      gcRegistration(),
      plainRegistration("io.plain.v1", "x"),
      plainRegistration("io.off.v1", "x"),
    ];
    const { configs, warnings } = decodePluginConfigs(config, registrations);
    assert.deepEqual(configs.get("io.containerd.gc.v1.scheduler"), {
      pause_threshold: 0.1,
      deletion_threshold: 0,
      schedule_delay: "0s",
    });
    assert.equal(configs.has("io.plain.v1.x"), false);
    assert.equal(configs.has("io.off.v1.x"), false);
    assert.deepEqual(warnings, [
      `unknown key ${GC}.extra (ignored)`,
      `plugins."io.plain.v1.x": plugin io.plain.v1.x takes no configuration (ignored)`,
      `unknown plugin section plugins."io.nobody.v1.x": no such plugin is registered (ignored)`,
    ]);
    const quiet = decodePluginConfigs(config, registrations, { unknownSections: "ignore" });
    assert.equal(quiet.warnings.length, 2);

    const defaults = decodePluginConfigs(defaultConfig({ uid: 0 }), [gcRegistration()]);
    assert.deepEqual(defaults.configs.get("io.containerd.gc.v1.scheduler"), {
      pause_threshold: 0.02,
      deletion_threshold: 0,
      schedule_delay: "0s",
    });
  });
});

Deno.test("decodePluginConfigs: a wrong type in a plugin section is a ConfigError", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `[${GC}]\npause_threshold = "x"\n`);
    const { config } = await load(dir, { config: main });
    assert.throws(() => decodePluginConfigs(config, [gcRegistration()]), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, `${GC}.pause_threshold: expected a number, got string "x"`);
      return true;
    });
  });
});

Deno.test("configToToml loads back to the same config", async () => {
  await withDir(async (dir) => {
    const config = defaultConfig({ uid: 0 });
    config.disabled_plugins = ["io.a.v1.x"];
    config.grpc.tcp_address = "127.0.0.1:1234";
    config.plugins["io.other.v1.x"] = { nested: { deep: [1, 2] }, "odd key": 'quote " me' };
    const text = configToToml(config);
    const path = await write(dir, "dumped.toml", text);
    const reloaded = await load(dir, { config: path });
    assert.deepEqual(reloaded.warnings, []);
    assert.deepEqual(reloaded.config, config);
  });
});

Deno.test("configToToml fills in registered plugin sections", () => {
  const config = defaultConfig({ uid: 0 });
  config.plugins["io.containerd.gc.v1.scheduler"] = { deletion_threshold: 5 };
  const text = configToToml(config, {
    registrations: [gcRegistration(), plainRegistration("io.plain.v1", "x")],
  });
  const doc = parse(text) as Record<string, Record<string, unknown>>;
  assert.deepEqual({ ...doc.plugins!["io.containerd.gc.v1.scheduler"] as object }, {
    pause_threshold: 0.02,
    deletion_threshold: 5,
    schedule_delay: "0s",
  });
  assert.equal("io.plain.v1.x" in doc.plugins!, false);
});

Deno.test("configToToml with sources says where each value came from", async () => {
  await withDir(async (dir) => {
    const main = await write(dir, "config.toml", `root = "/r"\n[${GC}]\ndeletion_threshold = 5\n`);
    const { config, sources } = await load(dir, { config: main, address: "/x.sock" });
    const text = configToToml(config, { registrations: [gcRegistration()], sources });
    const lines = text.split("\n");
    assert.ok(lines.includes(`root = "/r" # from: ${main}`), text);
    assert.ok(lines.includes(`address = "/x.sock" # from: flag --address`), text);
    assert.ok(lines.includes(`state = "/run/containerd-ts" # from: default`), text);
    assert.ok(lines.includes(`deletion_threshold = 5 # from: ${main}`), text);
    assert.ok(lines.includes(`pause_threshold = 0.02 # from: default`), text);
    parse(text); // still valid TOML
  });
});
