import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { type Envelope, Exchange } from "./exchange.ts";
import { InvalidArgumentError, UnavailableError } from "./errdefs.ts";
import { contextInterceptor, errorInterceptor } from "./interceptors.ts";
import { closeServer, listenUnix } from "./listen.ts";
import { silentLogger } from "./log.ts";
import { createRpcHandler } from "./rpc.ts";
import { main } from "./cli.ts";
import { decodeEventPayload, publishEvent, runPublish } from "./publish.ts";
import { eventsService } from "../plugins/events/service.ts";
import { NamespaceCreateSchema } from "../proto/gen/containerd/events/namespace_pb.ts";

/** The Events service over a fresh exchange on a temp unix socket, collecting what arrives. */
async function daemon(): Promise<{
  address: string;
  received: Envelope[];
  close(): Promise<void>;
}> {
  const dir = await Deno.makeTempDir();
  const address = `${dir}/containerd.sock`;
  const exchange = new Exchange();
  const stop = new AbortController();
  const rpc = createRpcHandler({
    services: [eventsService({ exchange, signal: stop.signal })],
    interceptors: [contextInterceptor(), errorInterceptor(silentLogger())],
    maxRecvMessageBytes: 16 << 20,
    maxSendMessageBytes: 16 << 20,
    log: silentLogger(),
  });
  const server = http2.createServer();
  rpc.attach(server);
  await listenUnix(server, { path: address, uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 });
  const received: Envelope[] = [];
  const pump = (async () => {
    for await (const envelope of exchange.subscribe({ signal: stop.signal })) {
      received.push(envelope);
    }
  })();
  return {
    address,
    received,
    async close() {
      stop.abort();
      await pump;
      await closeServer(server, { graceMs: 0 });
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function namespaceCreateAny(name: string): Uint8Array {
  return toBinary(
    AnySchema,
    create(AnySchema, {
      typeUrl: NamespaceCreateSchema.typeName,
      value: toBinary(NamespaceCreateSchema, create(NamespaceCreateSchema, { name })),
    }),
  );
}

function stream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

Deno.test("decodeEventPayload reads an Any and refuses bytes that are not one", () => {
  const any = decodeEventPayload(namespaceCreateAny("a"));
  assert.equal(any.typeUrl, "containerd.events.NamespaceCreate");
  assert.equal(fromBinary(NamespaceCreateSchema, any.value).name, "a");
  assert.equal(decodeEventPayload(new Uint8Array()).typeUrl, "");
  assert.throws(
    () => decodeEventPayload(new TextEncoder().encode("garbage\n")),
    (err) => err instanceof InvalidArgumentError && /is not a protobuf Any/.test(err.message),
  );
});

Deno.test("publishEvent sends the Any through Events/Publish in the namespace", async () => {
  const d = await daemon();
  try {
    await publishEvent({
      address: d.address,
      namespace: "ns1",
      topic: "/test/published",
      payload: namespaceCreateAny("p"),
    });
    const deadline = Date.now() + 5_000;
    while (d.received.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const [got] = d.received;
    assert.ok(got);
    assert.equal(got.namespace, "ns1");
    assert.equal(got.topic, "/test/published");
    assert.equal(got.typeUrl, "containerd.events.NamespaceCreate");
    assert.equal(fromBinary(NamespaceCreateSchema, got.value).name, "p");
  } finally {
    await d.close();
  }
});

Deno.test("publishEvent fails with the daemon's typed error, or Unavailable without one", async () => {
  const d = await daemon();
  try {
    const refused = await publishEvent({
      address: d.address,
      namespace: "ns1",
      topic: "no-slash",
      payload: namespaceCreateAny("p"),
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(refused instanceof InvalidArgumentError, String(refused));
    assert.match(refused.message, /envelope topic "no-slash": must start with '\/'/);
    const missing = await publishEvent({
      address: `${d.address}.nope`,
      namespace: "ns1",
      topic: "/a",
      payload: namespaceCreateAny("p"),
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(missing instanceof UnavailableError, String(missing));
    assert.match(missing.message, /no such socket/);
    assert.equal(d.received.length, 0);
  } finally {
    await d.close();
  }
});

Deno.test("runPublish: exit 0 on success, one line and exit 1 on failure", async () => {
  const d = await daemon();
  try {
    const errors: string[] = [];
    const ctx = (values: Record<string, string>) => ({
      values,
      out: () => {},
      err: (s: string) => errors.push(s),
      env: { uid: 0 },
      registrations: [],
    });
    const ok = await runPublish(
      ctx({ address: d.address, namespace: "ns1", topic: "/test/cli" }),
      stream(namespaceCreateAny("c")),
    );
    assert.equal(ok, 0, errors.join(""));
    assert.deepEqual(errors, []);
    const noTopic = await runPublish(
      ctx({ address: d.address, namespace: "ns1" }),
      stream(namespaceCreateAny("c")),
    );
    assert.equal(noTopic, 1);
    assert.match(
      errors.pop() ?? "",
      /^containerd-ts: publish .*topic required to publish event: invalid argument\n$/,
    );
    const noNamespace = await runPublish(
      ctx({ address: d.address, topic: "/test/cli" }),
      stream(namespaceCreateAny("c")),
    );
    assert.equal(noNamespace, 1);
    assert.match(errors.pop() ?? "", /namespace is required: failed precondition\n$/);
    assert.equal(d.received.length, 1);
  } finally {
    await d.close();
  }
});

Deno.test("the CLI takes the global -a before the command word, as the old shim passes it", async () => {
  const err: string[] = [];
  // No daemon at the address: the command is found and runs, and fails as a publish failure.
  const code = await main(
    ["--address", "/nonexistent/c.sock", "publish", "--topic", "", "--namespace", "n"],
    { stdout: () => {}, stderr: (s) => err.push(s), registrations: [] },
  );
  assert.equal(code, 1);
  assert.match(err.join(""), /topic required to publish event/);
});
