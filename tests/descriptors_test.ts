/**
 * Descriptor hygiene of the running daemon, watched with strace: through a workload that
 * touches every kind of socket it owns — gRPC connections from ctr and from the TS client, the
 * ttrpc socket and the shim's ttrpc server (a container run), the debug HTTP socket — and
 * through its stop, no close() by the daemon answers EBADF.
 *
 * A close answered EBADF means some code closed a descriptor number it no longer owned. When
 * another thread had been given that number in between, its file is closed under it: that is
 * how Deno 2.9.3's node:net unix sockets (which close each descriptor twice) aborted the daemon
 * with "unexpected error during closedir: Bad file descriptor" in a concurrent Deno.remove.
 * Counting the EBADF answers catches the double close every time, not only when the race
 * is lost. Needs strace (installed by tests/setup.ts as root) and what running containers
 * needs; prints SKIP otherwise.
 */
import assert from "node:assert/strict";
import { connect } from "../client/client.ts";
import {
  containersMissing,
  ctr,
  makeTestImageTool,
  ok,
  reapNamespace,
  sh,
  startDaemon,
  tracedChild,
  uniqueNamespace,
} from "./harness.ts";

const STRACE = "/usr/bin/strace";

function straceMissing(): string | undefined {
  try {
    Deno.statSync(STRACE);
    return undefined;
  } catch {
    return "SKIP: strace not installed (apt-get install strace)";
  }
}

const skip = containersMissing() ?? straceMissing();
if (skip) console.error(`descriptors_test: ${skip}`);

/**
 * The tasks sharing the descriptor table of `root` (its threads; children made without
 * CLONE_FILES, such as posix_spawn's, have their own), from an `strace -f` trace of clone calls.
 */
export function sharedTableTasks(trace: readonly string[], root: number): Set<number> {
  const tasks = new Set([root]);
  const pendingShares = new Map<number, boolean>();
  const edges: [number, number][] = [];
  for (const line of trace) {
    // strace pads the pid column: "7033  clone3(...)" as well as "18053 clone3(...)".
    const match = /^(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const tid = Number(match[1]);
    const rest = match[2]!;
    const result = /\) = (\d+)$/.exec(rest);
    if (/^(clone3?|fork|vfork)\(/.test(rest)) {
      const shares = rest.includes("CLONE_FILES");
      if (result) {
        if (shares) edges.push([tid, Number(result[1])]);
      } else pendingShares.set(tid, shares);
    } else if (/^<\.\.\. (clone3?|fork|vfork) resumed>/.test(rest)) {
      const shares = pendingShares.get(tid) ?? false;
      pendingShares.delete(tid);
      if (result && shares) edges.push([tid, Number(result[1])]);
    }
  }
  // Threads may create threads; follow the edges until nothing new joins.
  for (let grew = true; grew;) {
    grew = false;
    for (const [parent, child] of edges) {
      if (tasks.has(parent) && !tasks.has(child)) {
        tasks.add(child);
        grew = true;
      }
    }
  }
  return tasks;
}

/** Lines of `trace` where one of `tasks` got EBADF from close or close_range. */
export function badCloses(trace: readonly string[], tasks: Set<number>): string[] {
  return trace.filter((line) => {
    const match = /^(\d+)\s+(close(_range)?\(|<\.\.\. close(_range)? resumed>).*= -1 EBADF/
      .exec(line);
    return match !== null && tasks.has(Number(match[1]));
  });
}

Deno.test("sharedTableTasks follows threads, not spawned processes; badCloses picks EBADF", () => {
  const trace = [
    "100 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD}, 88) = 101",
    "101 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD} <unfinished ...>",
    "100 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 200",
    "101 <... clone3 resumed> => {parent_tid=[102]}, 88) = 102",
    "102 close(7)                         = -1 EBADF (Bad file descriptor)",
    "200 close(8)                         = -1 EBADF (Bad file descriptor)",
    "100 close(9 <unfinished ...>",
    "100 <... close resumed>)             = -1 EBADF (Bad file descriptor)",
    "101 close(10)                        = 0",
    "102  clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD}, 88) = 103", // padded pid column
    "103  close(11)                       = -1 EBADF (Bad file descriptor)",
  ];
  const tasks = sharedTableTasks(trace, 100);
  assert.deepEqual([...tasks].sort(), [100, 101, 102, 103]);
  assert.deepEqual(badCloses(trace, tasks).map((l) => l.split(" ")[0]), ["102", "100", "103"]);
});

Deno.test({
  name: "no descriptor is closed twice by the daemon under ctr, client, shim and debug traffic",
  ignore: skip !== undefined,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "cts-fd-" });
    const tracePath = `${work}/trace`;
    const namespace = uniqueNamespace("fds");
    const daemon = await startDaemon({
      tracer: [
        STRACE,
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-e",
        "trace=close,close_range,clone,clone3,fork,vfork",
        "-o",
        tracePath,
      ],
      config: `version = 2\n[debug]\n  address = "${work}/debug.sock"\n`,
    });
    try {
      // The daemon is strace's child (the launcher execs the runtime in the same process).
      const root = tracedChild(daemon.process.pid);
      assert.ok(root !== undefined, "the traced daemon's pid");
      for (let i = 0; i < 3; i++) await ok(ctr(daemon.address, ["version"]));
      await ok(sh(makeTestImageTool() as string, [`${work}/img.tar`]), "make-test-image");
      await ok(ctr(daemon.address, ["images", "import", `${work}/img.tar`], { namespace }));
      await ok(ctr(daemon.address, [
        "run",
        "--rm",
        "docker.io/library/testbox:latest",
        "fd1",
        "/bin/true",
      ], { namespace }));
      await ok(sh("curl", ["-sf", "--unix-socket", `${work}/debug.sock`, "http://d/debug/vars"]));
      {
        await using client = connect({ address: daemon.address, timeoutMs: 10_000 });
        assert.ok((await client.namespaces.list()).some((ns) => ns.name === namespace));
      }
      const status = await daemon.stop();
      assert.equal(status.code, 0, daemon.log());
      const trace = (await Deno.readTextFile(tracePath)).split("\n");
      const tasks = sharedTableTasks(trace, root);
      assert.ok(tasks.size > 3, `the daemon's threads are found (${tasks.size})`);
      assert.ok(
        trace.some((l) => tasks.has(Number(l.split(" ")[0])) && /\sclose\(\d+\)\s+= 0/.test(l)),
        "the trace holds the daemon's closes",
      );
      assert.deepEqual(badCloses(trace, tasks), [], "closes answered EBADF");
    } finally {
      await daemon.stop();
      await reapNamespace(namespace);
      await Deno.remove(work, { recursive: true });
    }
  },
});
