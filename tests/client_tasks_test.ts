/**
 * The typed client's Containers and Tasks wrappers against the real binary, Debian's
 * `containerd-shim-runc-v2` and runc (Debian's ctr as the reference where it helps):
 *
 * - containers CRUD: the spec round-trips as an object, ctr reads what the client wrote and
 *   the client reads what ctr wrote; NotFound / AlreadyExists / InvalidArgument are typed.
 * - a run: snapshot prepared on the image's top chain ID, default spec, task with stdout to a
 *   `file://` URI, `sh -c 'echo out; exit 3'` → wait gives 3 and the file holds "out"; after
 *   delete nothing is left (no shim, no mount, no bundle).
 * - a long-running task: status created → running → paused → running → stopped, list, pids,
 *   metrics, exec (output file, exit status, pids naming the exec), closeIO ending an exec's
 *   `cat`, kill by name with the TERM trap's status reaching wait, kill after exit NotFound,
 *   create twice AlreadyExists, Get after delete NotFound.
 * - wait aborted through an AbortSignal rejects with CanceledError and leaves the task
 *   running; a later wait sees the SIGKILL (137).
 * - runContainer: output and status of a run, a kept log file, env and a spec hook; an abort
 *   kills the task; a missing image, a taken id and a bad command leave nothing behind.
 *
 * Every test uses its own namespace (`cli-...`): runc keeps its state under
 * /run/containerd/runc/<ns>, which the real containerd on this machine shares.
 */
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  CanceledError,
  type Client,
  connect,
  defaultSpec,
  fileURI,
  imageChainIDs,
  importArchive,
  InvalidArgumentError,
  isNotFound,
  NotFoundError,
  runContainer,
} from "../client/mod.ts";
import {
  containersMissing,
  ctr,
  lines,
  makeTestImageTool,
  mountsUnder,
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
if (skip) console.error(`client_tasks_test: ${skip}`);

interface Ctx {
  daemon: TestDaemon;
  namespace: string;
  work: string;
  /** A client of the test's namespace. */
  client: Client;
  /** The image's top snapshot (chain ID), unpacked on overlayfs. */
  top: string;
}

/** Run `fn` with a fresh daemon, a namespace holding the test image, and full cleanup. */
async function withDaemon(prefix: string, fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const namespace = uniqueNamespace(`cli-${prefix}`);
  const work = await Deno.makeTempDir({ prefix: "client-tasks-test-" });
  let daemon: TestDaemon | undefined;
  let client: Client | undefined;
  try {
    daemon = await startDaemon();
    client = connect({ address: daemon.address, namespace });
    const made = await sh(MAKE_TEST_IMAGE as string, [`${work}/img.tar`]);
    assert.equal(made.code, 0, made.stderr);
    const [image] = await importArchive(client, `${work}/img.tar`);
    assert.equal(image?.name, IMAGE);
    await fn({ daemon, namespace, work, client, top: image.chainIDs.at(-1) as string });
  } finally {
    await reapNamespace(namespace, daemon);
    await client?.close();
    await daemon?.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * A container `id` running `args` on a fresh snapshot of the image; returns its mounts. As
 * ctr, under a lease until the container record references the snapshot: an active snapshot
 * nothing references is the garbage collector's to take.
 */
async function makeContainer(ctx: Ctx, id: string, args: string[]) {
  await using lease = await ctx.client.leases.create();
  const leased = ctx.client.withLease(lease);
  const rootfs = await leased.snapshots.prepare(id, ctx.top);
  await leased.containers.create({
    id,
    image: IMAGE,
    spec: defaultSpec({ namespace: ctx.namespace, id, args }),
    snapshotter: "overlayfs",
    snapshotKey: id,
  });
  return rootfs;
}

/** Remove a container made by {@link makeContainer} whose task is gone. */
async function removeContainer(ctx: Ctx, id: string): Promise<void> {
  await ctx.client.snapshots.remove(id);
  await ctx.client.containers.delete(id);
}

/** Nothing of the namespace's tasks is left: no shim, no mount, no bundle. */
async function assertNothingLeft(ctx: Ctx): Promise<void> {
  await waitFor("the shims to exit", async () => (await shimsOf(ctx.namespace)).length === 0);
  assert.deepEqual(await mountsUnder(ctx.daemon.state), []);
  const bundles = `${ctx.daemon.state}/io.containerd.runtime.v2.task/${ctx.namespace}`;
  assert.deepEqual([...Deno.readDirSync(bundles)], []);
}

const options = { ignore: skip !== undefined, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...options,
  name: "containers: CRUD through the client, typed errors, ctr reads and writes the same records",
  async fn() {
    await withDaemon("crud", async (ctx) => {
      const { client, daemon, namespace } = ctx;
      const spec = defaultSpec({ namespace, id: "c1", args: ["/bin/echo", "hi"] });
      const created = await client.containers.create({
        id: "c1",
        image: IMAGE,
        spec,
        labels: { owner: "client" },
        snapshotter: "overlayfs",
        snapshotKey: "c1-snap",
      });
      assert.deepEqual(created.spec, spec);
      assert.equal(created.runtime.name, "io.containerd.runc.v2");

      // ctr sees the record the client wrote, spec included
      const info = await ctr(daemon.address, ["containers", "info", "c1"], { namespace });
      assert.equal(info.code, 0, info.stderr);
      const ctrView = JSON.parse(info.stdout);
      assert.equal(ctrView.Image, IMAGE);
      assert.deepEqual(ctrView.Labels, { owner: "client" });
      assert.equal(ctrView.Runtime.Name, "io.containerd.runc.v2");
      assert.deepEqual(ctrView.Spec.process.args, ["/bin/echo", "hi"]);
      assert.equal(ctrView.SnapshotKey, "c1-snap");

      // and the client reads what ctr wrote
      const byCtr = await ctr(daemon.address, ["containers", "create", IMAGE, "c2", "/bin/true"], {
        namespace,
      });
      assert.equal(byCtr.code, 0, byCtr.stderr);
      const c2 = await client.containers.get("c2");
      assert.deepEqual(c2.spec?.process?.args, ["/bin/true"]);
      assert.equal(c2.spec?.root?.path, "rootfs");
      assert.equal(c2.runtime.options?.typeUrl, "containerd.runc.v1.Options");
      assert.equal(c2.image, IMAGE);

      assert.deepEqual((await client.containers.list()).map((c) => c.id).sort(), ["c1", "c2"]);
      assert.deepEqual(
        (await client.containers.list({ filters: ["labels.owner==client"] })).map((c) => c.id),
        ["c1"],
      );
      const updated = await client.containers.update({ id: "c1", labels: { stage: "x" } }, {
        fields: ["labels.stage"],
      });
      assert.deepEqual(updated.labels, { owner: "client", stage: "x" });
      const label = await ctr(daemon.address, ["containers", "label", "c1", "stage="], {
        namespace,
      });
      assert.equal(label.code, 0, label.stderr);
      assert.deepEqual((await client.containers.get("c1")).labels, { owner: "client" });

      await assert.rejects(
        client.containers.create({ id: "c1", spec }),
        (err: unknown) => err instanceof AlreadyExistsError && /c1/.test(err.message),
      );
      await assert.rejects(
        client.containers.get("nope"),
        (err: unknown) => err instanceof NotFoundError && /nope/.test(err.message),
      );
      await assert.rejects(client.containers.delete("nope"), NotFoundError);
      await assert.rejects(client.containers.update({ id: "nope", image: "x" }), NotFoundError);
      await assert.rejects(client.containers.create({ id: "bad/id", spec }), InvalidArgumentError);
      // another namespace sees nothing
      assert.deepEqual(await client.withNamespace(`${namespace}-other`).containers.list(), []);

      await client.containers.delete("c1");
      await client.containers.delete("c2");
      assert.deepEqual(await client.containers.list(), []);
    });
  },
});

Deno.test({
  ...options,
  name: "tasks: sh -c 'echo out; exit 3' with stdout to a file; exit status 3; nothing left",
  async fn() {
    await withDaemon("run", async (ctx) => {
      const { client } = ctx;
      const log = `${ctx.work}/out.log`;
      const rootfs = await makeContainer(ctx, "r1", ["/bin/sh", "-c", "echo out; exit 3"]);
      const created = await client.tasks.create({
        containerId: "r1",
        rootfs,
        stdout: fileURI(log),
      });
      assert.equal(created.containerId, "r1");
      assert.ok(created.pid > 0);
      const state = await client.tasks.get("r1");
      assert.equal(state.status, "created");
      assert.equal(state.stdout, fileURI(log));
      assert.equal(state.exitedAt, undefined);

      const exited = client.tasks.wait("r1");
      const started = await client.tasks.start("r1");
      assert.equal(started.pid, created.pid);
      const { exitStatus, exitedAt } = await exited;
      assert.equal(exitStatus, 3);
      assert.ok(Math.abs(exitedAt.getTime() - Date.now()) < 60_000, String(exitedAt));
      assert.equal(await Deno.readTextFile(log), "out\n");

      const stopped = await client.tasks.get("r1");
      assert.equal(stopped.status, "stopped");
      assert.equal(stopped.exitStatus, 3);
      assert.ok(stopped.exitedAt instanceof Date);
      // a second wait answers at once
      assert.equal((await client.tasks.wait("r1")).exitStatus, 3);

      const deleted = await client.tasks.delete("r1");
      assert.equal(deleted.exitStatus, 3);
      assert.equal(deleted.pid, created.pid);
      await assert.rejects(
        client.tasks.get("r1"),
        (err: unknown) => err instanceof NotFoundError && /task r1 not found/.test(err.message),
      );
      await removeContainer(ctx, "r1");
      await assertNothingLeft(ctx);

      // a command runc cannot start: the runtime's error, no task kept
      const badRootfs = await makeContainer(ctx, "r2", ["/nonexistent"]);
      await assert.rejects(
        client.tasks.create({ containerId: "r2", rootfs: badRootfs }),
        /OCI runtime create failed: .*\/nonexistent/,
      );
      assert.deepEqual(await client.tasks.list(), []);
      await removeContainer(ctx, "r2");
      // no container, no task
      await assert.rejects(client.tasks.create({ containerId: "nope" }), NotFoundError);
      await assertNothingLeft(ctx);
    });
  },
});

Deno.test({
  ...options,
  name: "tasks: status transitions, list, pids, metrics, exec, closeIO, kill, errors",
  async fn() {
    await withDaemon("life", async (ctx) => {
      const { client, work } = ctx;
      const script = "trap 'exit 5' TERM; while :; do sleep 0.1; done";
      const rootfs = await makeContainer(ctx, "l1", ["/bin/sh", "-c", script]);
      const { pid } = await client.tasks.create({ containerId: "l1", rootfs });
      assert.deepEqual(
        (await client.tasks.list()).map((t) => [t.id, t.status, t.pid]),
        [["l1", "created", pid]],
      );
      await assert.rejects(
        client.tasks.create({ containerId: "l1", rootfs }),
        AlreadyExistsError,
      );
      await client.tasks.start("l1");
      assert.equal((await client.tasks.get("l1")).status, "running");
      // ctr sees the task the client made
      const ls = await ctr(ctx.daemon.address, ["tasks", "ls"], { namespace: ctx.namespace });
      assert.deepEqual(lines(ls.stdout).slice(1).map((l) => l.split(/\s+/)), [
        ["l1", String(pid), "RUNNING"],
      ]);
      // resources of a running task change (checked where the cgroup is visible)
      await client.tasks.update("l1", { resources: { pids: { limit: 64 } } });
      for (
        const file of [
          `/sys/fs/cgroup/pids/${ctx.namespace}/l1/pids.max`, // cgroup v1
          `/sys/fs/cgroup/${ctx.namespace}/l1/pids.max`, // cgroup v2
        ]
      ) {
        const limit = await Deno.readTextFile(file).catch(() => undefined);
        if (limit !== undefined) assert.equal(limit.trim(), "64", file);
      }

      const pids = await client.tasks.listPids("l1");
      assert.ok(pids.some((p) => p.pid === pid), JSON.stringify(pids));

      // exec: output to its own file, exit status through wait, then deleteProcess
      const execLog = `${work}/exec.log`;
      await client.tasks.exec("l1", "e1", {
        process: { args: ["/bin/sh", "-c", "echo inexec; exit 9"] },
        stdout: fileURI(execLog),
      });
      assert.equal((await client.tasks.get("l1", { execId: "e1" })).status, "created");
      await assert.rejects(
        client.tasks.exec("l1", "e1", { process: { args: ["/bin/true"] } }),
        AlreadyExistsError,
      );
      const execDone = client.tasks.wait("l1", { execId: "e1" });
      const execStarted = await client.tasks.start("l1", { execId: "e1" });
      assert.ok(execStarted.pid > 0);
      assert.equal((await execDone).exitStatus, 9);
      assert.equal(await Deno.readTextFile(execLog), "inexec\n");
      const execGone = await client.tasks.deleteProcess("l1", "e1");
      assert.equal(execGone.exitStatus, 9);
      assert.equal(execGone.id, "e1");
      await assert.rejects(client.tasks.get("l1", { execId: "e1" }), NotFoundError);

      // an exec reading a FIFO: its pid is listed with the exec id; once the writer is gone,
      // closeIO (the shim's own write end) ends its input
      const fifo = `${work}/stdin`;
      assert.equal((await sh("mkfifo", [fifo])).code, 0);
      const catLog = `${work}/cat.log`;
      await client.tasks.exec("l1", "cat", {
        process: { args: ["/bin/cat"] },
        stdin: fifo,
        stdout: fileURI(catLog),
      });
      const catDone = client.tasks.wait("l1", { execId: "cat" });
      const catPid = (await client.tasks.start("l1", { execId: "cat" })).pid;
      // read+write: opening a FIFO so never blocks, whoever else has it open
      const input = await Deno.open(fifo, { read: true, write: true });
      try {
        await input.write(new TextEncoder().encode("via stdin\n"));
      } finally {
        input.close();
      }
      await waitFor("cat's output", async () => {
        try {
          return (await Deno.readTextFile(catLog)) === "via stdin\n";
        } catch {
          return false;
        }
      });
      const withExec = await client.tasks.listPids("l1");
      assert.equal(withExec.find((p) => p.pid === catPid)?.execId, "cat", JSON.stringify(withExec));
      assert.equal((await client.tasks.get("l1", { execId: "cat" })).status, "running");
      await client.tasks.closeIO("l1", { execId: "cat" });
      assert.equal((await catDone).exitStatus, 0);
      await client.tasks.deleteProcess("l1", "cat");

      // pause and resume
      await client.tasks.pause("l1");
      assert.equal((await client.tasks.get("l1")).status, "paused");
      await client.tasks.resume("l1");
      assert.equal((await client.tasks.get("l1")).status, "running");

      const metrics = await client.tasks.metrics({ filters: ["id==l1"] });
      assert.equal(metrics.length, 1);
      assert.equal(metrics[0]?.id, "l1");
      assert.match(metrics[0]?.data?.typeUrl ?? "", /io\.containerd\.cgroups\.v[12]\.Metrics/);
      assert.ok((metrics[0]?.data?.value.length ?? 0) > 0);
      assert.deepEqual(await client.tasks.metrics({ filters: ["id==other"] }), []);

      // a running task cannot be deleted
      await assert.rejects(client.tasks.delete("l1"), (err: unknown) => !isNotFound(err));
      assert.equal((await client.tasks.get("l1")).status, "running");

      // kill by name: the TERM trap's status reaches wait
      const exited = client.tasks.wait("l1");
      await client.tasks.kill("l1", "SIGTERM");
      assert.equal((await exited).exitStatus, 5);
      assert.equal((await client.tasks.get("l1")).status, "stopped");
      await assert.rejects(
        client.tasks.kill("l1", "KILL"),
        (err: unknown) => err instanceof NotFoundError && /already finished/.test(err.message),
      );
      await assert.rejects(client.tasks.kill("l1", "SIGNOPE"), InvalidArgumentError);

      assert.equal((await client.tasks.delete("l1")).exitStatus, 5);
      assert.deepEqual(await client.tasks.list(), []);
      await assert.rejects(client.tasks.get("l1"), NotFoundError);
      await assert.rejects(client.tasks.kill("l1"), NotFoundError);
      await removeContainer(ctx, "l1");
      await assertNothingLeft(ctx);
    });
  },
});

Deno.test({
  ...options,
  name: "tasks: a wait aborted by its AbortSignal rejects CanceledError; the task runs on",
  async fn() {
    await withDaemon("wait", async (ctx) => {
      const { client } = ctx;
      const rootfs = await makeContainer(ctx, "w1", ["/bin/sleep", "1000"]);
      await client.tasks.create({ containerId: "w1", rootfs });
      await client.tasks.start("w1");

      const abort = new AbortController();
      const waiting = client.tasks.wait("w1", { signal: abort.signal });
      const early = await Promise.race([
        waiting.then(() => "resolved", () => "rejected"),
        new Promise((r) => setTimeout(() => r("pending"), 300)),
      ]);
      assert.equal(early, "pending");
      const started = Date.now();
      abort.abort();
      await assert.rejects(waiting, CanceledError);
      assert.ok(Date.now() - started < 2_000);
      // already aborted: rejects without waiting
      await assert.rejects(client.tasks.wait("w1", { signal: abort.signal }), CanceledError);
      // a deadline works the same way
      await assert.rejects(client.tasks.wait("w1", { timeoutMs: 200 }), /deadline|timed out/i);

      assert.equal((await client.tasks.get("w1")).status, "running");
      const exited = client.tasks.wait("w1");
      await client.tasks.kill("w1", 9);
      assert.equal((await exited).exitStatus, 137);
      await client.tasks.delete("w1");
      await removeContainer(ctx, "w1");
      await assertNothingLeft(ctx);
    });
  },
});

Deno.test({
  ...options,
  name: "runContainer: output and status; abort kills; failures leave nothing behind",
  async fn() {
    await withDaemon("runc", async (ctx) => {
      const { client, work } = ctx;
      assert.deepEqual((await imageChainIDs(client, IMAGE)).at(-1), ctx.top);
      const snapshotsBefore = (await client.snapshots.list()).map((s) => s.name).sort();
      const nothingMade = async () => {
        assert.deepEqual(await client.tasks.list(), []);
        assert.deepEqual(await client.containers.list(), []);
        assert.deepEqual(
          (await client.snapshots.list()).map((s) => s.name).sort(),
          snapshotsBefore,
        );
        await assertNothingLeft(ctx);
      };

      const run = await runContainer(client, {
        id: "rc1",
        image: IMAGE,
        args: ["/bin/sh", "-c", 'echo "$GREETING from $(hostname)"; exit 3'],
        env: ["GREETING=hello"],
        spec: (spec) => ({ ...spec, hostname: "box" }),
      });
      assert.equal(run.exitStatus, 3);
      assert.equal(run.output, "hello from box\n");
      assert.ok(run.exitedAt instanceof Date);
      await nothingMade();

      const log = `${work}/rc2.log`;
      const kept = await runContainer(client, {
        id: "rc2",
        image: IMAGE,
        args: ["/bin/sh", "-c", "pwd"],
        cwd: "/tmp",
        stdoutPath: log,
      });
      assert.deepEqual([kept.exitStatus, kept.output], [0, "/tmp\n"]);
      assert.equal(await Deno.readTextFile(log), "/tmp\n");

      const abort = new AbortController();
      const long = runContainer(client, {
        id: "rc3",
        image: IMAGE,
        args: ["/bin/sleep", "1000"],
        signal: abort.signal,
      });
      await waitFor(
        "rc3 to run",
        async () =>
          (await client.tasks.list()).some((t) => t.id === "rc3" && t.status === "running"),
      );
      abort.abort();
      await assert.rejects(long, CanceledError);
      await nothingMade();

      await assert.rejects(
        runContainer(client, { id: "rc4", image: "example.com/nope:1", args: ["/bin/true"] }),
        NotFoundError,
      );
      await assert.rejects(
        runContainer(client, { id: "rc5", image: IMAGE, args: ["/nonexistent"] }),
        /OCI runtime create failed/,
      );
      await nothingMade();
      // an id taken by another container: refused, and that container is left alone
      await makeContainer(ctx, "taken", ["/bin/true"]);
      await assert.rejects(
        runContainer(client, { id: "taken", image: IMAGE, args: ["/bin/true"] }),
        AlreadyExistsError,
      );
      assert.equal((await client.containers.get("taken")).id, "taken");
      assert.ok((await client.snapshots.list()).some((s) => s.name === "taken"));
      await removeContainer(ctx, "taken");
      await nothingMade();
    });
  },
});
