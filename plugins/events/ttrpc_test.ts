import assert from "node:assert/strict";
import { UnixSocketListener } from "../../server/unix_socket.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Envelope, Exchange } from "../../server/exchange.ts";
import { Code } from "../../server/errdefs.ts";
import { TtrpcClient, TtrpcServer } from "../../server/ttrpc.ts";
import { Events } from "../../proto/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { TaskStartSchema } from "../../proto/gen/containerd/events/task_pb.ts";
import { eventsTtrpcService } from "./ttrpc.ts";

/** The ttrpc Events service over a fresh exchange, on a temp unix socket, and a client. */
async function fixture(): Promise<{
  exchange: Exchange;
  client: TtrpcClient;
  received: Envelope[];
  close(): Promise<void>;
}> {
  const exchange = new Exchange();
  const server = new TtrpcServer();
  const spec = eventsTtrpcService({ exchange });
  server.register(spec.service, spec.impl);
  const dir = await Deno.makeTempDir();
  const listener = UnixSocketListener.listenConns(
    `${dir}/ttrpc.sock`,
    (conn) => server.serve(conn),
  );
  const client = await TtrpcClient.dial(`${dir}/ttrpc.sock`);
  const received: Envelope[] = [];
  const stop = new AbortController();
  const pump = (async () => {
    for await (const envelope of exchange.subscribe({ signal: stop.signal })) {
      received.push(envelope);
    }
  })();
  return {
    exchange,
    client,
    received,
    async close() {
      stop.abort();
      await pump;
      client.close();
      await client.closed;
      server.closeConnections();
      await listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function taskStart(id: string) {
  return create(AnySchema, {
    typeUrl: TaskStartSchema.typeName,
    value: toBinary(TaskStartSchema, create(TaskStartSchema, { containerId: id, pid: 42 })),
  });
}

Deno.test("ttrpc Forward publishes the shim's envelope as sent: namespace, topic, time, Any", async () => {
  const f = await fixture();
  try {
    const at = new Date("2026-01-02T03:04:05.678Z");
    const event = taskStart("c1");
    await f.client.call(Events.method.forward, {
      envelope: {
        timestamp: timestampFromDate(at),
        namespace: "ns1",
        topic: "/tasks/start",
        event,
      },
    }, { metadata: { "containerd-namespace-ttrpc": "ns1" } });
    const deadline = Date.now() + 5_000;
    while (f.received.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const [got] = f.received;
    assert.ok(got);
    assert.equal(got.namespace, "ns1");
    assert.equal(got.topic, "/tasks/start");
    assert.equal(got.timestamp.toISOString(), at.toISOString());
    assert.equal(got.typeUrl, "containerd.events.TaskStart");
    assert.deepEqual(got.value, event.value);
  } finally {
    await f.close();
  }
});

Deno.test("ttrpc Forward refuses a bad envelope with InvalidArgument, as the gRPC Forward", async () => {
  const f = await fixture();
  try {
    const good = {
      timestamp: timestampFromDate(new Date()),
      namespace: "ns1",
      topic: "/tasks/start",
      event: taskStart("c1"),
    };
    const cases: [string, Record<string, unknown> | undefined, RegExp][] = [
      ["no envelope", undefined, /envelope must be set/],
      ["bad namespace", { ...good, namespace: "-x" }, /invalid namespace/],
      ["no namespace", { ...good, namespace: "" }, /invalid namespace/],
      ["relative topic", { ...good, topic: "tasks/start" }, /must start with '\/'/],
      ["no timestamp", { ...good, timestamp: undefined }, /timestamp must be set/],
      [
        "Go's zero time",
        { ...good, timestamp: { seconds: -62135596800n, nanos: 0 } },
        /timestamp must be set/,
      ],
      ["no event", { ...good, event: undefined }, /event must be set/],
    ];
    for (const [what, envelope, message] of cases) {
      const err = await f.client.call(
        Events.method.forward,
        envelope === undefined ? {} : { envelope },
      ).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof Error, what);
      assert.equal((err as { code?: unknown }).code, Code.InvalidArgument, what);
      assert.match(err.message, message, what);
    }
    assert.equal(f.received.length, 0);
  } finally {
    await f.close();
  }
});
