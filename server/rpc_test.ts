import assert from "node:assert/strict";
import http2 from "node:http2";
import { connectUnix, UnixSocketListener } from "./unix_socket.ts";
import type { HeapTrimmer } from "./heap_trim.ts";
import { Buffer } from "node:buffer";
import {
  create,
  createFileRegistry,
  type DescMessage,
  type DescService,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import {
  createRpcHandler,
  encodeEnvelope,
  encodeEnvelopeParts,
  encodeGrpcMessage,
  GRPC_H2_OPTIONS,
  GRPC_SERVER_OPTIONS,
  servesRpc,
  type ServiceSpec,
  serviceSpec,
} from "./rpc.ts";
import { contextInterceptor, errorInterceptor, namespaceKey, namespaceOf } from "./interceptors.ts";
import { NotFoundError } from "./errdefs.ts";
import { H2Server } from "./h2_server.ts";
import { concatBytes } from "./bytes.ts";
import { createLogger, type Logger, silentLogger } from "./log.ts";
import {
  Version,
  VersionResponseSchema,
} from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../proto/gen/grpc/health/v1/health_pb.ts";
import {
  Introspection,
  ServerResponseSchema,
} from "../proto/gen/containerd/services/introspection/v1/introspection_pb.ts";
import { ReadContentResponseSchema } from "../proto/gen/containerd/services/content/v1/content_pb.ts";

// ---------------------------------------------------------------------------------------------
// A test-only service with every method kind, built from a descriptor at runtime.

const echoFile = create(FileDescriptorProtoSchema, {
  name: "test/echo.proto",
  package: "test.echo.v1",
  syntax: "proto3",
  messageType: [{
    name: "Msg",
    field: [{
      name: "text",
      jsonName: "text",
      number: 1,
      type: FieldDescriptorProto_Type.STRING,
      label: FieldDescriptorProto_Label.OPTIONAL,
    }],
  }],
  service: [{
    name: "Echo",
    method: [
      { name: "Say", inputType: ".test.echo.v1.Msg", outputType: ".test.echo.v1.Msg" },
      {
        name: "Collect",
        inputType: ".test.echo.v1.Msg",
        outputType: ".test.echo.v1.Msg",
        clientStreaming: true,
      },
      {
        name: "Chat",
        inputType: ".test.echo.v1.Msg",
        outputType: ".test.echo.v1.Msg",
        clientStreaming: true,
        serverStreaming: true,
      },
      {
        name: "Spam",
        inputType: ".test.echo.v1.Msg",
        outputType: ".test.echo.v1.Msg",
        serverStreaming: true,
      },
    ],
  }, {
    // Not served: clients of it must get Unimplemented.
    name: "Ghost",
    method: [{ name: "Boo", inputType: ".test.echo.v1.Msg", outputType: ".test.echo.v1.Msg" }],
  }],
});
const echoRegistry = createFileRegistry(echoFile, () => undefined);
const Echo = echoRegistry.getService("test.echo.v1.Echo") as DescService;
const Ghost = echoRegistry.getService("test.echo.v1.Ghost") as DescService;
const MsgSchema = echoRegistry.getMessage("test.echo.v1.Msg") as DescMessage;
type Msg = { text: string };

const LIMIT = 64 * 1024;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** The services of the test server: fakes of Version, Health, Introspection, and Echo. */
function testServices(seen: { canceled: number; interceptorRuns: number }): ServiceSpec[] {
  return [
    serviceSpec(Version, {
      // The revision reports the namespace the context interceptor put into the context.
      version: (_req, ctx) =>
        create(VersionResponseSchema, {
          version: "1.6.20-test",
          revision: ctx.values.get(namespaceKey) ?? "",
        }),
    }),
    serviceSpec(Introspection, {
      server: () => create(ServerResponseSchema, { uuid: "0b4c9d5e-test-uuid", pid: 42n }),
    }),
    serviceSpec(Health, {
      async check(req, ctx) {
        switch (req.service) {
          case "notfound":
            throw new NotFoundError(`thing "x"`);
          case "plain":
            throw new Error("boom");
          case "ns":
            return { status: namespaceOf(ctx).length };
          case "pause":
            await sleep(50, ctx.signal);
            return { status: ServingStatus.SERVING };
          case "slow":
            try {
              await sleep(5000, ctx.signal);
            } catch (err) {
              seen.canceled++;
              throw err;
            }
            return { status: ServingStatus.SERVING };
          default:
            return { status: ServingStatus.SERVING };
        }
      },
      async *watch(req, ctx: HandlerContext) {
        if (req.service === "failfirst") throw new NotFoundError("watched thing");
        if (req.service === "empty") return;
        yield { status: ServingStatus.SERVING };
        if (req.service === "fail") throw new NotFoundError("watched thing");
        if (req.service === "three") {
          yield { status: ServingStatus.NOT_SERVING };
          yield { status: ServingStatus.SERVING };
          return;
        }
        await new Promise<void>((resolve) => {
          ctx.signal.addEventListener("abort", () => {
            seen.canceled++;
            resolve();
          }, { once: true });
        });
      },
    }),
    {
      service: Echo,
      impl: {
        say(req: Msg) {
          const m = /^repeat:(\d+)$/.exec(req.text);
          return { text: m ? "x".repeat(Number(m[1])) : req.text };
        },
        async collect(reqs: AsyncIterable<Msg>) {
          const parts: string[] = [];
          for await (const r of reqs) parts.push(r.text);
          return { text: parts.join("+") };
        },
        async *chat(reqs: AsyncIterable<Msg>) {
          for await (const r of reqs) yield { text: `echo ${r.text}` };
        },
        // "<count>x<size>": count messages of size bytes each, distinguishable by first char.
        async *spam(req: Msg) {
          const m = /^(\d+)x(\d+)$/.exec(req.text);
          const [count, size] = m ? [Number(m[1]), Number(m[2])] : [1, 1];
          for (let i = 0; i < count; i++) yield { text: String(i % 10).repeat(size) };
        },
      },
    } as unknown as ServiceSpec,
  ];
}

interface TestServer {
  readonly socket: string;
  readonly dir: string;
  readonly seen: { canceled: number; interceptorRuns: number };
  readonly rpc: ReturnType<typeof createRpcHandler>;
  close(): Promise<void>;
}

/** The daemon's unix-socket server, or node:http2 (what its TCP listener uses). */
type ServerKind = "h2" | "node";
const SERVER_KINDS: ServerKind[] = ["h2", "node"];

interface ServerOptions {
  /** Message size limit both ways. Default LIMIT. */
  limit?: number;
  heapTrimmer?: HeapTrimmer;
  /** Where the handler logs. Default silent. */
  log?: Logger;
  /** Which HTTP/2 server the handler is attached to. Default "h2". */
  on?: ServerKind;
  /** The services served. Default {@link testServices}. */
  services?: ServiceSpec[];
}

async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const limit = options.limit ?? LIMIT;
  const dir = await Deno.makeTempDir({ prefix: "rpc-test-" });
  const socket = `${dir}/rpc.sock`;
  const seen = { canceled: 0, interceptorRuns: 0 };
  const counting: Interceptor = (next) => (req) => {
    seen.interceptorRuns++;
    return next(req);
  };
  const rpc = createRpcHandler({
    services: options.services ?? testServices(seen),
    interceptors: [
      counting,
      contextInterceptor(),
      errorInterceptor(silentLogger()),
    ],
    maxRecvMessageBytes: limit,
    maxSendMessageBytes: limit,
    log: options.log ?? silentLogger(),
    ...(options.heapTrimmer ? { heapTrimmer: options.heapTrimmer } : {}),
  });
  const sessions = new Set<{ once(e: "close", f: () => void): unknown; destroy(): void }>();
  let listener: UnixSocketListener;
  if ((options.on ?? "h2") === "h2") {
    const server = new H2Server(GRPC_H2_OPTIONS);
    rpc.attach(server);
    listener = UnixSocketListener.listenConns(socket, (conn) => {
      const session = server.serve(conn);
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
  } else {
    const server = http2.createServer(GRPC_SERVER_OPTIONS);
    server.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    rpc.attach(server);
    listener = UnixSocketListener.listen(socket, (s) => server.emit("connection", s));
  }
  return {
    socket,
    dir,
    seen,
    rpc,
    async close() {
      await listener.close();
      await Promise.all([...sessions].map((s) =>
        new Promise<void>((resolve) => {
          s.once("close", () => resolve());
          s.destroy();
        })
      ));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

type TransportKind = "grpc" | "connect-json" | "connect-binary" | "grpc-web";

function transportFor(
  kind: TransportKind,
  socket: string,
  compress = false,
): { transport: Transport; close(): void } {
  const sessionManager = new Http2SessionManager("http://localhost", {}, {
    createConnection: () => connectUnix(socket),
  });
  const common = {
    httpVersion: "2" as const,
    baseUrl: "http://localhost",
    sessionManager,
    ...(compress ? { sendCompression: compressionGzip, compressMinBytes: 0 } : {}),
  };
  const transport = kind === "grpc"
    ? createGrpcTransport(common)
    : kind === "grpc-web"
    ? createGrpcWebTransport(common)
    : createConnectTransport({ ...common, useBinaryFormat: kind === "connect-binary" });
  return { transport, close: () => sessionManager.abort() };
}

interface RawResult {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a raw node:http2 client, for checks a Connect client hides. */
async function rawCall(
  socket: string,
  path: string,
  body: Uint8Array,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<RawResult> {
  const session = http2.connect("http://localhost", {
    createConnection: () => connectUnix(socket),
  });
  session.on("error", () => {});
  try {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    req.on("error", () => {});
    req.end(body);
    return await new Promise<RawResult>((resolve, reject) => {
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on("response", (h) => head = h);
      req.on("trailers", (t) => trailers = t);
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ headers: head, trailers, body: Buffer.concat(chunks) }));
      req.on("close", () => resolve({ headers: head, trailers, body: Buffer.concat(chunks) }));
      req.on("error", reject);
    });
  } finally {
    session.close();
  }
}

function envelope(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.byteLength);
  new DataView(out.buffer).setUint32(1, message.byteLength);
  out.set(message, 5);
  return out;
}

/** The payloads of the gRPC envelopes in a response body. */
function envelopes(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const length = body.readUInt32BE(at + 1);
    out.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

function watchRequest(service: string): Uint8Array {
  return envelope(
    toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })),
  );
}

/** grpc-status from a trailers-only response (headers) or from trailers. */
function grpcStatus(r: RawResult): { code: number; message: string } {
  const status = r.trailers["grpc-status"] ?? r.headers["grpc-status"];
  const message = r.trailers["grpc-message"] ?? r.headers["grpc-message"] ?? "";
  return { code: Number(status), message: decodeURIComponent(String(message)) };
}

async function withServer(
  fn: (s: TestServer) => Promise<void>,
  options: ServerOptions = {},
): Promise<void> {
  const server = await startServer(options);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

async function withClient(
  s: TestServer,
  kind: TransportKind,
  fn: (t: Transport) => Promise<void>,
  compress = false,
): Promise<void> {
  const { transport, close } = transportFor(kind, s.socket, compress);
  try {
    await fn(transport);
  } finally {
    close();
  }
}

async function rejectsWith(p: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected ConnectError, got ${err}`);
    assert.equal(err.code, code, `code ${Code[err.code]} (${err.rawMessage})`);
    if (message) assert.match(err.rawMessage, message);
    return true;
  });
}

const ALL_KINDS: TransportKind[] = ["grpc", "connect-json", "connect-binary", "grpc-web"];

// ---------------------------------------------------------------------------------------------

Deno.test("servesRpc recognises plugin instances with services", () => {
  assert.equal(servesRpc({ services: [serviceSpec(Version, {})] }), true);
  assert.equal(servesRpc({ services: [] }), true);
  assert.equal(servesRpc({ services: [{}] }), false);
  assert.equal(servesRpc({}), false);
  assert.equal(servesRpc(null), false);
});

Deno.test("createRpcHandler refuses a service registered twice", () => {
  assert.throws(
    () =>
      createRpcHandler({
        services: [serviceSpec(Version, {}), serviceSpec(Version, {})],
        interceptors: [],
        maxRecvMessageBytes: LIMIT,
        maxSendMessageBytes: LIMIT,
        log: silentLogger(),
      }),
    /containerd.services.version.v1.Version is registered twice/,
  );
});

Deno.test("encodeGrpcMessage percent-encodes non-printable bytes and %", () => {
  assert.equal(encodeGrpcMessage("plain message: ok"), "plain message: ok");
  assert.equal(encodeGrpcMessage("100%"), "100%25");
  assert.equal(encodeGrpcMessage("a\nb"), "a%0Ab");
  assert.equal(encodeGrpcMessage("é"), "%C3%A9");
});

Deno.test("encodeEnvelope gives the bytes of toBinary in a gRPC envelope", () => {
  const expected = (schema: DescMessage, message: Parameters<typeof toBinary>[1]) => {
    const bytes = toBinary(schema, message);
    const out = Buffer.alloc(5 + bytes.byteLength);
    out.writeUInt32BE(bytes.byteLength, 1);
    out.set(bytes, 5);
    return out;
  };
  const data = (n: number) => new Uint8Array(n).map((_, i) => i % 251);
  const cases: [DescMessage, Parameters<typeof toBinary>[1]][] = [
    // Large trailing bytes (one copy), at varint length boundaries, and small ones.
    ...[0, 1, 127, 16383, 16384, 16385, 32768, 1 << 20, (1 << 21) + 3].flatMap((n) =>
      [0n, 1n, 300n, 1n << 40n].map((
        offset,
      ): [DescMessage, Parameters<typeof toBinary>[1]] => [
        ReadContentResponseSchema,
        create(ReadContentResponseSchema, { offset, data: data(n) }),
      ])
    ),
    [VersionResponseSchema, create(VersionResponseSchema, { version: "1.6.20", revision: "x" })],
    [ServerResponseSchema, create(ServerResponseSchema, { uuid: "u", pid: 7n })],
  ];
  const withUnknown = create(ReadContentResponseSchema, { offset: 5n, data: data(40000) });
  withUnknown.$unknown = [{ no: 9, wireType: 0, data: new Uint8Array([1]) }];
  cases.push([ReadContentResponseSchema, withUnknown]);
  for (const [schema, message] of cases) {
    assert.deepEqual(
      encodeEnvelope(schema, message as never),
      expected(schema, message),
      `${schema.typeName}`,
    );
    // The same bytes as parts; a large trailing `bytes` value is the caller's own array.
    const parts = encodeEnvelopeParts(schema, message as never);
    assert.deepEqual(
      Buffer.from(concatBytes(parts, parts.reduce((n, p) => n + p.byteLength, 0))),
      expected(schema, message),
      `${schema.typeName} parts`,
    );
    const value = (message as { data?: Uint8Array }).data;
    const large = value !== undefined && value.byteLength >= 16 * 1024 &&
      (message as { $unknown?: unknown[] }).$unknown === undefined;
    assert.equal(parts.length, large ? 2 : 1, `${schema.typeName} ${value?.byteLength}`);
    if (large) assert.equal(parts[1], value);
  }
});

Deno.test("unary calls succeed on every protocol and both servers, interceptors see the namespace", async () => {
  for (const on of SERVER_KINDS) {
    await withServer(async (s) => {
      for (const kind of ALL_KINDS) {
        await withClient(s, kind, async (t) => {
          const client = createClient(Version, t);
          const res = await client.version({}, { headers: { "containerd-namespace": "default" } });
          assert.equal(res.version, "1.6.20-test", kind);
          assert.equal(res.revision, "default", kind);
          const health = createClient(Health, t);
          const h = await health.check({ service: "ns" }, {
            headers: { "containerd-namespace": "abcd" },
          });
          assert.equal(h.status, 4, kind);
        });
      }
      assert.equal(s.rpc.inFlight, 0);
    }, { on });
  }
});

Deno.test("gzip-compressed requests are inflated on every protocol", async () => {
  await withServer(async (s) => {
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        // A long field compresses well: the request really goes out gzip-encoded.
        const h = await createClient(Health, t).check({ service: "x".repeat(5000) });
        assert.equal(h.status, ServingStatus.SERVING, kind);
      }, true);
    }
  });
});

Deno.test("at trace level every finished RPC logs its method and duration", async () => {
  const lines: string[] = [];
  const log = createLogger({ level: "trace", write: (line) => lines.push(line) });
  await withServer(async (s) => {
    await withClient(s, "grpc", async (t) => {
      await createClient(Version, t).version({});
    });
  }, { log });
  const done = lines.filter((l) => l.includes(`msg="rpc done"`));
  assert.equal(done.length, 1, lines.join(""));
  assert.match(done[0]!, /method=\/containerd\.services\.version\.v1\.Version\/Version ms=\d/);
});

Deno.test("every finished RPC, on any protocol, is noted to the heap trimmer", async () => {
  let noted = 0;
  let bytes = 0;
  const heapTrimmer: HeapTrimmer = {
    note: (n) => bytes += n,
    noteCall: () => noted++,
    burstEnded() {},
    close() {},
  };
  await withServer(async (s) => {
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        const client = createClient(Version, t);
        for (let i = 0; i < 3; i++) await client.version({});
      });
    }
  }, { heapTrimmer });
  assert.equal(noted, 3 * ALL_KINDS.length, "one call noted per finished RPC");
  assert.equal(bytes, 0, "calls are not bulk bytes");
});

Deno.test("both servers grant wide flow-control windows, so uploads do not stall every 64 KiB", async () => {
  for (const on of SERVER_KINDS) {
    await withServer(async (s) => {
      const session = http2.connect("http://localhost", {
        createConnection: () => connectUnix(s.socket),
      });
      try {
        const settings = await new Promise<http2.Settings>((resolve) =>
          session.once("remoteSettings", resolve)
        );
        assert.equal(settings.initialWindowSize, 4 << 20);
        // The connection window arrives as a WINDOW_UPDATE right after the settings.
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.ok(
          (session.state.remoteWindowSize ?? 0) >= 16 << 20,
          `connection window ${session.state.remoteWindowSize}`,
        );
      } finally {
        session.destroy();
      }
    }, { on });
  }
});

Deno.test("fast path: raw gRPC unary gets one envelope and grpc-status 0, interceptors run", async () => {
  await withServer(async (s) => {
    const before = s.seen.interceptorRuns;
    const r = await rawCall(
      s.socket,
      "/containerd.services.version.v1.Version/Version",
      envelope(new Uint8Array()),
      {
        "containerd-namespace": "k8s.io",
      },
    );
    assert.equal(r.headers[":status"], 200);
    assert.equal(r.headers["content-type"], "application/grpc");
    assert.equal(r.trailers["grpc-status"], "0");
    assert.equal(r.body[0], 0);
    assert.equal(r.body.readUInt32BE(1), r.body.length - 5);
    const res = fromBinary(VersionResponseSchema, r.body.subarray(5));
    assert.equal(res.version, "1.6.20-test");
    assert.equal(res.revision, "k8s.io");
    assert.equal(s.seen.interceptorRuns, before + 1);
  });
});

Deno.test("typed errors keep code and message on fast path and router path", async () => {
  await withServer(async (s) => {
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        const health = createClient(Health, t);
        await rejectsWith(
          health.check({ service: "notfound" }),
          Code.NotFound,
          /^thing "x": not found$/,
        );
        await rejectsWith(health.check({ service: "plain" }), Code.Unknown, /^boom$/);
        await rejectsWith(
          health.check({ service: "ns" }),
          Code.FailedPrecondition,
          /^namespace is required: failed precondition$/,
        );
        await rejectsWith(
          health.check({ service: "ns" }, { headers: { "containerd-namespace": "bad/ns" } }),
          Code.InvalidArgument,
          /^namespace validation: identifier "bad\/ns" must match .*: invalid argument$/,
        );
      });
    }
    // The fast path answers errors as trailers-only responses with a percent-encoded message.
    const r = await rawCall(
      s.socket,
      "/grpc.health.v1.Health/Check",
      envelope(new Uint8Array([10, 8, ...new TextEncoder().encode("notfound")])),
    );
    assert.equal(r.headers[":status"], 200);
    assert.equal(r.headers["grpc-status"], "5");
    assert.equal(r.headers["grpc-message"], 'thing "x": not found');
    assert.equal(r.body.length, 0);
    assert.deepEqual(r.trailers, {});
  });
});

Deno.test("server streaming works on every protocol and both servers; errors mid-stream keep their code", async () => {
  for (const on of SERVER_KINDS) {
    await withServer(async (s) => {
      for (const kind of ALL_KINDS) {
        await withClient(s, kind, async (t) => {
          const health = createClient(Health, t);
          const got: number[] = [];
          for await (const m of health.watch({ service: "three" })) got.push(m.status);
          assert.deepEqual(got, [1, 2, 1], kind);
          const seen: number[] = [];
          await rejectsWith(
            (async () => {
              for await (const m of health.watch({ service: "fail" })) seen.push(m.status);
            })(),
            Code.NotFound,
            /^watched thing: not found$/,
          );
          assert.deepEqual(seen, [1], kind);
        });
      }
    }, { on });
  }
});

Deno.test("fast path serves gRPC server streams: messages as they come, then trailers", async () => {
  await withServer(async (s) => {
    const watch = "/grpc.health.v1.Health/Watch";
    const three = await rawCall(s.socket, watch, watchRequest("three"));
    // The router would answer application/grpc+proto: this came from the fast path.
    assert.equal(three.headers["content-type"], "application/grpc");
    assert.deepEqual(
      envelopes(three.body).map((b) => fromBinary(HealthCheckResponseSchema, b).status),
      [1, 2, 1],
    );
    assert.equal(three.trailers["grpc-status"], "0");

    const fail = await rawCall(s.socket, watch, watchRequest("fail"));
    assert.equal(envelopes(fail.body).length, 1);
    assert.equal(fail.trailers["grpc-status"], "5");
    assert.equal(fail.trailers["grpc-message"], "watched thing: not found");

    const first = await rawCall(s.socket, watch, watchRequest("failfirst"));
    assert.equal(first.body.length, 0);
    assert.equal(first.headers["grpc-status"], "5");
    assert.deepEqual(first.trailers, {});

    const empty = await rawCall(s.socket, watch, watchRequest("empty"));
    assert.equal(empty.body.length, 0);
    assert.equal(empty.headers["grpc-status"], "0");

    const deadline = await rawCall(s.socket, watch, watchRequest("forever"), {
      "grpc-timeout": "100m",
    });
    assert.equal(envelopes(deadline.body).length, 1);
    assert.equal(deadline.trailers["grpc-status"], "4");
    await s.rpc.drain(AbortSignal.timeout(2000));
    assert.equal(s.rpc.inFlight, 0);

    // A message over the send limit ends the stream with ResourceExhausted.
    await withClient(s, "grpc", async (t) => {
      // deno-lint-ignore no-explicit-any
      const echo = createClient(Echo, t) as any;
      const got: string[] = [];
      for await (const m of echo.spam({ text: "3x100" })) got.push(m.text);
      assert.deepEqual(got, ["0".repeat(100), "1".repeat(100), "2".repeat(100)]);
      await rejectsWith(
        (async () => {
          for await (const _ of echo.spam({ text: `2x${LIMIT + 1}` })) { /* none */ }
        })(),
        Code.ResourceExhausted,
        new RegExp(`${LIMIT}`),
      );
    });
  });
});

Deno.test("fast path streams large messages intact, with backpressure", async () => {
  await withServer(async (s) => {
    for (const kind of ["grpc", "connect-binary"] as const) {
      await withClient(s, kind, async (t) => {
        // deno-lint-ignore no-explicit-any
        const echo = createClient(Echo, t) as any;
        const sizes: number[] = [];
        let i = 0;
        for await (const m of echo.spam({ text: "12x1048576" })) {
          assert.equal(m.text, String(i++ % 10).repeat(1048576));
          sizes.push(m.text.length);
        }
        assert.equal(sizes.length, 12, kind);
      });
    }
  }, { limit: 4 << 20 });
});

Deno.test("client cancellation aborts the handler signal and ends the RPC", async () => {
  await withServer(async (s) => {
    await withClient(s, "grpc", async (t) => {
      const health = createClient(Health, t);
      const abort = new AbortController();
      const it = health.watch({ service: "forever" }, { signal: abort.signal })
        [Symbol.asyncIterator]();
      assert.equal((await it.next()).value?.status, 1);
      assert.equal(s.rpc.inFlight, 1);
      abort.abort();
      await it.next().catch(() => {});
      await s.rpc.drain(AbortSignal.timeout(2000));
      assert.equal(s.rpc.inFlight, 0);
      assert.equal(s.seen.canceled, 1);
    });
    // Unary on the fast path: the client resets the stream mid-call.
    await withClient(s, "grpc", async (t) => {
      const health = createClient(Health, t);
      await rejectsWith(
        health.check({ service: "slow" }, { signal: AbortSignal.timeout(100) }),
        Code.Canceled,
      );
      await s.rpc.drain(AbortSignal.timeout(2000));
      assert.equal(s.seen.canceled, 2);
    });
  });
});

Deno.test("client and bidi streaming go through the router on both servers", async () => {
  for (const on of SERVER_KINDS) {
    await withServer(async (s) => {
      for (const kind of ["grpc", "connect-binary", "connect-json"] as const) {
        await withClient(s, kind, async (t) => {
          // deno-lint-ignore no-explicit-any
          const echo = createClient(Echo, t) as any;
          async function* three() {
            yield create(MsgSchema, { text: "a" });
            yield create(MsgSchema, { text: "b" });
            yield create(MsgSchema, { text: "c" });
          }
          const collected = await echo.collect(three());
          assert.equal(collected.text, "a+b+c", kind);
          const replies: string[] = [];
          for await (const r of echo.chat(three())) replies.push(r.text);
          assert.deepEqual(replies, ["echo a", "echo b", "echo c"], kind);
        });
      }
    }, { on });
  }
});

Deno.test("unknown service or method → gRPC 12 with HTTP 200; Connect → 404 unimplemented", async () => {
  await withServer(async (s) => {
    const svc = await rawCall(
      s.socket,
      "/containerd.services.foo.v1.Foo/Bar",
      envelope(new Uint8Array()),
    );
    assert.equal(svc.headers[":status"], 200);
    assert.deepEqual(grpcStatus(svc), {
      code: 12,
      message: "unknown service containerd.services.foo.v1.Foo",
    });
    const method = await rawCall(
      s.socket,
      "/containerd.services.version.v1.Version/Nope",
      envelope(new Uint8Array()),
    );
    assert.equal(method.headers[":status"], 200);
    assert.deepEqual(grpcStatus(method), {
      code: 12,
      message: "unknown method Nope for service containerd.services.version.v1.Version",
    });
    // That lookup made Version's router handlers; its real method is served by them after.
    const version = await rawCall(
      s.socket,
      "/containerd.services.version.v1.Version/Version",
      new TextEncoder().encode("{}"),
      { "content-type": "application/json" },
    );
    assert.equal(version.headers[":status"], 200);
    assert.equal(JSON.parse(version.body.toString()).version, "1.6.20-test");
    const web = await rawCall(
      s.socket,
      "/containerd.services.foo.v1.Foo/Bar",
      envelope(new Uint8Array()),
      {
        "content-type": "application/grpc-web+proto",
      },
    );
    assert.equal(web.headers[":status"], 200);
    assert.equal(web.headers["grpc-status"], "12");
    const connect = await rawCall(
      s.socket,
      "/containerd.services.foo.v1.Foo/Bar",
      new TextEncoder().encode("{}"),
      {
        "content-type": "application/json",
      },
    );
    assert.equal(connect.headers[":status"], 404);
    const json = JSON.parse(connect.body.toString());
    assert.equal(json.code, "unimplemented");
    assert.equal(json.message, "unknown service containerd.services.foo.v1.Foo");
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        // deno-lint-ignore no-explicit-any
        const client = createClient(Ghost, t) as any;
        await rejectsWith(
          client.boo({}),
          Code.Unimplemented,
          /unknown service test\.echo\.v1\.Ghost/,
        );
      });
    }
  });
});

Deno.test("a service's response encoder writes its unary answers on the gRPC fast path only", async () => {
  const served = create(VersionResponseSchema, { version: "from-the-implementation" });
  const encoded = toBinary(VersionResponseSchema, { ...served, version: "from-the-encoder" });
  let declined = false;
  const encoders = new Map([[
    VersionResponseSchema.typeName,
    () => declined ? undefined : encoded,
  ]]);
  const services = [serviceSpec(Version, { version: () => served }, encoders)];
  for (const on of SERVER_KINDS) {
    await withServer(async (s) => {
      for (const kind of ALL_KINDS) {
        await withClient(s, kind, async (t) => {
          const res = await createClient(Version, t).version({});
          const expected = kind === "grpc" ? "from-the-encoder" : "from-the-implementation";
          assert.equal(res.version, expected, `${on} ${kind}`);
        });
      }
      // An encoder that declines leaves the message to toBinary.
      declined = true;
      await withClient(s, "grpc", async (t) => {
        assert.equal((await createClient(Version, t).version({})).version, served.version);
      });
      declined = false;
    }, { on, services });
  }
});

Deno.test("a unary answer that cannot be encoded fails that call, and the server serves on", async () => {
  const encoders = new Map([[VersionResponseSchema.typeName, () => {
    throw new Error("the encoder broke");
  }]]);
  const services = [
    serviceSpec(
      Version,
      { version: () => create(VersionResponseSchema, { version: "v" }) },
      encoders,
    ),
    // A uint64 field holding what is no number: toBinary refuses it.
    serviceSpec(Introspection, {
      server: () => create(ServerResponseSchema, { uuid: "u", pid: "not a number" as never }),
    }),
  ];
  await withServer(async (s) => {
    await withClient(s, "grpc", async (t) => {
      await rejectsWith(createClient(Version, t).version({}), Code.Internal);
      await rejectsWith(createClient(Introspection, t).server({}), Code.Internal);
      // The server is still there for the next call (grpc-go answers a response it cannot
      // marshal with Internal too).
      await rejectsWith(createClient(Version, t).version({}), Code.Internal);
    });
    assert.equal(s.rpc.inFlight, 0);
  }, { services });
});

Deno.test("oversize request and response → ResourceExhausted naming size and limit", async () => {
  await withServer(async (s) => {
    const big = "y".repeat(LIMIT + 10);
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        // deno-lint-ignore no-explicit-any
        const echo = createClient(Echo, t) as any;
        assert.equal((await echo.say({ text: "hi" })).text, "hi", kind);
        await rejectsWith(echo.say({ text: big }), Code.ResourceExhausted, new RegExp(`${LIMIT}`));
        await rejectsWith(
          echo.say({ text: `repeat:${LIMIT + 10}` }),
          Code.ResourceExhausted,
          new RegExp(`${LIMIT}`),
        );
      });
    }
    const raw = await rawCall(
      s.socket,
      "/test.echo.v1.Echo/Say",
      envelope(toBinary(MsgSchema, create(MsgSchema, { text: big }))),
    );
    assert.equal(grpcStatus(raw).code, 8);
    assert.match(
      grpcStatus(raw).message,
      new RegExp(`larger than max \\(${LIMIT + 14} vs\\. ${LIMIT}\\)`),
    );
    assert.equal(s.rpc.inFlight, 0);
  });
});

Deno.test("grpc-timeout: an expired deadline answers DeadlineExceeded (fast path and router)", async () => {
  await withServer(async (s) => {
    const body = envelope(
      toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, {})),
    );
    const slow = envelope(new Uint8Array([10, 4, ...new TextEncoder().encode("slow")]));
    void body;
    const started = Date.now();
    const fastPath = await rawCall(s.socket, "/grpc.health.v1.Health/Check", slow, {
      "grpc-timeout": "100m",
    });
    assert.equal(grpcStatus(fastPath).code, 4);
    assert.ok(Date.now() - started < 3000);
    // application/grpc+json is served by the router.
    const router = await rawCall(
      s.socket,
      "/grpc.health.v1.Health/Check",
      new Uint8Array([0, 0, 0, 0, 18, ...new TextEncoder().encode('{"service":"slow"}')]),
      {
        "grpc-timeout": "100m",
        "content-type": "application/grpc+json",
      },
    );
    assert.equal(grpcStatus(router).code, 4);
    // 1000 hours: longer than a timer holds; must not fire at once.
    for (const contentType of ["application/grpc", "application/grpc+json"]) {
      const body = contentType === "application/grpc"
        ? envelope(
          toBinary(
            HealthCheckRequestSchema,
            create(HealthCheckRequestSchema, { service: "pause" }),
          ),
        )
        : envelope(new TextEncoder().encode('{"service":"pause"}'));
      const long = await rawCall(s.socket, "/grpc.health.v1.Health/Check", body, {
        "grpc-timeout": "1000H",
        "content-type": contentType,
      });
      assert.equal(grpcStatus(long).code, 0, contentType);
    }
    const bad = await rawCall(s.socket, "/grpc.health.v1.Health/Check", slow, {
      "grpc-timeout": "soon",
    });
    assert.equal(grpcStatus(bad).code, 3);
    for (const kind of ALL_KINDS) {
      await withClient(s, kind, async (t) => {
        const health = createClient(Health, t);
        await rejectsWith(
          health.check({ service: "slow" }, { timeoutMs: 100 }),
          Code.DeadlineExceeded,
        );
      });
    }
    await s.rpc.drain(AbortSignal.timeout(2000));
    assert.equal(s.rpc.inFlight, 0);
  });
});

Deno.test("drain resolves once running RPCs end, or when its signal aborts", async () => {
  await withServer(async (s) => {
    await s.rpc.drain(AbortSignal.timeout(1000));
    await withClient(s, "grpc", async (t) => {
      const health = createClient(Health, t);
      const abort = new AbortController();
      const it = health.watch({ service: "forever" }, { signal: abort.signal })
        [Symbol.asyncIterator]();
      await it.next();
      const started = Date.now();
      await s.rpc.drain(AbortSignal.timeout(200));
      assert.ok(Date.now() - started >= 150);
      assert.equal(s.rpc.inFlight, 1);
      const draining = s.rpc.drain(AbortSignal.timeout(5000));
      abort.abort();
      await it.next().catch(() => {});
      await draining;
      assert.equal(s.rpc.inFlight, 0);
    });
  });
});

Deno.test("real ctr version against the handler", async () => {
  try {
    await Deno.stat("/usr/bin/ctr");
  } catch {
    console.log("SKIP: ctr not installed");
    return;
  }
  await withServer(async (s) => {
    const out = await new Deno.Command("/usr/bin/ctr", {
      args: ["-a", s.socket, "version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(
      stdout,
      /Server:\s+Version:\s+1\.6\.20-test\s+Revision:\s+default\s+UUID:\s+0b4c9d5e-test-uuid/,
    );
    // An error from the fast path reaches ctr as containerd's would.
    const ns = await new Deno.Command("/usr/bin/ctr", {
      args: ["-a", s.socket, "namespaces", "ls"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(ns.code, 1);
    assert.match(
      new TextDecoder().decode(ns.stderr),
      /unknown service containerd\.services\.namespaces\.v1\.Namespaces/,
    );
  });
});
