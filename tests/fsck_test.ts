/**
 * `containerd-ts fsck` against a root the real daemon wrote: ingest with Debian's ctr, stop,
 * corrupt a blob byte, find it, repair it, and boot again without it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ctr, ctrMissing, runLauncher, startDaemon } from "./harness.ts";

const skip = ctrMissing();
if (skip) console.log(skip);

async function ctrIngest(address: string, ref: string, data: Uint8Array): Promise<string> {
  const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
  const child = new Deno.Command("/usr/bin/ctr", {
    args: ["-a", address, "content", "ingest", "--expected-digest", digest, ref],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return digest;
}

Deno.test({
  name: "fsck finds a corrupted blob the daemon wrote, --repair removes it, the daemon agrees",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cts-fsck-" });
    try {
      let daemon = await startDaemon({ dir });
      // Let the scheduler's startup collection (100 ms after boot) pass before ingesting.
      await new Promise((r) => setTimeout(r, 400));
      let bad: string;
      let kept: string;
      try {
        bad = await ctrIngest(daemon.address, "bad", new TextEncoder().encode("to be corrupted\n"));
        kept = await ctrIngest(daemon.address, "kept", new TextEncoder().encode("kept intact\n"));
        for (const digest of [bad, kept]) {
          const labelled = await ctr(daemon.address, [
            "content",
            "label",
            digest,
            "containerd.io/gc.root=fsck-test",
          ]);
          assert.equal(labelled.code, 0, labelled.stderr);
        }
        // Read-only fsck beside the serving daemon is allowed and finds nothing.
        const live = await runLauncher(["fsck", "--root", daemon.root]);
        assert.equal(live.code, 0, live.stdout + live.stderr);
        // --repair beside it is refused.
        const refused = await runLauncher([
          "fsck",
          "--root",
          daemon.root,
          "-a",
          daemon.address,
          "--repair",
        ]);
        assert.equal(refused.code, 2, refused.stdout + refused.stderr);
        assert.match(refused.stderr, /refused/);
      } finally {
        await daemon.stop();
      }

      const blob = `${daemon.root}/io.containerd.content.v1.content/blobs/sha256/${
        bad.slice("sha256:".length)
      }`;
      await Deno.chmod(blob, 0o644);
      const bytes = await Deno.readFile(blob);
      bytes[0] = (bytes[0] ?? 0) ^ 0x01;
      await Deno.writeFile(blob, bytes);

      const found = await runLauncher(["fsck", "--root", daemon.root]);
      assert.equal(found.code, 1, found.stdout + found.stderr);
      assert.match(
        found.stdout,
        new RegExp(`^error corrupt blob ${bad}: .*namespace default`, "m"),
      );
      assert.ok(!found.stdout.includes(kept), found.stdout);

      const repaired = await runLauncher(["fsck", "--root", daemon.root, "--repair"]);
      assert.equal(repaired.code, 0, repaired.stdout + repaired.stderr);
      assert.match(repaired.stdout, new RegExp(`^repaired corrupt blob ${bad}: `, "m"));

      const again = await runLauncher(["fsck", "--root", daemon.root]);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /clean/);

      daemon = await startDaemon({ dir });
      try {
        const ls = await ctr(daemon.address, ["content", "ls", "-q"]);
        assert.equal(ls.code, 0, ls.stderr);
        assert.ok(!ls.stdout.includes(bad), ls.stdout);
        assert.ok(ls.stdout.includes(kept), ls.stdout);
      } finally {
        await daemon.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
