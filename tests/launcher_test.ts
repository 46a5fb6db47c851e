/**
 * bin/containerd-ts, the seam every start goes through: what it runs (dist/'s binary, dist/'s
 * bundle, main.ts), which Deno with which arguments, when it asks a Deno for its version, and
 * that deno.json's start task and the compiled binary get the same V8 flags. Each test runs a
 * copy of the launcher in a temp tree (so the repo's own dist/ does not matter), with a fake
 * `deno` and `npx` on PATH that record what they are asked; nothing here starts a daemon.
 */
import assert from "node:assert/strict";
import { LAUNCHER, REPO } from "./harness.ts";

/** The V8 flags the launcher passes; deno.json and tools/build.ts must carry the same. */
const V8_FLAGS = "--v8-flags=--min-semi-space-size=16";

interface FakeBin {
  dir: string;
  /** The launcher's copy: `<dir>/tree/bin/containerd-ts`. */
  launcher: string;
  /** `<dir>/tree/bin/..`, as the launcher names the tree in its arguments. */
  tree: string;
  /** What the fakes recorded, one line per invocation: `<tool> <args...>`. */
  calls(): Promise<string[]>;
  /** Replace the fake deno with one that reports `version`. */
  writeDeno(version: string): Promise<void>;
  env: Record<string, string>;
}

async function fakeBin(): Promise<FakeBin> {
  const dir = await Deno.makeTempDir({ prefix: "cts-launcher-" });
  const log = `${dir}/calls.log`;
  const writeTool = async (name: string, body: string) => {
    // A new file each time (as an npm install would): a new inode.
    await Deno.remove(`${dir}/bin/${name}`).catch(() => {});
    await Deno.writeTextFile(`${dir}/bin/${name}`, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  };
  await Deno.mkdir(`${dir}/bin`);
  const writeDeno = (version: string) =>
    writeTool(
      "deno",
      `echo "deno $*" >> ${log}\n` +
        `if [ "$1" = --version ]; then echo "deno ${version} (stable, release, x86_64)"; fi`,
    );
  await writeDeno("2.9.3");
  await writeTool("npx", `echo "npx $*" >> ${log}`);
  await Deno.mkdir(`${dir}/tree/bin`, { recursive: true });
  await Deno.copyFile(LAUNCHER, `${dir}/tree/bin/containerd-ts`);
  return {
    dir,
    launcher: `${dir}/tree/bin/containerd-ts`,
    tree: `${dir}/tree/bin/..`,
    writeDeno,
    calls: async () =>
      (await Deno.readTextFile(log).catch(() => "")).split("\n").filter((l) => l !== ""),
    env: { PATH: `${dir}/bin:/usr/bin:/bin`, XDG_CACHE_HOME: `${dir}/cache`, HOME: dir },
  };
}

async function launch(fake: FakeBin, args: string[], env = fake.env): Promise<number> {
  const out = await new Deno.Command(fake.launcher, {
    args,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

Deno.test({
  name: "launcher: runs the pinned deno from PATH with the V8 flags and every argument",
  fn: async () => {
    const fake = await fakeBin();
    try {
      assert.equal(await launch(fake, ["--address", "/tmp/a b.sock", "config", "dump"]), 0);
      const calls = await fake.calls();
      assert.deepEqual(calls, [
        "deno --version",
        `deno run --allow-all --quiet ${V8_FLAGS} --config ${fake.tree}/deno.json ` +
        `${fake.tree}/main.ts --address /tmp/a b.sock config dump`,
      ]);
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "launcher: asks deno --version once, again when the binary changes, and falls back to npx for another version",
  fn: async () => {
    const fake = await fakeBin();
    try {
      await launch(fake, ["a"]);
      await launch(fake, ["b"]);
      let calls = await fake.calls();
      assert.equal(calls.filter((c) => c === "deno --version").length, 1, calls.join("\n"));
      assert.equal(calls.filter((c) => c.startsWith("deno run ")).length, 2, calls.join("\n"));

      // Another Deno installed at the same path (a new file): asked again, and not trusted.
      await new Promise((r) => setTimeout(r, 20));
      await fake.writeDeno("2.9.6");
      await launch(fake, ["c"]);
      calls = (await fake.calls()).slice(calls.length);
      assert.equal(calls[0], "deno --version", calls.join("\n"));
      assert.equal(
        calls[1],
        `npx -y deno@2.9.3 run --allow-all --quiet ${V8_FLAGS} --config ${fake.tree}/deno.json ` +
          `${fake.tree}/main.ts c`,
      );
      assert.equal(calls.length, 2, calls.join("\n"));
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "launcher: DENO_BIN wins over PATH and is not asked for its version",
  fn: async () => {
    const fake = await fakeBin();
    try {
      await launch(fake, ["x"], { ...fake.env, DENO_BIN: `${fake.dir}/bin/deno` });
      const calls = await fake.calls();
      assert.equal(calls.length, 1, calls.join("\n"));
      assert.ok(calls[0]!.startsWith(`deno run --allow-all --quiet ${V8_FLAGS} `), calls[0]);
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test("launcher: runs what deno task build made: the compiled binary, else the bundle", async () => {
  const fake = await fakeBin();
  try {
    await Deno.mkdir(`${fake.tree}/dist/bundle`, { recursive: true });
    await Deno.writeTextFile(`${fake.tree}/dist/bundle/main.js`, "// bundle\n");
    await launch(fake, ["one"]);
    let calls = await fake.calls();
    assert.equal(
      calls.at(-1),
      `deno run --allow-all --quiet ${V8_FLAGS} --config ${fake.tree}/deno.json ` +
        `${fake.tree}/dist/bundle/main.js one`,
    );
    // A compiled binary wins over both, with the arguments as they are.
    await Deno.writeTextFile(
      `${fake.tree}/dist/containerd-ts`,
      `#!/bin/sh\necho "binary $*" >> ${fake.dir}/calls.log\n`,
      { mode: 0o755 },
    );
    await launch(fake, ["two", "--x"]);
    calls = await fake.calls();
    assert.equal(calls.at(-1), "binary two --x");
  } finally {
    await Deno.remove(fake.dir, { recursive: true });
  }
});

Deno.test("launcher: deno.json's start task and the compiled binary get the launcher's V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  assert.match(config.tasks.start, new RegExp(`^deno run --allow-all ${V8_FLAGS} main\\.ts$`));
  const build = await Deno.readTextFile(`${REPO}/tools/build.ts`);
  assert.ok(build.includes(`"${V8_FLAGS}"`), "tools/build.ts does not compile with the V8 flags");
  const launcher = await Deno.readTextFile(LAUNCHER);
  assert.ok(launcher.includes(`v8_flags=${V8_FLAGS}\n`), "the launcher's flags changed");
});
