/**
 * The Tasks wrapper in process, against a recording fake of the Tasks service: what each
 * method sends (signals by name, exec's process JSON, stdio defaults, resources), how answers
 * are translated (status strings, exit times, pids with exec ids, metrics), and a Wait that
 * an AbortSignal ends with CanceledError.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CreateTaskResponseSchema,
  DeleteResponseSchema,
  GetResponseSchema,
  ListPidsResponseSchema,
  ListTasksResponseSchema,
  MetricsResponseSchema,
  StartResponseSchema,
  Tasks,
  WaitResponseSchema,
} from "../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { ProcessDetailsSchema } from "../proto/gen/containerd/runc/v1/options_pb.ts";
import { Status } from "../proto/gen/containerd/types/task/task_pb.ts";
import { serviceTransport } from "../plugins/metadata/testing.ts";
import { NotFoundError } from "../server/errdefs.ts";
import { serviceSpec } from "../server/rpc.ts";
import {
  CanceledError,
  clientFromTransport,
  fileURI,
  InvalidArgumentError,
  OCI_PROCESS_TYPE_URL,
  OCI_RESOURCES_TYPE_URL,
  parseSignal,
} from "./mod.ts";

const EXITED = new Date("2026-01-02T03:04:05.678Z");

function fake() {
  const calls: { method: string; request: Record<string, unknown> }[] = [];
  let release: ((code: number) => void) | undefined;
  const record = (method: string, request: unknown) => {
    calls.push({ method, request: request as Record<string, unknown> });
  };
  const spec = serviceSpec(Tasks, {
    create(request) {
      record("create", request);
      return create(CreateTaskResponseSchema, { containerId: request.containerId, pid: 42 });
    },
    start(request) {
      record("start", request);
      return create(StartResponseSchema, { pid: request.execId ? 43 : 42 });
    },
    delete(request) {
      record("delete", request);
      if (request.containerId === "gone") throw new NotFoundError("task gone not found");
      return create(DeleteResponseSchema, {
        pid: 42,
        exitStatus: 3,
        exitedAt: timestampFromDate(EXITED),
      });
    },
    deleteProcess(request) {
      record("deleteProcess", request);
      return create(DeleteResponseSchema, { id: request.execId, pid: 43, exitStatus: 0 });
    },
    get(request) {
      record("get", request);
      return create(GetResponseSchema, {
        process: {
          id: request.execId || request.containerId,
          pid: 42,
          status: request.execId ? Status.STOPPED : Status.PAUSED,
          stdout: "file:///tmp/x",
          exitStatus: request.execId ? 7 : 0,
          exitedAt: timestampFromDate(request.execId ? EXITED : new Date(0)),
        },
      });
    },
    list(request) {
      record("list", request);
      return create(ListTasksResponseSchema, {
        tasks: [
          { id: "a", pid: 1, status: Status.RUNNING },
          { id: "b", pid: 2, status: Status.CREATED },
          { id: "c", pid: 3, status: Status.PAUSING },
          { id: "d", pid: 0, status: Status.UNKNOWN },
        ],
      });
    },
    kill(request) {
      record("kill", request);
      return {};
    },
    exec(request) {
      record("exec", request);
      return {};
    },
    resizePty(request) {
      record("resizePty", request);
      return {};
    },
    closeIO(request) {
      record("closeIO", request);
      return {};
    },
    pause(request) {
      record("pause", request);
      return {};
    },
    resume(request) {
      record("resume", request);
      return {};
    },
    listPids(request) {
      record("listPids", request);
      return create(ListPidsResponseSchema, {
        processes: [
          { pid: 42 },
          {
            pid: 43,
            info: {
              typeUrl: "containerd.runc.v1.ProcessDetails",
              value: toBinary(ProcessDetailsSchema, create(ProcessDetailsSchema, { execId: "e1" })),
            },
          },
        ],
      });
    },
    update(request) {
      record("update", request);
      return {};
    },
    metrics(request) {
      record("metrics", request);
      return create(MetricsResponseSchema, {
        metrics: [{
          id: "a",
          timestamp: timestampFromDate(EXITED),
          data: { typeUrl: "io.containerd.cgroups.v1.Metrics", value: new Uint8Array([1]) },
        }],
      });
    },
    async wait(request, ctx) {
      record("wait", request);
      const code = await new Promise<number>((resolve, reject) => {
        release = resolve;
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
      });
      return create(WaitResponseSchema, { exitStatus: code, exitedAt: timestampFromDate(EXITED) });
    },
  });
  const client = clientFromTransport(serviceTransport([spec]), { namespace: "ns1" });
  const last = (method: string) => calls.filter((c) => c.method === method).at(-1)?.request;
  return { client, calls, last, release: (code: number) => release?.(code) };
}

Deno.test("parseSignal: names, numbers, real-time signals; unknown ones refused", () => {
  assert.equal(parseSignal("SIGTERM"), 15);
  assert.equal(parseSignal("kill"), 9);
  assert.equal(parseSignal("sigHup"), 1);
  assert.equal(parseSignal(" 9 "), 9);
  assert.equal(parseSignal(10), 10);
  assert.equal(parseSignal("SIGRTMIN"), 34);
  assert.equal(parseSignal("SIGRTMIN+3"), 37);
  assert.equal(parseSignal("RTMAX-1"), 63);
  for (const bad of ["SIGNOPE", "", "0", 65, -1, 1.5, "SIGRTMAX+1"]) {
    assert.throws(() => parseSignal(bad), InvalidArgumentError, String(bad));
  }
});

Deno.test("fileURI: absolute paths only, escaped", () => {
  assert.equal(fileURI("/tmp/a b/c.log"), "file:///tmp/a%20b/c.log");
  assert.throws(() => fileURI("rel.log"), InvalidArgumentError);
});

Deno.test("tasks: create sends rootfs and stdio; a log URI goes to stderr too", async () => {
  const f = fake();
  await using client = f.client;
  const res = await client.tasks.create({
    containerId: "c1",
    rootfs: [{ type: "overlay", source: "overlay", target: "", options: ["lowerdir=/a"] }],
    stdout: "file:///tmp/c1.log",
  });
  assert.deepEqual(res, { containerId: "c1", pid: 42 });
  const req = f.last("create")!;
  assert.equal(req.stdout, "file:///tmp/c1.log");
  assert.equal(req.stderr, "file:///tmp/c1.log");
  assert.equal(req.stdin, "");
  assert.equal(req.terminal, false);
  assert.deepEqual(
    (req.rootfs as { type: string; options: string[] }[]).map((m) => [m.type, m.options]),
    [["overlay", ["lowerdir=/a"]]],
  );
  await client.tasks.create({ containerId: "c2", stdout: "/run/fifo-out", stdin: "/run/in" });
  assert.equal(f.last("create")!.stderr, "");
  assert.equal(f.last("create")!.stdin, "/run/in");
  await client.tasks.create({ containerId: "c3", stdout: "file:///a", stderr: "file:///b" });
  assert.equal(f.last("create")!.stderr, "file:///b");
});

Deno.test("tasks: kill by name or number, exec's process as JSON, other calls", async () => {
  const f = fake();
  await using client = f.client;
  await client.tasks.kill("c1");
  assert.equal(f.last("kill")!.signal, 15);
  await client.tasks.kill("c1", "SIGKILL", { all: true, execId: "e1" });
  assert.deepEqual(
    [f.last("kill")!.signal, f.last("kill")!.all, f.last("kill")!.execId],
    [9, true, "e1"],
  );
  await assert.rejects(client.tasks.kill("c1", "SIGBOGUS"), InvalidArgumentError);

  await client.tasks.exec("c1", "e1", {
    process: { args: ["/bin/echo", "hi"], env: ["A=1"] },
    stdout: fileURI("/tmp/e1.log"),
  });
  const exec = f.last("exec")!;
  assert.equal(exec.execId, "e1");
  assert.equal(exec.stderr, "file:///tmp/e1.log");
  const spec = exec.spec as { typeUrl: string; value: Uint8Array };
  assert.equal(spec.typeUrl, OCI_PROCESS_TYPE_URL);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(spec.value)), {
    user: { uid: 0, gid: 0 },
    env: ["A=1"],
    args: ["/bin/echo", "hi"],
    cwd: "/",
    terminal: false,
  });

  assert.deepEqual(await client.tasks.start("c1", { execId: "e1" }), { pid: 43 });
  assert.deepEqual(await client.tasks.deleteProcess("c1", "e1"), {
    id: "e1",
    pid: 43,
    exitStatus: 0,
    exitedAt: new Date(0),
  });
  assert.deepEqual(await client.tasks.delete("c1"), {
    id: "",
    pid: 42,
    exitStatus: 3,
    exitedAt: EXITED,
  });
  await assert.rejects(client.tasks.delete("gone"), NotFoundError);

  await client.tasks.pause("c1");
  await client.tasks.resume("c1");
  await client.tasks.closeIO("c1", { execId: "e1" });
  const closeIO = f.last("closeIO")!;
  assert.deepEqual([closeIO.containerId, closeIO.execId, closeIO.stdin], ["c1", "e1", true]);
  await client.tasks.resizePty("c1", { width: 80, height: 24 });
  assert.deepEqual([f.last("resizePty")!.width, f.last("resizePty")!.height], [80, 24]);
  await client.tasks.update("c1", { resources: { pids: { limit: 5 } }, annotations: { a: "b" } });
  const resources = f.last("update")!.resources as { typeUrl: string; value: Uint8Array };
  assert.equal(resources.typeUrl, OCI_RESOURCES_TYPE_URL);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(resources.value)), { pids: { limit: 5 } });
  assert.deepEqual(
    f.calls.map((c) => c.method).filter((m) => m === "pause" || m === "resume"),
    ["pause", "resume"],
  );
});

Deno.test("tasks: get, list, listPids and metrics translate the answers", async () => {
  const f = fake();
  await using client = f.client;
  const init = await client.tasks.get("c1");
  assert.equal(init.status, "paused");
  assert.equal(init.containerId, "c1");
  assert.equal(init.exitedAt, undefined, "the zero time means not exited");
  const exec = await client.tasks.get("c1", { execId: "e1" });
  assert.deepEqual(
    [exec.id, exec.status, exec.exitStatus, exec.exitedAt],
    ["e1", "stopped", 7, EXITED],
  );
  assert.deepEqual(
    (await client.tasks.list()).map((t) => [t.id, t.status]),
    [["a", "running"], ["b", "created"], ["c", "pausing"], ["d", "unknown"]],
  );
  const pids = await client.tasks.listPids("c1");
  assert.deepEqual(pids.map((p) => [p.pid, p.execId]), [[42, ""], [43, "e1"]]);
  assert.equal(pids[1]?.info?.typeUrl, "containerd.runc.v1.ProcessDetails");
  const [m] = await client.tasks.metrics({ filters: ["id==a"] });
  assert.deepEqual(f.last("metrics")!.filters, ["id==a"]);
  assert.equal(m?.id, "a");
  assert.deepEqual(m?.timestamp, EXITED);
  assert.equal(m?.data?.typeUrl, "io.containerd.cgroups.v1.Metrics");
});

Deno.test("tasks: wait resolves with the exit, or rejects with CanceledError on abort", async () => {
  const f = fake();
  await using client = f.client;
  const waiting = client.tasks.wait("c1");
  while (!f.last("wait")) await new Promise((r) => setTimeout(r, 1));
  f.release(3);
  assert.deepEqual(await waiting, { exitStatus: 3, exitedAt: EXITED });

  const abort = new AbortController();
  const aborted = client.tasks.wait("c1", { signal: abort.signal, execId: "e1" });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.last("wait")!.execId, "e1");
  abort.abort();
  await assert.rejects(aborted, CanceledError);
});
