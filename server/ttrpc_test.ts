import assert from "node:assert/strict";
import { UnixSocketListener } from "./unix_socket.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Events } from "../proto/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { Task } from "../proto/gen/containerd/task/v2/shim_pb.ts";
import { RequestSchema } from "../proto/gen/ttrpc/ttrpc_pb.ts";
import {
  encodeFrame,
  FRAME_REQUEST,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  TtrpcClient,
  TtrpcServer,
} from "./ttrpc.ts";
import { isNotFound, NotFoundError, UnavailableError } from "./errdefs.ts";

Deno.test("frames survive being split at every byte and joined", () => {
  const a = encodeFrame({ streamId: 1, type: 1, flags: 0, payload: new Uint8Array([1, 2, 3]) });
  const b = encodeFrame({ streamId: 3, type: 2, flags: 0, payload: new Uint8Array(0) });
  const all = new Uint8Array([...a, ...b]);
  for (let cut = 0; cut <= all.byteLength; cut++) {
    const decoder = new FrameDecoder();
    const frames = [...decoder.push(all.slice(0, cut)), ...decoder.push(all.slice(cut))];
    assert.deepEqual(frames.map((f) => [f.streamId, f.type, [...f.payload]]), [
      [1, 1, [1, 2, 3]],
      [3, 2, []],
    ]);
  }
});

Deno.test("a header announcing more than 4 MiB is refused", () => {
  const header = new Uint8Array(10);
  new DataView(header.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
  assert.throws(() => new FrameDecoder().push(header), /over the limit/);
  assert.throws(
    () =>
      encodeFrame({
        streamId: 1,
        type: 1,
        flags: 0,
        payload: new Uint8Array(MAX_FRAME_PAYLOAD + 1),
      }),
    /exceeds the limit/,
  );
});

async function serve(server: TtrpcServer): Promise<{ path: string; close(): Promise<void> }> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ttrpc.sock`;
  const listener = UnixSocketListener.listenConns(path, (conn) => server.serve(conn));
  return {
    path,
    async close() {
      server.closeConnections();
      await listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("client and server: metadata, payloads, typed errors, unknown methods", async () => {
  const seen: string[] = [];
  const server = new TtrpcServer();
  server.register(Events, {
    forward(request, ctx) {
      seen.push(`${ctx.metadata.get("containerd-namespace-ttrpc")} ${request.envelope?.topic}`);
      if (request.envelope?.topic === "/missing") throw new NotFoundError("thing x: not found");
      return {};
    },
  });
  const served = await serve(server);
  const client = await TtrpcClient.dial(`unix://${served.path}`);
  try {
    const envelope = {
      timestamp: timestampFromDate(new Date()),
      namespace: "n1",
      topic: "/tasks/start",
      event: create(AnySchema, { typeUrl: "containerd.events.TaskStart", value: new Uint8Array() }),
    };
    await Promise.all([1, 2, 3].map(() =>
      client.call(Events.method.forward, { envelope }, {
        metadata: { "containerd-namespace-ttrpc": "n1" },
      })
    ));
    assert.deepEqual(seen, ["n1 /tasks/start", "n1 /tasks/start", "n1 /tasks/start"]);
    const err = await client.call(Events.method.forward, {
      envelope: { ...envelope, topic: "/missing" },
    }).catch((e) => e);
    assert.ok(isNotFound(err), String(err));
    assert.equal(err.message, "thing x: not found");
    const unknown = await client.call(Task.method.state, { id: "c" }).catch((e) => e);
    assert.match(String(unknown), /containerd\.task\.v2\.Task\/State is not served/);
  } finally {
    client.close();
    await client.closed;
    await served.close();
  }
});

Deno.test("pending calls fail with Unavailable when the peer goes away; timeouts apply", async () => {
  const server = new TtrpcServer();
  server.register(Task, {
    state: () => new Promise(() => {}),
  });
  const served = await serve(server);
  const client = await TtrpcClient.dial(served.path);
  const timedOut = await client.call(Task.method.state, { id: "c" }, { timeoutMs: 50 })
    .catch((e) => e);
  assert.match(String(timedOut), /no answer within 50 ms/);
  const pending = client.call(Task.method.state, { id: "c" }).catch((e) => e);
  await new Promise((r) => setTimeout(r, 20));
  server.closeConnections();
  const err = await pending;
  assert.match(String(err), /closed/);
  await client.closed;
  await served.close();
});

Deno.test("a raw request frame gets a response frame on the same stream", async () => {
  const server = new TtrpcServer();
  server.register(Task, { connect: (req) => ({ shimPid: 7, taskPid: 8, version: req.id }) });
  const served = await serve(server);
  const conn = await Deno.connect({ transport: "unix", path: served.path });
  const payload = toBinary(
    RequestSchema,
    create(RequestSchema, {
      service: "containerd.task.v2.Task",
      method: "Connect",
      payload: new Uint8Array([0x0a, 0x01, 0x78]),
    }),
  );
  await conn.write(encodeFrame({ streamId: 5, type: FRAME_REQUEST, flags: 0, payload }));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf) ?? 0;
  const [frame] = new FrameDecoder().push(buf.slice(0, n));
  assert.ok(frame);
  assert.equal(frame.streamId, 5);
  assert.equal(frame.type, 2);
  conn.close();
  await served.close();
});

Deno.test("concurrent calls with large payloads each get their whole answer", async () => {
  const server = new TtrpcServer();
  server.register(Task, { connect: (req) => ({ shimPid: req.id.length, version: req.id }) });
  const served = await serve(server);
  const client = await TtrpcClient.dial(served.path);
  try {
    // 16 × 512 KiB each way: far over a unix socket's buffer, so writes are partial and queue.
    const ids = Array.from({ length: 16 }, (_, i) => String.fromCharCode(97 + i).repeat(512 << 10));
    const answers = await Promise.all(ids.map((id) => client.call(Task.method.connect, { id })));
    assert.deepEqual(answers.map((a) => a.shimPid), ids.map((id) => id.length));
    assert.ok(answers.every((a, i) => a.version === ids[i]));
  } finally {
    client.close();
    await client.closed;
    await served.close();
  }
});

Deno.test("a frame announcing more than the limit closes that connection only", async () => {
  const server = new TtrpcServer();
  server.register(Task, { connect: () => ({ version: "ok" }) });
  const served = await serve(server);
  const bad = await Deno.connect({ transport: "unix", path: served.path });
  const client = await TtrpcClient.dial(served.path);
  try {
    const header = new Uint8Array(10);
    new DataView(header.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
    header[8] = FRAME_REQUEST;
    await bad.write(header);
    assert.equal(await bad.read(new Uint8Array(16)), null);
    assert.equal((await client.call(Task.method.connect, { id: "c" })).version, "ok");
  } finally {
    bad.close();
    client.close();
    await client.closed;
    await served.close();
  }
});

Deno.test("dialing a socket nobody listens on is Unavailable, naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const err = await TtrpcClient.dial(`unix://${dir}/none.sock`).catch((e) => e);
    assert.ok(err instanceof UnavailableError, String(err));
    assert.match(err.message, new RegExp(`dial ttrpc ${dir}/none\\.sock: `));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
