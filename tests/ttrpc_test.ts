/**
 * The daemon's ttrpc socket, end to end against the real binary: a shim's
 * containerd.services.events.ttrpc.v1.Events/Forward (sent here with the project's
 * TtrpcClient, framed as containerd-shim-runc-v2 frames it) reaches Debian's `ctr events` and
 * the client with the shim's timestamp, topic and Any; the socket's mode and removal at stop;
 * `containerd-ts publish` (the `-publish-binary` path) with an Any on stdin.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "../server/errdefs.ts";
import { TtrpcClient } from "../server/ttrpc.ts";
import { Events } from "../proto/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { TaskStartSchema } from "../proto/gen/containerd/events/task_pb.ts";
import { NamespaceCreateSchema } from "../proto/gen/containerd/events/namespace_pb.ts";
import { connect, type EventEnvelope } from "../client/mod.ts";
import { ctrMissing, LAUNCHER, startDaemon, type TestDaemon } from "./harness.ts";

const skip = ctrMissing();
if (skip) console.error(`ttrpc_test: ${skip}`);

/** A running `ctr events` (TZ=UTC, so timestamps print as `... +0000 UTC`). */
function ctrEvents(address: string, filters: string[] = []) {
  const child = new Deno.Command("/usr/bin/ctr", {
    args: ["-a", address, "events", ...filters],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { TZ: "UTC" },
  }).spawn();
  let out = "";
  let err = "";
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) add(dec.decode(chunk, { stream: true }));
  };
  const pumps = Promise.all([
    pump(child.stdout, (s) => out += s),
    pump(child.stderr, (s) => err += s),
  ]);
  return {
    stdout: () => out,
    stderr: () => err,
    async stop(): Promise<void> {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await pumps;
    },
  };
}

/** Run `act` until `pattern` shows in `text()` (nothing says when a subscription is live). */
async function until(
  text: () => string,
  pattern: RegExp,
  act: (attempt: number) => Promise<unknown>,
  timeoutMs = 20_000,
): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0;; attempt++) {
    await act(attempt);
    for (let i = 0; i < 10; i++) {
      const found = pattern.exec(text());
      if (found) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (Date.now() > deadline) {
      throw new Error(`${pattern} not seen after ${timeoutMs} ms; output:\n${text()}`);
    }
  }
}

function taskStart(id: string) {
  return create(AnySchema, {
    typeUrl: TaskStartSchema.typeName,
    value: toBinary(TaskStartSchema, create(TaskStartSchema, { containerId: id, pid: 42 })),
  });
}

/** The shim's timestamp: in the past, so a restamped event would show. */
const SHIM_TIME = new Date("2026-01-02T03:04:05.678Z");

/** Forward as the shim does: the envelope plus the `containerd-namespace-ttrpc` metadata. */
function forward(client: TtrpcClient, namespace: string, topic: string, id: string) {
  return client.call(Events.method.forward, {
    envelope: {
      timestamp: timestampFromDate(SHIM_TIME),
      namespace,
      topic,
      event: taskStart(id),
    },
  }, { metadata: { "containerd-namespace-ttrpc": namespace }, timeoutMs: 5_000 });
}

async function withDaemon(
  fn: (daemon: TestDaemon) => Promise<void>,
  config?: (dir: string) => string,
): Promise<TestDaemon> {
  const dir = await Deno.makeTempDir({ prefix: "cts-" });
  const daemon = await startDaemon(config ? { dir, config: config(dir) } : { dir });
  try {
    await fn(daemon);
  } finally {
    const status = await daemon.stop();
    assert.equal(status.code, 0, daemon.log());
  }
  return daemon;
}

Deno.test({
  name: "a shim's ttrpc Forward reaches ctr events and the client with its time, topic and Any",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      assert.match(
        daemon.log(),
        new RegExp(`msg="serving\\.\\.\\." address=${daemon.address}\\.ttrpc\\n`),
      );
      const events = ctrEvents(daemon.address, ["namespace==shimns"]);
      const shim = await TtrpcClient.dial(`${daemon.address}.ttrpc`);
      await using client = connect({ address: daemon.address });
      const seen: EventEnvelope[] = [];
      const subscription = (async () => {
        for await (const e of client.events.subscribe({ filters: ['topic=="/tasks/start"'] })) {
          seen.push(e);
          if (e.namespace === "shimns") break;
        }
      })();
      // Observed at once, so a failing subscription fails this test rather than the run.
      const subscribed = subscription.then(() => undefined, (e: unknown) => e);
      try {
        const line = await until(
          events.stdout,
          /^(\S+ \S+ \S+ \S+) shimns \/tasks\/start (\{.*\})$/m,
          (i) => forward(shim, "shimns", "/tasks/start", `c${i}`),
        );
        // The shim's time, not the daemon's: the envelope goes into the exchange as sent.
        assert.equal(line[1], "2026-01-02 03:04:05.678 +0000 UTC");
        assert.match(line[2] ?? "", /^\{"container_id":"c\d+","pid":42\}$/);
        await until(
          () => seen.map((e) => `${e.namespace} ${e.topic}`).join("\n"),
          /^shimns \/tasks\/start$/m,
          (i) => forward(shim, "shimns", "/tasks/start", `d${i}`),
        );
        assert.equal(await subscribed, undefined);
        const got = seen.find((e) => e.namespace === "shimns");
        assert.ok(got);
        assert.equal(got.timestamp?.toISOString(), SHIM_TIME.toISOString());
        assert.equal(got.typeUrl, "containerd.events.TaskStart");
      } finally {
        shim.close();
        await shim.closed;
        await events.stop();
      }
    });
  },
});

Deno.test({
  name: "a bad envelope on the ttrpc socket answers InvalidArgument with containerd's message",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const shim = await TtrpcClient.dial(`unix://${daemon.address}.ttrpc`);
      try {
        const cases: [string, string, RegExp][] = [
          ["-bad", "/tasks/start", /^event envelope has invalid namespace: .*: invalid argument$/],
          [
            "ok",
            "tasks/start",
            /^envelope topic "tasks\/start": must start with '\/': invalid argument$/,
          ],
        ];
        for (const [namespace, topic, message] of cases) {
          const err = await forward(shim, namespace, topic, "c1").then(() => undefined, (e) => e);
          assert.ok(err instanceof Error, `${namespace} ${topic}`);
          assert.equal((err as { code?: unknown }).code, Code.InvalidArgument);
          assert.match(err.message, message);
        }
        const noTime = await shim.call(Events.method.forward, {
          envelope: { namespace: "ok", topic: "/tasks/start", event: taskStart("c1") },
        }).then(() => undefined, (e) => e);
        assert.equal((noTime as { code?: unknown }).code, Code.InvalidArgument);
        assert.match(String(noTime), /timestamp must be set on forwarded event: invalid argument/);
      } finally {
        shim.close();
        await shim.closed;
      }
    });
  },
});

Deno.test({
  name: "the ttrpc socket is 0660, follows [ttrpc] address, and is removed at stop",
  ignore: skip !== undefined,
  async fn() {
    // Default: <grpc address>.ttrpc. A shim still connected does not hold up the stop.
    let path = "";
    let shim: TtrpcClient | undefined;
    let stopping = 0;
    await withDaemon(async (daemon) => {
      path = `${daemon.address}.ttrpc`;
      const stat = await Deno.lstat(path);
      assert.ok(stat.isSocket);
      assert.equal((stat.mode ?? 0) & 0o777, 0o660);
      shim = await TtrpcClient.dial(path);
      await forward(shim, "ns", "/tasks/start", "c1");
      stopping = Date.now();
    });
    assert.ok(Date.now() - stopping < 5_000, `stop took ${Date.now() - stopping} ms`);
    await shim?.closed;
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);

    // Configured, with a stale socket file left by a crashed daemon in the way.
    const dir = await Deno.makeTempDir({ prefix: "cts-" });
    const custom = `${dir}/sub/custom.ttrpc`;
    await Deno.mkdir(`${dir}/sub`);
    await makeStaleSocket(custom);
    try {
      await withDaemon(async (daemon) => {
        const stat = await Deno.lstat(custom);
        assert.ok(stat.isSocket);
        assert.equal((stat.mode ?? 0) & 0o777, 0o660);
        assert.match(daemon.log(), new RegExp(`msg="serving\\.\\.\\." address=${custom}\\n`));
        const shim = await TtrpcClient.dial(custom);
        await forward(shim, "ns", "/tasks/start", "c1");
        shim.close();
        await shim.closed;
      }, () => `version = 2\n[ttrpc]\n  address = "${custom}"\n`);
      await assert.rejects(() => Deno.lstat(custom), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** Leave a socket file nobody listens on, as a SIGKILLed daemon does. */
async function makeStaleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); console.log("up");` +
      " setInterval(() => {}, 1000);",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  await child.status;
  assert.ok((await Deno.lstat(path)).isSocket, "stale socket left behind");
}

/** Run the launcher with raw bytes on stdin. */
async function launch(args: string[], stdin: Uint8Array) {
  const child = new Deno.Command(LAUNCHER, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_BIN: Deno.execPath() },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(stdin);
  await writer.close();
  const out = await child.output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "containerd-ts publish sends the Any on stdin; failures exit 1 with one line",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const events = ctrEvents(daemon.address, ["namespace==pubns"]);
      const any = (name: string) =>
        toBinary(
          AnySchema,
          create(AnySchema, {
            typeUrl: NamespaceCreateSchema.typeName,
            value: toBinary(NamespaceCreateSchema, create(NamespaceCreateSchema, { name })),
          }),
        );
      try {
        // As containerd-shim (v1) runs its publish binary: global --address before the word.
        await until(
          events.stdout,
          /^\S+ \S+ \S+ \S+ pubns \/test\/published \{"name":"p\d+"\}$/m,
          async (i) => {
            const out = await launch(
              [
                "--address",
                daemon.address,
                "publish",
                "--topic",
                "/test/published",
                "--namespace",
                "pubns",
              ],
              any(`p${i}`),
            );
            assert.equal(out.code, 0, out.stderr);
          },
        );
        const bad = await launch(
          ["-a", daemon.address, "publish", "--topic", "nope", "--namespace", "pubns"],
          any("x"),
        );
        assert.equal(bad.code, 1);
        assert.match(
          bad.stderr,
          /^containerd-ts: publish nope to .*: envelope topic "nope": must start with '\/': invalid argument\n$/,
        );
        const down = await launch(
          ["-a", `${daemon.dir}/none.sock`, "publish", "--topic", "/a", "--namespace", "pubns"],
          any("x"),
        );
        assert.equal(down.code, 1);
        assert.match(down.stderr, /no such socket/);
        assert.equal(down.stderr.trim().split("\n").length, 1, down.stderr);
      } finally {
        await events.stop();
      }
    });
  },
});
