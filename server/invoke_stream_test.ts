import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createHandlerContext,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { transformInvokeImplementation } from "@connectrpc/connect/protocol";
import {
  Content,
  ReadContentRequestSchema,
  ReadContentResponseSchema,
} from "../proto/gen/containerd/services/content/v1/content_pb.ts";
import { invokeServerStreaming, type ServerStreamingSpec, singleMessage } from "./invoke_stream.ts";
import { errorInterceptor } from "./interceptors.ts";
import { NotFoundError } from "./errdefs.ts";
import { silentLogger } from "./log.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;
const seenKey = createContextKey<string>("none", { description: "test value" });

/** The Read method's spec for an implementation of Read alone. */
function readSpec(read: ServiceImpl<typeof Content>["read"]): ServerStreamingSpec {
  const spec = createServiceImplSpec<typeof Content>(Content, { read }).methods["read"];
  assert.equal(spec?.kind, "server_streaming");
  return spec as ServerStreamingSpec;
}

function contextFor(spec: ServerStreamingSpec): HandlerContext {
  return createHandlerContext({
    service: Content,
    method: spec.method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: "http://localhost/containerd.services.content.v1.Content/Read",
    requestHeader: { "containerd-namespace": "default" },
  });
}

/** Everything a call produced: messages (type, offset, data as text), headers, trailers, or the error. */
async function outcome(
  iterator: () => Promise<AsyncIterator<unknown>>,
  context: HandlerContext,
): Promise<unknown> {
  try {
    const it = await iterator();
    const messages: unknown[] = [];
    for (let r = await it.next(); r.done !== true; r = await it.next()) {
      const m = r.value as { $typeName: string; offset: bigint; data: Uint8Array };
      messages.push([m.$typeName, m.offset, new TextDecoder().decode(m.data)]);
    }
    return {
      messages,
      header: [...context.responseHeader],
      trailer: [...context.responseTrailer],
    };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: Code[e.code], message: e.rawMessage };
  }
}

/** The same call through Connect's transformInvokeImplementation and through ours. */
async function both(
  read: ServiceImpl<typeof Content>["read"],
  interceptors: Interceptor[],
): Promise<{ connect: unknown; ours: unknown }> {
  const spec = readSpec(read);
  const request = create(ReadContentRequestSchema, { digest: DIGEST, size: 10n });
  const c1 = contextFor(spec);
  const connect = await outcome(
    () =>
      Promise.resolve(
        transformInvokeImplementation(spec, c1, interceptors)(singleMessage(request))[
          Symbol.asyncIterator
        ](),
      ),
    c1,
  );
  const c2 = contextFor(spec);
  const ours = await outcome(() => invokeServerStreaming(spec, c2, request, interceptors), c2);
  return { connect, ours };
}

Deno.test("invokeServerStreaming answers as Connect does: messages made full, headers and trailers copied", async () => {
  const { connect, ours } = await both(async function* (req, ctx) {
    ctx.responseHeader.set("x-read", req.digest);
    yield { offset: 0n, data: new TextEncoder().encode("abcd") }; // an init object, not a message
    yield create(ReadContentResponseSchema, {
      offset: 4n,
      data: new TextEncoder().encode("efghij"),
    });
    ctx.responseTrailer.set("x-done", "yes");
  }, []);
  assert.deepEqual(ours, {
    messages: [
      ["containerd.services.content.v1.ReadContentResponse", 0n, "abcd"],
      ["containerd.services.content.v1.ReadContentResponse", 4n, "efghij"],
    ],
    header: [["x-read", DIGEST]],
    trailer: [["x-done", "yes"]],
  });
  assert.deepEqual(ours, connect);
});

Deno.test("invokeServerStreaming runs the interceptors, and the implementation sees what they set", async () => {
  const calls: string[] = [];
  const outer: Interceptor = (next) => async (req) => {
    calls.push(`outer ${req.stream} ${req.method.name}`);
    req.contextValues.set(seenKey, "from outer");
    const res = await next(req);
    res.header.set("x-outer", "1");
    return { ...res, trailer: new Headers({ "x-outer-trailer": "2" }) };
  };
  const replaceHeader: Interceptor = (next) => (req) => {
    calls.push("inner");
    return next({ ...req, header: new Headers({ "x-replaced": "yes" }) });
  };
  const { connect, ours } = await both(async function* (_req, ctx) {
    yield {
      data: new TextEncoder().encode(
        `${ctx.values.get(seenKey)} ${ctx.requestHeader.get("x-replaced")}`,
      ),
    };
  }, [outer, replaceHeader]);
  assert.deepEqual(calls, ["outer true Read", "inner", "outer true Read", "inner"]);
  assert.deepEqual(ours, {
    messages: [["containerd.services.content.v1.ReadContentResponse", 0n, "from outer yes"]],
    header: [["x-outer", "1"]],
    trailer: [["x-outer-trailer", "2"]],
  });
  assert.deepEqual(ours, connect);
});

Deno.test("invokeServerStreaming reads a request stream an interceptor replaced, with Connect's errors", async () => {
  const extra: Interceptor = (next) => (req) =>
    next(
      {
        ...req,
        message: (async function* () {
          yield create(ReadContentRequestSchema, { digest: DIGEST });
          yield create(ReadContentRequestSchema, { digest: DIGEST });
        })(),
      } as typeof req,
    );
  const none: Interceptor = (next) => (req) =>
    next({ ...req, message: (async function* () {})() } as typeof req);
  const swap: Interceptor = (next) => (req) =>
    next(
      {
        ...req,
        message: singleMessage(create(ReadContentRequestSchema, { digest: "sha256:swapped" })),
      } as typeof req,
    );
  const read: ServiceImpl<typeof Content>["read"] = async function* (req) {
    yield { data: new TextEncoder().encode(req.digest) };
  };
  for (const interceptor of [extra, none, swap]) {
    const { connect, ours } = await both(read, [interceptor]);
    assert.deepEqual(ours, connect);
  }
  assert.deepEqual((await both(read, [extra])).ours, {
    code: "Unimplemented",
    message: "protocol error: received extra input message for server-streaming method",
  });
  assert.deepEqual((await both(read, [swap])).ours, {
    messages: [["containerd.services.content.v1.ReadContentResponse", 0n, "sha256:swapped"]],
    header: [],
    trailer: [],
  });
});

Deno.test("invokeServerStreaming: an error while streaming goes through the error interceptor", async () => {
  const { connect, ours } = await both(async function* () {
    yield { data: new Uint8Array(1) };
    throw new NotFoundError(`content digest ${DIGEST}`);
  }, [errorInterceptor(silentLogger())]);
  assert.deepEqual(ours, { code: "NotFound", message: `content digest ${DIGEST}: not found` });
  assert.deepEqual(ours, connect);
});

Deno.test("invokeServerStreaming: return() ends the implementation, running its finally", async () => {
  let cleaned = false;
  const spec = readSpec(async function* () {
    try {
      for (let i = 0;; i++) yield { offset: BigInt(i) };
    } finally {
      cleaned = true;
    }
  });
  const context = contextFor(spec);
  const it = await invokeServerStreaming(
    spec,
    context,
    create(ReadContentRequestSchema, { digest: DIGEST }),
    [errorInterceptor(silentLogger())],
  );
  assert.equal((await it.next()).done, false);
  assert.equal((await it.next()).done, false);
  await it.return?.();
  assert.equal(cleaned, true);
  assert.equal((await it.next()).done, true);
});
