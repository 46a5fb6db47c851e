/** Tests for the bench's process-memory reading and how it starts the reference servers. */
import assert from "node:assert/strict";
import { daemonV8Flags, parseSmapsRollup, readMemoryKiB, REPO, startDaemon } from "./daemon.ts";

Deno.test("parseSmapsRollup splits Rss into anonymous and file-backed pages", () => {
  const text = [
    "55d0c0000000-7ffc8d0e4000 ---p 00000000 00:00 0                            [rollup]",
    "Rss:               81612 kB",
    "Pss:               54249 kB",
    "Pss_Anon:          27100 kB",
    "Shared_Clean:      53540 kB",
    "Private_Dirty:     27164 kB",
    "Anonymous:         27100 kB",
    "Swap:                  0 kB",
  ].join("\n");
  assert.deepEqual(parseSmapsRollup(text), { rss: 81612, anonymous: 27100, fileBacked: 54512 });
  assert.ok(Number.isNaN(parseSmapsRollup("Rss: 12 kB").anonymous));
});

Deno.test("readMemoryKiB of this process adds up, and is NaN for a process that is gone", async () => {
  const own = await readMemoryKiB(Deno.pid);
  assert.ok(own.anonymous > 0 && own.fileBacked > 0, JSON.stringify(own));
  assert.equal(own.anonymous + own.fileBacked, own.rss);
  const gone = await readMemoryKiB(2 ** 22 + 7);
  assert.ok(Number.isNaN(gone.rss));
});

Deno.test("the reference servers get the daemon's V8 flags, as deno.json's start task has them", async () => {
  const flags = await daemonV8Flags();
  assert.equal(flags.length, 1);
  const launcher = await Deno.readTextFile(`${REPO}/bin/containerd-ts`);
  assert.ok(launcher.includes(`v8_flags=${flags[0]}`), flags[0]);
});

Deno.test("the runtime reference is Deno alone: ready on its first line, measured, stopped", async () => {
  const runtime = await startDaemon("runtime", { bootTimeoutMs: 30_000 });
  try {
    assert.ok(runtime.bootMs > 0 && runtime.bootMs < 30_000, `${runtime.bootMs} ms`);
    const memory = await runtime.memoryKiB();
    assert.ok(memory.rss > 0 && memory.anonymous > 0, JSON.stringify(memory));
    const cmdline = await Deno.readTextFile(`/proc/${runtime.pid}/cmdline`);
    assert.match(cmdline, /bench\/idle\.js/);
  } finally {
    await runtime.stop();
  }
  assert.ok(Number.isNaN(await runtime.rssKiB()), "the process is gone after stop");
});
