/**
 * `deno task smoke` end to end: it passes against a working build, and fails with one clear
 * line and a non-zero status when the daemon cannot boot (a required plugin that does not
 * exist).
 */
import assert from "node:assert/strict";
import { lastError, parseLogfmt } from "../tools/smoke.ts";
import { REPO } from "./harness.ts";

async function task(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "smoke", ...args],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("deno task smoke passes against the daemon, which then exits 0 with its socket gone", async () => {
  const { code, stdout, stderr } = await task([]);
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  const lines = stdout.trimEnd().split("\n");
  assert.match(lines.at(-1) ?? "", /^smoke: PASS \(\d+ checks, \d+ skipped, [\d.]+s\)$/);
  for (const step of ["boot", "version", "server", "plugins", "status", "shutdown"]) {
    assert.ok(
      lines.some((l) => l.startsWith(`ok   ${step}:`)),
      `no ok line for ${step}:\n${stdout}`,
    );
  }
  // Every service step either ran or says why it was skipped.
  for (const service of ["namespaces", "content", "leases", "events"]) {
    assert.ok(
      lines.some((l) => l.startsWith(`ok   ${service}:`) || l.startsWith(`skip ${service}:`)),
      `no line for ${service}:\n${stdout}`,
    );
  }
});

Deno.test("deno task smoke --required-plugin <missing> fails with one clear line", async () => {
  const { code, stdout, stderr } = await task([
    "--required-plugin",
    "io.containerd.nope.v1.missing",
  ]);
  assert.notEqual(code, 0, stdout);
  const last = stderr.trimEnd().split("\n").at(-1) ?? "";
  assert.match(
    last,
    /^smoke: FAIL: boot: daemon exited with status 1 before serving: .*io\.containerd\.nope\.v1\.missing/,
  );
  assert.doesNotMatch(stdout, /PASS/);
});

Deno.test("deno task smoke refuses an unknown flag with status 2", async () => {
  const { code, stderr } = await task(["--no-such-flag"]);
  assert.equal(code, 2);
  assert.match(stderr, /usage: deno task smoke/);
});

Deno.test("lastError picks the daemon's last error line from logfmt", () => {
  assert.deepEqual(parseLogfmt('time="t" level=error msg="a \\"b\\"" n=3'), {
    time: "t",
    level: "error",
    msg: 'a "b"',
    n: "3",
  });
  const log = [
    'time="1" level=info msg="starting"',
    'time="2" level=warn msg="failed to load plugin" error="x"',
    'time="3" level=error msg="containerd-ts failed to boot" error="required plugins did not load"',
    'time="4" level=info msg="bye"',
  ].join("\n");
  assert.equal(lastError(log), "containerd-ts failed to boot: required plugins did not load");
  assert.equal(
    lastError('time="1" level=info msg="only info"\n'),
    'time="1" level=info msg="only info"',
  );
  assert.equal(lastError(""), "(no output)");
});
