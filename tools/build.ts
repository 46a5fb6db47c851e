/**
 * `deno task build`: package the daemon in dist/ (or `--out-dir DIR`), in two steps.
 *
 * 1. dist/bundle/: the daemon and its npm packages as minified JavaScript (`deno bundle`),
 *    entry main.js, with the git commit stamped in as its revision. bin/containerd-ts runs it
 *    with the pinned Deno instead of main.ts's 390 modules: the same code with ~9 MiB less
 *    resident memory at idle (module sources and records) and ~45 ms less boot, in 12
 *    alternating boots each. It is split at main.ts's dynamic imports so that a boot loads
 *    only what it runs, as from source. As one file it imported every Node module any part
 *    needs (node:http2 and node:https for `publish`'s client, node:module for prom-client's
 *    `require`) at every start: the split bundle booted in 116 against 145 ms, 69.7 against
 *    73.2 MiB idle, in 12 alternating boots.
 * 2. dist/containerd-ts: that bundle as one self-contained executable (`deno compile`), which
 *    needs Deno's `denort` runtime of the same version, downloaded from Deno's release host or
 *    taken from $DENORT_BIN. Where the host is unreachable this step is reported and skipped:
 *    the bundle is still a complete build.
 *
 * Each output is written beside its target and renamed into place only after it ran
 * (`--version`), so a failed build never leaves a broken bundle or binary that
 * bin/containerd-ts would pick up. A failed bundle exits 1; so does a failed compile other
 * than the missing runtime.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { REVISION_PLACEHOLDER } from "../server/version.ts";

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
 * Rewrite the bundle's chunks in `dir` with `edit`, which returns a chunk's new text or
 * undefined to leave it; the number of chunks rewritten.
 */
async function rewriteChunks(
  dir: string,
  edit: (code: string) => string | undefined,
): Promise<number> {
  let rewritten = 0;
  for (const entry of Deno.readDirSync(dir)) {
    const file = `${dir}/${entry.name}`;
    const code = edit(await Deno.readTextFile(file));
    if (code === undefined) continue;
    await Deno.writeTextFile(file, code);
    rewritten++;
  }
  return rewritten;
}

/**
 * Deno's bundler gives CommonJS code (prom-client) its `require` in the chunk of shared
 * helpers, which every chunk imports: `createRequire` from node:module, loaded at every boot
 * (~8 ms of it, measured) although only the metrics server's prom-client calls it, and only
 * with Node's built-in modules. The rewrite keeps the same `require` for those, made from
 * `process.getBuiltinModule` on the call, and fails the build when the line is not found.
 */
async function lazyBundleRequire(dir: string): Promise<void> {
  const shim =
    /import\{createRequire as ([\w$]+)\} from "node:module";var ([\w$]+)=\1\(import\.meta\.url\);/;
  const rewritten = await rewriteChunks(dir, (code) => {
    const found = shim.exec(code);
    if (found === null) return undefined;
    const name = found[2]!;
    const lazy = `var ${name}=(id)=>{let __cts_m=process.getBuiltinModule(id);` +
      `if(__cts_m===void 0)throw new Error("require of "+id+" in the bundle: not a built-in module");` +
      `return __cts_m};`;
    return code.replace(shim, lazy);
  });
  if (rewritten !== 1) {
    throw new Error(`expected one createRequire line in the bundle's chunks, found ${rewritten}`);
  }
}

/**
 * The commit the bundle is built from, as containerd's Makefile names it: `git rev-parse
 * HEAD`, with `.m` added when tracked files differ from it. "unknown" outside a git checkout
 * (or without git).
 */
async function gitRevision(): Promise<string> {
  const git = (args: string[]) =>
    new Deno.Command("git", { args: ["-C", root, ...args], stdout: "piped", stderr: "null" })
      .output()
      .catch(() => undefined);
  const head = await git(["rev-parse", "HEAD"]);
  if (head === undefined || !head.success) return "unknown";
  const commit = new TextDecoder().decode(head.stdout).trim();
  const diff = await git(["diff", "--no-ext-diff", "--quiet", "--exit-code", "HEAD"]);
  return diff !== undefined && diff.code === 1 ? `${commit}.m` : commit;
}

/**
 * Stamp `revision` over server/version.ts's placeholder in the bundle's chunks, so `--version`
 * and the Version RPC name the commit; fails the build when the placeholder is not found.
 */
async function stampRevision(dir: string, revision: string): Promise<void> {
  const literal = JSON.stringify(REVISION_PLACEHOLDER);
  const stamped = await rewriteChunks(
    dir,
    (code) =>
      code.includes(literal) ? code.replaceAll(literal, JSON.stringify(revision)) : undefined,
  );
  if (stamped === 0) throw new Error(`no ${literal} in the bundle's chunks to stamp`);
}

/**
 * Run `command ...args --version` on the just-built `partial` (a file or a directory); rename
 * it to `target` when it answered, else remove it and fail naming `what`.
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
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    fail(`${what} does not run (${line}); removed it`);
  }
  // A directory cannot be renamed over a non-empty one: the old bundle goes first.
  if ((await Deno.stat(partial)).isDirectory) {
    await Deno.remove(target, { recursive: true }).catch(() => {});
  }
  await Deno.rename(partial, target);
  console.error(`build: wrote ${target} (${line})`);
}

await Deno.mkdir(outDir, { recursive: true });

// 1. The bundle.
const bundleDir = `${outDir}/bundle`;
const bundle = `${bundleDir}/main.js`;
const bundlePartial = `${bundleDir}.partial`;
await Deno.remove(bundlePartial, { recursive: true }).catch(() => {});
const bundled = await new Deno.Command(Deno.execPath(), {
  args: [
    "bundle",
    "--quiet",
    "--minify",
    "--code-splitting",
    "--platform",
    "deno",
    "--config",
    `${root}/deno.json`,
    "--outdir",
    bundlePartial,
    `${root}/main.ts`,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (!bundled.success) {
  await Deno.remove(bundlePartial, { recursive: true }).catch(() => {});
  fail(`deno bundle failed (exit ${bundled.code}); nothing was written to ${bundleDir}`);
}
try {
  await lazyBundleRequire(bundlePartial);
  await stampRevision(bundlePartial, await gitRevision());
} catch (err) {
  await Deno.remove(bundlePartial, { recursive: true }).catch(() => {});
  fail(`${(err as Error).message}; nothing was written to ${bundleDir}`);
}
await putInPlace(bundlePartial, bundleDir, "the bundle", {
  command: Deno.execPath(),
  args: [
    "run",
    "--allow-all",
    "--quiet",
    "--config",
    `${root}/deno.json`,
    `${bundlePartial}/main.js`,
  ],
});
// Builds before the split wrote one file, which nothing runs any more.
await Deno.remove(`${outDir}/containerd-ts.js`).catch(() => {});

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
