/**
 * `deno task build`: compile the daemon into one self-contained file, dist/containerd-ts.
 *
 * `deno compile` needs Deno's `denort` runtime of the same version, which it downloads from
 * Deno's release host or takes from $DENORT_BIN. The output is written beside the target and
 * renamed into place only after it runs (`--version`), so a failed build never leaves a
 * broken dist/containerd-ts that bin/containerd-ts would pick up.
 *
 * @module
 */
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const target = `${root}/dist/containerd-ts`;
const partial = `${target}.partial`;

function fail(message: string): never {
  console.error(`build: ${message}`);
  Deno.exit(1);
}

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

await Deno.mkdir(`${root}/dist`, { recursive: true });
await Deno.remove(partial).catch(() => {});
const compile = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-all",
    // Baked into the binary, as bin/containerd-ts passes it to `deno run`.
    "--v8-flags=--min-semi-space-size=16",
    "--config",
    `${root}/deno.json`,
    "--output",
    partial,
    `${root}/main.ts`,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "piped",
}).output();
const stderr = new TextDecoder().decode(compile.stderr);
if (!compile.success) {
  await Deno.remove(partial).catch(() => {});
  await Deno.stderr.write(compile.stderr);
  const download = /download|dl\.deno\.land|denort|error sending request|dns/i.test(stderr);
  fail(
    download && !denort
      ? `deno compile could not get Deno's denort runtime (its release host is not reachable from ` +
        `this machine). Set DENORT_BIN to a denort ${Deno.version.deno} binary and run again; ` +
        `meanwhile bin/containerd-ts runs main.ts with deno ${Deno.version.deno}.`
      : `deno compile failed (exit ${compile.code}); nothing was written to ${target}`,
  );
}
const probe = await new Deno.Command(partial, {
  args: ["--version"],
  stdout: "piped",
  stderr: "piped",
})
  .output()
  .catch((err) => ({
    success: false,
    stdout: new Uint8Array(),
    stderr: new TextEncoder().encode(String(err)),
  }));
if (!probe.success) {
  await Deno.remove(partial).catch(() => {});
  fail(
    `the compiled binary does not run (${
      new TextDecoder().decode(probe.stderr).trim()
    }); removed it`,
  );
}
await Deno.rename(partial, target);
console.error(`build: wrote ${target} (${new TextDecoder().decode(probe.stdout).trim()})`);
