/**
 * Containers that run, end to end: the real binary on temp dirs, Debian's ctr 1.6.20 and its
 * real `containerd-shim-runc-v2` and runc.
 *
 * - `ctr run --rm` prints the command's output on native and overlayfs and with `--rootfs`;
 *   the exit status reaches ctr (`exit 3` → 3).
 * - `ctr run -d`, `tasks ls` (RUNNING), `tasks ps`, `tasks exec`, `tasks kill` (the process's
 *   TERM trap runs), `tasks ls` (STOPPED), `tasks rm`, `containers rm`; afterwards no shim, no
 *   mount and no bundle is left.
 * - `ctr run -t` through tmux: the prompt appears, typed input runs, `exit 4` ends it with 4.
 * - `ctr events` shows /tasks/create, /tasks/start, /tasks/exit (with the status) and
 *   /tasks/delete.
 * - SIGTERM, then kill -9 of the daemon while containers run: after each restart the tasks
 *   are still RUNNING and can be killed and removed; a shim that died while no daemon ran is
 *   cleaned up at boot.
 * - kill -9 of a shim: the daemon cleans up (bundle, mounts) and publishes /tasks/exit.
 *
 * Every test uses its own namespace: runc keeps its state under /run/containerd/runc/<ns>,
 * which the real containerd on this machine shares.
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { dial } from "../client/connection.ts";
import { Snapshots } from "../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import {
  containersMissing,
  ctr,
  lines,
  makeTestImageTool,
  mountsUnder,
  ok,
  reapNamespace,
  sh,
  shimsOf,
  startDaemon,
  type TestDaemon,
  uniqueNamespace,
  waitFor,
} from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool();
const IMAGE = "docker.io/library/testbox:latest";

const skip = containersMissing();
if (skip) console.error(`tasks_test: ${skip}`);

/** `ctr tasks ls` as [id, pid, status] rows. */
async function taskRows(address: string, namespace: string): Promise<string[][]> {
  const out = await ok(ctr(address, ["tasks", "ls"], { namespace }));
  return lines(out.stdout).slice(1).map((l) => l.split(/\s+/));
}

async function importImage(address: string, namespace: string, work: string): Promise<void> {
  await ok(sh(MAKE_TEST_IMAGE as string, [`${work}/img.tar`]), "make-test-image");
  await ok(ctr(address, ["images", "import", `${work}/img.tar`], { namespace }));
}

/** Run `fn` with a fresh daemon, a namespace holding the test image, and full cleanup. */
async function withDaemon(
  prefix: string,
  fn: (ctx: { daemon: TestDaemon; namespace: string; work: string }) => Promise<void>,
): Promise<void> {
  const namespace = uniqueNamespace(prefix);
  const work = await Deno.makeTempDir({ prefix: "tasks-test-" });
  let daemon: TestDaemon | undefined;
  try {
    daemon = await startDaemon();
    await importImage(daemon.address, namespace, work);
    await fn({ daemon, namespace, work });
  } finally {
    await reapNamespace(namespace, daemon);
    await daemon?.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

const options = { ignore: skip !== undefined, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...options,
  name: "ctr run --rm prints output on native, overlayfs and --rootfs; exit status propagates",
  async fn() {
    await withDaemon("run", async ({ daemon, namespace, work }) => {
      const a = daemon.address;
      const overlay = await ok(ctr(a, ["run", "--rm", IMAGE, "c1", "/bin/echo", "hi"], {
        namespace,
      }));
      assert.equal(overlay.stdout, "hi\n");

      // ctr run unpacks the image for native itself
      const native = await ok(ctr(a, [
        "run",
        "--rm",
        "--snapshotter",
        "native",
        IMAGE,
        "c1n",
        "/bin/echo",
        "native-hi",
      ], { namespace }));
      assert.equal(native.stdout, "native-hi\n");

      // --rootfs: a plain directory (the host's static busybox), no snapshot, no rootfs mounts
      const rootfs = `${work}/rootfs`;
      await Deno.mkdir(`${rootfs}/bin`, { recursive: true });
      await Deno.copyFile("/bin/busybox", `${rootfs}/bin/busybox`);
      await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
      await Deno.symlink("busybox", `${rootfs}/bin/echo`);
      const byDir = await ok(ctr(a, ["run", "--rm", "--rootfs", rootfs, "c2", "/bin/echo", "ok"], {
        namespace,
      }));
      assert.equal(byDir.stdout, "ok\n");

      const failed = await ctr(a, ["run", "--rm", IMAGE, "c4", "/bin/sh", "-c", "exit 3"], {
        namespace,
      });
      assert.equal(failed.code, 3, failed.stderr);

      // a command runc cannot start, and a runtime with no shim: clear errors, nothing kept
      const noExec = await ctr(a, ["run", "--rm", IMAGE, "bad1", "/nonexistent"], { namespace });
      assert.equal(noExec.code, 1);
      assert.match(
        noExec.stderr,
        /failed to create shim task: OCI runtime create failed: .*\/nonexistent/,
      );
      const noShim = await ctr(a, [
        "run",
        "--rm",
        "--runtime",
        "io.containerd.nope.v1",
        IMAGE,
        "bad2",
        "/bin/true",
      ], { namespace });
      assert.equal(noShim.code, 1);
      assert.match(noShim.stderr, /binary not installed "containerd-shim-nope-v1"/);

      // nothing left behind: containers, bundles, shims, mounts
      assert.deepEqual(
        lines((await ok(ctr(a, ["containers", "ls", "-q"], { namespace }))).stdout),
        [],
      );
      await waitFor("shims to exit", async () => (await shimsOf(namespace)).length === 0);
      assert.deepEqual(await mountsUnder(daemon.dir), []);
      const bundles = `${daemon.state}/io.containerd.runtime.v2.task/${namespace}`;
      assert.deepEqual([...Deno.readDirSync(bundles)], []);
    });
  },
});

Deno.test({
  ...options,
  name: "ctr run -d, tasks ls/ps/exec/kill/rm, containers rm; nothing left behind",
  async fn() {
    await withDaemon("life", async ({ daemon, namespace }) => {
      const a = daemon.address;
      const events = new Deno.Command("/usr/bin/ctr", {
        args: ["-a", a, "events", `namespace==${namespace},topic~=/tasks/`],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const eventText = new Response(events.stdout).text();
      await new Promise((r) => setTimeout(r, 500));

      const script = "trap 'exit 5' TERM; while :; do sleep 0.1; done";
      await ok(ctr(a, ["run", "-d", IMAGE, "c3", "/bin/sh", "-c", script], { namespace }));
      const rows = await taskRows(a, namespace);
      assert.equal(rows.length, 1);
      const [id, pid, status] = rows[0] as string[];
      assert.equal(id, "c3");
      assert.equal(status, "RUNNING");
      assert.ok(Number(pid) > 0);

      const ps = lines((await ok(ctr(a, ["tasks", "ps", "c3"], { namespace }))).stdout);
      assert.ok(ps.slice(1).some((l) => l.split(/\s+/)[0] === pid), ps.join("\n"));

      const exec = await ok(
        ctr(a, ["tasks", "exec", "--exec-id", "e1", "c3", "/bin/echo", "inexec"], {
          namespace,
        }),
      );
      assert.equal(exec.stdout, "inexec\n");
      const execFail = await ctr(a, [
        "tasks",
        "exec",
        "--exec-id",
        "e2",
        "c3",
        "/bin/sh",
        "-c",
        "exit 9",
      ], {
        namespace,
      });
      assert.equal(execFail.code, 9, execFail.stderr);

      // pause, resume, metrics (the shim's cgroup stats), checkpoint refused clearly
      await ok(ctr(a, ["tasks", "pause", "c3"], { namespace }));
      assert.equal((await taskRows(a, namespace))[0]?.[2], "PAUSED");
      await ok(ctr(a, ["tasks", "resume", "c3"], { namespace }));
      assert.equal((await taskRows(a, namespace))[0]?.[2], "RUNNING");
      const metrics = await ok(ctr(a, ["tasks", "metrics", "--format", "json", "c3"], {
        namespace,
      }));
      assert.ok(JSON.parse(metrics.stdout).pids.current >= 1, metrics.stdout);
      const checkpoint = await ctr(a, ["tasks", "checkpoint", "c3"], { namespace });
      assert.notEqual(checkpoint.code, 0);
      assert.match(checkpoint.stderr, /not supported by containerd-ts: not implemented/);

      // a task of the same id cannot be created twice
      const again = await ctr(a, ["tasks", "start", "c3"], { namespace });
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /already exists/);

      await ok(ctr(a, ["tasks", "kill", "c3"], { namespace }));
      await waitFor("c3 to stop", async () => (await taskRows(a, namespace))[0]?.[2] === "STOPPED");
      const killAgain = await ctr(a, ["tasks", "kill", "c3"], { namespace });
      assert.notEqual(killAgain.code, 0);
      assert.match(killAgain.stderr, /process already finished: not found/);

      const rm = await ok(ctr(a, ["tasks", "rm", "c3"], { namespace }));
      assert.match(rm.stderr, /exit code 5/);
      assert.deepEqual(await taskRows(a, namespace), []);
      const missingTask = await ctr(a, ["tasks", "ps", "c3"], { namespace });
      assert.notEqual(missingTask.code, 0);
      assert.match(missingTask.stderr, /task c3 not found/);
      await ok(ctr(a, ["containers", "rm", "c3"], { namespace }));

      await waitFor("the shim to exit", async () => (await shimsOf(namespace)).length === 0);
      assert.deepEqual(await mountsUnder(daemon.dir), []);
      assert.deepEqual(
        [...Deno.readDirSync(`${daemon.state}/io.containerd.runtime.v2.task/${namespace}`)],
        [],
      );

      events.kill("SIGTERM");
      const seen = await eventText;
      for (
        const topic of [
          "/tasks/create",
          "/tasks/paused",
          "/tasks/resumed",
          "/tasks/start",
          "/tasks/exec-added",
          "/tasks/exec-started",
          "/tasks/exit",
          "/tasks/delete",
        ]
      ) {
        assert.match(seen, new RegExp(`${namespace} ${topic} `), `${topic} missing in:\n${seen}`);
      }
      assert.match(seen, /\/tasks\/exit \{"container_id":"c3","id":"c3","pid":\d+,"exit_status":5/);
    });
  },
});

Deno.test({
  ...options,
  name: "ctr run -t through tmux: prompt, typed input, exit status",
  async fn() {
    const tmux = await sh("sh", ["-c", "command -v tmux"]);
    if (tmux.code !== 0) {
      console.error("tasks_test: SKIP tty case: tmux not installed (apt-get install tmux)");
      return;
    }
    await withDaemon("tty", async ({ daemon, namespace, work }) => {
      const session = `cts-${namespace}`;
      const marker = `${work}/exit-status`;
      const command =
        `/usr/bin/ctr -a ${daemon.address} -n ${namespace} run -t --rm ${IMAGE} t1 /bin/sh; echo $? > ${marker}`;
      await ok(
        sh("tmux", ["new-session", "-d", "-s", session, "-x", "100", "-y", "30", command]),
        "tmux",
      );
      try {
        const pane = async () => (await sh("tmux", ["capture-pane", "-p", "-t", session])).stdout;
        await waitFor("the shell prompt", async () => (await pane()).includes("/ #"));
        await ok(sh("tmux", ["send-keys", "-t", session, "echo tty-$((6*7))", "Enter"]), "send");
        await waitFor("the echo", async () => (await pane()).includes("tty-42"));
        await ok(sh("tmux", ["send-keys", "-t", session, "exit 4", "Enter"]), "send");
        await waitFor("ctr to exit", async () => {
          try {
            return (await Deno.readTextFile(marker)).trim() !== "";
          } catch {
            return false;
          }
        });
        assert.equal((await Deno.readTextFile(marker)).trim(), "4");
      } finally {
        await sh("tmux", ["kill-session", "-t", session]);
      }
    });
  },
});

Deno.test({
  ...options,
  name:
    "SIGTERM and kill -9 of the daemon: tasks survive, reconnect, and dead shims are cleaned up",
  async fn() {
    const namespace = uniqueNamespace("restart");
    const work = await Deno.makeTempDir({ prefix: "tasks-test-" });
    const dir = await Deno.makeTempDir({ prefix: "cts-" });
    let daemon: TestDaemon | undefined;
    try {
      daemon = await startDaemon({ dir });
      await importImage(daemon.address, namespace, work);
      await ok(
        ctr(daemon.address, ["run", "-d", IMAGE, "r1", "/bin/sleep", "1000"], { namespace }),
      );
      await ok(
        ctr(daemon.address, ["run", "-d", IMAGE, "r2", "/bin/sleep", "1000"], { namespace }),
      );
      const r2pid = (await taskRows(daemon.address, namespace)).find((r) => r[0] === "r2")?.[1];
      assert.ok(r2pid);
      // a graceful stop leaves the containers running, and the next boot reconnects
      await daemon.stop();
      daemon = await startDaemon({ dir });
      assert.deepEqual((await taskRows(daemon.address, namespace)).map((r) => [r[0], r[2]]), [
        ["r1", "RUNNING"],
        ["r2", "RUNNING"],
      ]);
      daemon.process.kill("SIGKILL");
      await daemon.exited;
      // r2's shim dies while no daemon runs: the next boot cleans up after it
      const r2shim = (await shimsOf(namespace)).find((l) => l.includes(" -id r2 "));
      assert.ok(r2shim);
      await ok(sh("kill", ["-9", r2shim.split(" ")[0] as string]), "kill r2's shim");

      daemon = await startDaemon({ dir });
      const a = daemon.address;
      assert.match(daemon.log(), /reconnected to shim.*id=r1/);
      assert.match(daemon.log(), /shim of a previous daemon is gone; cleaning up.*id=r2/);
      const rows = await taskRows(a, namespace);
      assert.deepEqual(rows.map((r) => [r[0], r[2]]), [["r1", "RUNNING"]]);
      await assert.rejects(
        Deno.lstat(`${daemon.state}/io.containerd.runtime.v2.task/${namespace}/r2`),
        Deno.errors.NotFound,
      );
      await waitFor("r2's process to be gone", async () => {
        try {
          return (await Deno.readTextFile(`/proc/${r2pid}/stat`)).includes(" Z ");
        } catch {
          return true;
        }
      });
      assert.ok(!(await mountsUnder(dir)).some((m) => m.includes("/r2/")));
      await ok(ctr(a, ["containers", "rm", "r2"], { namespace }));
      await ok(ctr(a, ["tasks", "kill", "-s", "SIGKILL", "r1"], { namespace }));
      await waitFor("r1 to stop", async () => (await taskRows(a, namespace))[0]?.[2] === "STOPPED");
      await ok(ctr(a, ["tasks", "rm", "r1"], { namespace }));
      await ok(ctr(a, ["containers", "rm", "r1"], { namespace }));
      await waitFor("the shim to exit", async () => (await shimsOf(namespace)).length === 0);
      assert.deepEqual(await mountsUnder(dir), []);
    } finally {
      await reapNamespace(namespace, daemon);
      await daemon?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  ...options,
  name: "kill -9 of a shim: the daemon cleans up and publishes /tasks/exit and /tasks/delete",
  async fn() {
    await withDaemon("deadshim", async ({ daemon, namespace }) => {
      const a = daemon.address;
      await ok(ctr(a, ["run", "-d", IMAGE, "d1", "/bin/sleep", "1000"], { namespace }));
      const events = new Deno.Command("/usr/bin/ctr", {
        args: ["-a", a, "events", `namespace==${namespace}`],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const eventText = new Response(events.stdout).text();
      await new Promise((r) => setTimeout(r, 500));
      const shims = await shimsOf(namespace);
      assert.equal(shims.length, 1, shims.join("\n"));
      await ok(sh("kill", ["-9", (shims[0] as string).split(" ")[0] as string]), "kill shim");

      await waitFor("the task to go", async () => (await taskRows(a, namespace)).length === 0);
      const bundle = `${daemon.state}/io.containerd.runtime.v2.task/${namespace}/d1`;
      await waitFor("the bundle to go", async () => {
        try {
          await Deno.lstat(bundle);
          return false;
        } catch {
          return true;
        }
      });
      assert.deepEqual(await mountsUnder(`${daemon.state}`), []);
      await new Promise((r) => setTimeout(r, 300));
      events.kill("SIGTERM");
      const seen = await eventText;
      assert.match(seen, /\/tasks\/exit \{"container_id":"d1","id":"d1"/, seen);
      assert.match(seen, /\/tasks\/delete \{"container_id":"d1"/, seen);
      await ok(ctr(a, ["containers", "rm", "d1"], { namespace }));
    });
  },
});

Deno.test({
  ...options,
  name:
    "a shim that dies during Tasks/Create leaves no runc container: the id can be created again",
  async fn() {
    await withDaemon("deadcreate", async ({ daemon, namespace, work }) => {
      const a = daemon.address;
      await ok(ctr(a, ["containers", "create", IMAGE, "k1", "/bin/true"], { namespace }));
      const conn = dial({ address: a });
      try {
        const headers = { "containerd-namespace": namespace };
        const mounts = await createClient(Snapshots, conn.transport).mounts(
          { snapshotter: "overlayfs", key: "k1" },
          { headers },
        );
        // containerd 1.6's runc shim exits during Create when stdout is a file:// URI and
        // stderr is empty: the connection drops in the middle of the call
        const failed = await createClient(Tasks, conn.transport).create({
          containerId: "k1",
          rootfs: mounts.mounts,
          stdout: `file://${work}/out`,
          stderr: "",
        }, { headers }).then(() => undefined, (err: Error) => err);
        assert.ok(failed, "the create should have failed");
        assert.match(failed.message, /failed to create shim task/);
      } finally {
        await conn.close();
      }
      const runcState = `/run/containerd/runc/${namespace}/k1`;
      await assert.rejects(Deno.lstat(runcState), Deno.errors.NotFound);
      assert.deepEqual(await taskRows(a, namespace), []);
      // the same id runs fine afterwards (ctr tasks start waits and removes the task)
      await ok(ctr(a, ["tasks", "start", "k1"], { namespace }));
      assert.deepEqual(await taskRows(a, namespace), []);
      await ok(ctr(a, ["containers", "rm", "k1"], { namespace }));
    });
  },
});
