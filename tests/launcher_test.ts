/**
 * bin/containerd-ts, the seam every start goes through: which Deno it runs, with which
 * arguments, when it asks a Deno for its version, and that deno.json's start task and the
 * compiled binary get the same V8 flags. A fake `deno` and `npx` on PATH record what the
 * launcher runs, so nothing here starts a daemon.
 */
import assert from "node:assert/strict";
import { LAUNCHER, REPO } from "./harness.ts";

/** The launcher runs a compiled binary in dist/ when there is one, and never Deno then. */
const compiled = (() => {
  try {
    Deno.statSync(`${REPO}/dist/containerd-ts`);
    return "dist/containerd-ts exists: the launcher runs it instead of Deno";
  } catch {
    return undefined;
  }
})();
if (compiled !== undefined) console.warn(`launcher_test: Deno-path tests skipped (${compiled})`);

/** The V8 flags the launcher passes; deno.json and tools/build.ts must carry the same. */
const V8_FLAGS = "--v8-flags=--min-semi-space-size=16";

interface FakeBin {
  dir: string;
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
  return {
    dir,
    writeDeno,
    calls: async () =>
      (await Deno.readTextFile(log).catch(() => "")).split("\n").filter((l) => l !== ""),
    env: { PATH: `${dir}/bin:/usr/bin:/bin`, XDG_CACHE_HOME: `${dir}/cache`, HOME: dir },
  };
}

async function launch(env: Record<string, string>, args: string[]): Promise<number> {
  const out = await new Deno.Command(LAUNCHER, {
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
  ignore: compiled !== undefined,
  fn: async () => {
    const fake = await fakeBin();
    try {
      assert.equal(await launch(fake.env, ["--address", "/tmp/a b.sock", "config", "dump"]), 0);
      const calls = await fake.calls();
      assert.deepEqual(calls, [
        "deno --version",
        `deno run --allow-all --quiet ${V8_FLAGS} --config ${REPO}/bin/../deno.json ` +
        `${REPO}/bin/../main.ts --address /tmp/a b.sock config dump`,
      ]);
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "launcher: asks deno --version once, again when the binary changes, and falls back to npx for another version",
  ignore: compiled !== undefined,
  fn: async () => {
    const fake = await fakeBin();
    try {
      await launch(fake.env, ["a"]);
      await launch(fake.env, ["b"]);
      let calls = await fake.calls();
      assert.equal(calls.filter((c) => c === "deno --version").length, 1, calls.join("\n"));
      assert.equal(calls.filter((c) => c.startsWith("deno run ")).length, 2, calls.join("\n"));

      // Another Deno installed at the same path (a new file): asked again, and not trusted.
      await new Promise((r) => setTimeout(r, 20));
      await fake.writeDeno("2.9.6");
      await launch(fake.env, ["c"]);
      calls = (await fake.calls()).slice(calls.length);
      assert.equal(calls[0], "deno --version", calls.join("\n"));
      assert.equal(
        calls[1],
        `npx -y deno@2.9.3 run --allow-all --quiet ${V8_FLAGS} --config ${REPO}/bin/../deno.json ` +
          `${REPO}/bin/../main.ts c`,
      );
      assert.equal(calls.length, 2, calls.join("\n"));
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "launcher: DENO_BIN wins over PATH and is not asked for its version",
  ignore: compiled !== undefined,
  fn: async () => {
    const fake = await fakeBin();
    try {
      await launch({ ...fake.env, DENO_BIN: `${fake.dir}/bin/deno` }, ["x"]);
      const calls = await fake.calls();
      assert.equal(calls.length, 1, calls.join("\n"));
      assert.ok(calls[0]!.startsWith(`deno run --allow-all --quiet ${V8_FLAGS} `), calls[0]);
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  },
});

Deno.test("launcher: deno.json's start task and the compiled binary get the launcher's V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  assert.match(config.tasks.start, new RegExp(`^deno run --allow-all ${V8_FLAGS} main\\.ts$`));
  const build = await Deno.readTextFile(`${REPO}/tools/build.ts`);
  assert.ok(build.includes(`"${V8_FLAGS}"`), "tools/build.ts does not compile with the V8 flags");
  const launcher = await Deno.readTextFile(LAUNCHER);
  assert.ok(launcher.includes(`v8_flags=${V8_FLAGS}\n`), "the launcher's flags changed");
});
