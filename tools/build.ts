/**
 * `deno task build`: package the daemon in dist/ (or `--out-dir DIR`), in two steps.
 *
 * 1. dist/containerd-ts.js: the daemon and its npm packages as one minified JavaScript file
 *    (`deno bundle`). bin/containerd-ts runs it with the pinned Deno instead of main.ts's 390
 *    modules: the same code with ~7 MiB less resident memory at idle (module sources and
 *    records), measured with 12 alternating boots each.
 * 2. dist/containerd-ts: that bundle as one self-contained executable (`deno compile`), which
 *    needs Deno's `denort` runtime of the same version, downloaded from Deno's release host or
 *    taken from $DENORT_BIN. Where the host is unreachable this step is reported and skipped:
 *    the bundle is still a complete build.
 *
 * Each output is written beside its target and renamed into place only after it ran
 * (`--version`), so a failed build never leaves a broken file that bin/containerd-ts would
 * pick up. A failed bundle exits 1; so does a failed compile other than the missing runtime.
 *
 * @module
 */
import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({ args: Deno.args, options: { "out-dir": { type: "string" } } });
const outDir = values["out-dir"] ?? `${root}/dist`;
/** The V8 flags bin/containerd-ts passes to `deno run` (tests/launcher_test.ts checks both). */
const V8_FLAGS = "--v8-flags=--min-semi-space-size=16";

function fail(message: string): never {
  console.error(`build: ${message}`);
  Deno.exit(1);
}

/**
 * Run `command ...args --version` on the just-built `partial`; rename it to `target` when it
 * answered, else remove it and fail naming `what`.
 */
async function putInPlace(
  partial: string,
  target: string,
  what: string,
  run: { command: string; args: string[] },
): Promise<void> {
  const out = await new Deno.Command(run.command, {
    args: [...run.args, "--version"],
    stdout: "piped",
    stderr: "piped",
  })
    .output()
    .catch((err) => ({
      success: false,
      stdout: new Uint8Array(),
      stderr: new TextEncoder().encode(String(err)),
    }));
  const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
  const line = text.split("\n")[0] ?? "";
  if (!out.success) {
    await Deno.remove(partial).catch(() => {});
    fail(`${what} does not run (${line}); removed it`);
  }
  await Deno.rename(partial, target);
  console.error(`build: wrote ${target} (${line})`);
}

await Deno.mkdir(outDir, { recursive: true });

// 1. The bundle.
const bundle = `${outDir}/containerd-ts.js`;
const bundlePartial = `${bundle}.partial`;
await Deno.remove(bundlePartial).catch(() => {});
const bundled = await new Deno.Command(Deno.execPath(), {
  args: [
    "bundle",
    "--quiet",
    "--minify",
    "--platform",
    "deno",
    "--config",
    `${root}/deno.json`,
    "--output",
    bundlePartial,
    `${root}/main.ts`,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (!bundled.success) {
  await Deno.remove(bundlePartial).catch(() => {});
  fail(`deno bundle failed (exit ${bundled.code}); nothing was written to ${bundle}`);
}
// prom-client is CommonJS: its require("node:util") calls go through the bundler's shim,
// which uses a `require` in scope when there is one. Deno 2.9.3's bundle defines it without
// --minify but not with it ("Dynamic require of node:util is not supported" once metrics
// are served), so the bundle gets one from node:module.
const code = await Deno.readTextFile(bundlePartial);
await Deno.writeTextFile(
  bundlePartial,
  `import{createRequire as __ctsCreateRequire}from"node:module";` +
    `var require=__ctsCreateRequire(import.meta.url);\n${code}`,
);
await putInPlace(bundlePartial, bundle, "the bundle", {
  command: Deno.execPath(),
  args: ["run", "--allow-all", "--quiet", "--config", `${root}/deno.json`, bundlePartial],
});

// 2. The executable, from the bundle.
const denort = Deno.env.get("DENORT_BIN");
if (denort) {
  try {
    Deno.statSync(denort);
  } catch {
    fail(
      `DENORT_BIN=${denort} does not exist; point it at the denort binary of Deno ${Deno.version.deno}`,
    );
  }
}
const target = `${outDir}/containerd-ts`;
const partial = `${target}.partial`;
await Deno.remove(partial).catch(() => {});
const compile = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-all",
    "--quiet",
    // Baked into the binary, as bin/containerd-ts passes it to `deno run`.
    V8_FLAGS,
    "--config",
    `${root}/deno.json`,
    "--output",
    partial,
    bundle,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "piped",
}).output();
const stderr = new TextDecoder().decode(compile.stderr);
if (!compile.success) {
  await Deno.remove(partial).catch(() => {});
  const download = /download|dl\.deno\.land|denort|error sending request|dns/i.test(stderr);
  if (download && !denort) {
    console.error(
      `build: no ${target}: deno compile could not get Deno's denort runtime (its release host ` +
        `is not reachable from this machine). Set DENORT_BIN to a denort ${Deno.version.deno} ` +
        `binary and run again; meanwhile bin/containerd-ts runs ${bundle}.`,
    );
    Deno.exit(0);
  }
  await Deno.stderr.write(compile.stderr);
  fail(`deno compile failed (exit ${compile.code}); nothing was written to ${target}`);
}
await putInPlace(partial, target, "the compiled binary", { command: partial, args: [] });
