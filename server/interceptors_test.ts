import assert from "node:assert/strict";
import { create, type DescMessage } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  contextInterceptor,
  errorInterceptor,
  grpcMessageOf,
  leaseKey,
  leaseOf,
  namespaceKey,
  namespaceOf,
  validateIdentifier,
} from "./interceptors.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
} from "./errdefs.ts";
import { createLogger } from "./log.ts";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
} from "../proto/gen/grpc/health/v1/health_pb.ts";

const check = Health.method.check;
const watch = Health.method.watch;

function unaryRequest(headers: Record<string, string> = {}): UnaryRequest {
  return {
    stream: false,
    message: create(HealthCheckRequestSchema),
    method: check,
    service: Health,
    requestMethod: "POST",
    url: "http://localhost/grpc.health.v1.Health/Check",
    signal: new AbortController().signal,
    header: new Headers(headers),
    contextValues: createContextValues(),
  } as UnaryRequest;
}

function unaryResponse(): UnaryResponse {
  return {
    stream: false,
    message: create(HealthCheckResponseSchema, { status: 1 }),
    method: check,
    service: Health,
    header: new Headers(),
    trailer: new Headers(),
  } as UnaryResponse;
}

function streamRequest(): StreamRequest {
  return {
    stream: true,
    message: (async function* () {})(),
    method: watch,
    service: Health,
    requestMethod: "POST",
    url: "http://localhost/grpc.health.v1.Health/Watch",
    signal: new AbortController().signal,
    header: new Headers(),
    contextValues: createContextValues(),
  } as unknown as StreamRequest;
}

function contextWith(values: { namespace?: string; lease?: string }) {
  const ctx = createHandlerContext({
    service: Health,
    method: check,
    protocolName: "grpc",
    requestMethod: "POST",
    url: "http://localhost/",
  });
  if (values.namespace !== undefined) ctx.values.set(namespaceKey, values.namespace);
  if (values.lease !== undefined) ctx.values.set(leaseKey, values.lease);
  return ctx;
}

function capturingLogger() {
  const lines: string[] = [];
  return {
    log: createLogger({ level: "debug", format: "json", write: (l) => lines.push(l) }),
    lines,
  };
}

Deno.test("contextInterceptor copies namespace and lease headers into context values", async () => {
  const req = unaryRequest({ "containerd-namespace": "k8s.io", "containerd-lease": "lease-1" });
  let seen: Record<string, string | undefined> = {};
  await contextInterceptor()((r) => {
    seen = { ns: r.contextValues.get(namespaceKey), lease: r.contextValues.get(leaseKey) };
    return Promise.resolve(unaryResponse());
  })(req);
  assert.deepEqual({ ...seen }, { ns: "k8s.io", lease: "lease-1" });

  const bare = unaryRequest();
  await contextInterceptor()((r) => {
    seen = { ns: r.contextValues.get(namespaceKey), lease: r.contextValues.get(leaseKey) };
    return Promise.resolve(unaryResponse());
  })(bare);
  assert.deepEqual({ ...seen }, { ns: undefined, lease: undefined });

  // Repeated metadata: containerd reads the first value.
  const repeated = unaryRequest();
  repeated.header.append("containerd-namespace", "first");
  repeated.header.append("containerd-namespace", "second");
  await contextInterceptor()((r) => {
    seen = { ns: r.contextValues.get(namespaceKey) };
    return Promise.resolve(unaryResponse());
  })(repeated);
  assert.equal(seen.ns, "first");
});

Deno.test("namespaceOf requires a valid namespace", () => {
  assert.equal(namespaceOf(contextWith({ namespace: "default" })), "default");
  assert.equal(namespaceOf(contextWith({ namespace: "k8s.io" })), "k8s.io");
  assert.throws(() => namespaceOf(contextWith({})), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError);
    assert.equal(err.message, "namespace is required");
    return true;
  });
  assert.throws(() => namespaceOf(contextWith({ namespace: "" })), FailedPreconditionError);
  for (const bad of ["a/b", "-a", "a-", "a..b", "UPPER lower", "x".repeat(77)]) {
    assert.throws(
      () => namespaceOf(contextWith({ namespace: bad })),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, bad);
        assert.match(err.message, /^namespace validation: identifier /);
        return true;
      },
    );
  }
  assert.equal(namespaceOf(contextWith({ namespace: "x".repeat(76) })), "x".repeat(76));
});

Deno.test("validateIdentifier uses containerd's wording", () => {
  assert.throws(
    () => validateIdentifier(""),
    /^InvalidArgumentError: identifier must not be empty$/,
  );
  assert.throws(
    () => validateIdentifier("a b"),
    { message: 'identifier "a b" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$' },
  );
  assert.throws(
    () => validateIdentifier("y".repeat(80)),
    { message: `identifier "${"y".repeat(80)}" greater than maximum length (76 characters)` },
  );
  validateIdentifier("a_b-c.d");
});

Deno.test("leaseOf returns the lease or undefined", () => {
  assert.equal(leaseOf(contextWith({ lease: "l1" })), "l1");
  assert.equal(leaseOf(contextWith({})), undefined);
  assert.equal(leaseOf(contextWith({ lease: "" })), undefined);
});

Deno.test("grpcMessageOf appends containerd's kind suffix once", () => {
  assert.equal(
    grpcMessageOf(new FailedPreconditionError("namespace is required")),
    "namespace is required: failed precondition",
  );
  assert.equal(
    grpcMessageOf(new NotFoundError("content digest sha256:abc: not found")),
    "content digest sha256:abc: not found",
  );
  assert.equal(grpcMessageOf(new AlreadyExistsError("image x")), "image x: already exists");
  assert.equal(grpcMessageOf(new NotFoundError("")), "not found");
  // Kinds containerd 1.6's errdefs has no sentinel for keep their message.
  assert.equal(grpcMessageOf(new ResourceExhaustedError("too big")), "too big");
});

Deno.test("errorInterceptor maps typed errors on unary calls", async () => {
  const { log, lines } = capturingLogger();
  const call = (err: unknown) => errorInterceptor(log)(() => Promise.reject(err))(unaryRequest());
  await assert.rejects(call(new NotFoundError(`image "x"`)), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, `image "x": not found`);
    return true;
  });
  await assert.rejects(call(new ConnectError("as is", Code.Aborted)), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Aborted);
    assert.equal(err.rawMessage, "as is");
    return true;
  });
  await assert.rejects(call(new DOMException("gone", "AbortError")), { code: Code.Canceled });
  assert.equal(lines.filter((l) => JSON.parse(l).level === "error").length, 0);

  await assert.rejects(call(new TypeError("x is undefined")), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unknown);
    assert.equal(err.rawMessage, "x is undefined");
    return true;
  });
  const errors = lines.map((l) => JSON.parse(l)).filter((r) => r.level === "error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].method, "/grpc.health.v1.Health/Check");
  assert.equal(errors[0].code, "Unknown");
  assert.match(errors[0].stack, /TypeError: x is undefined/);
});

Deno.test("errorInterceptor passes successful responses through", async () => {
  const res = unaryResponse();
  const out = await errorInterceptor(createLogger({ write: () => {} }))(() => Promise.resolve(res))(
    unaryRequest(),
  );
  assert.equal(out, res);
});

Deno.test("errorInterceptor maps errors thrown while a server stream is iterated", async () => {
  const { log, lines } = capturingLogger();
  const response = {
    stream: true,
    service: Health,
    method: watch,
    header: new Headers(),
    trailer: new Headers(),
    message: (async function* () {
      yield create(HealthCheckResponseSchema, { status: 1 });
      throw new NotFoundError("watched thing");
    })(),
  } as unknown as StreamResponse<DescMessage, DescMessage>;
  const out = await errorInterceptor(log)(() => Promise.resolve(response))(streamRequest());
  assert.ok(out.stream);
  const got: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const m of out.message) got.push((m as unknown as { status: number }).status);
    })(),
    (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.NotFound);
      assert.equal(err.rawMessage, "watched thing: not found");
      return true;
    },
  );
  assert.deepEqual(got, [1]);
  assert.equal(lines.filter((l) => JSON.parse(l).level === "error").length, 0);

  const crashing = {
    ...response,
    message: (async function* () {
      yield* [];
      throw new RangeError("bad index");
    })(),
  } as unknown as StreamResponse<DescMessage, DescMessage>;
  const out2 = await errorInterceptor(log)(() => Promise.resolve(crashing))(streamRequest());
  assert.ok(out2.stream);
  await assert.rejects(
    (async () => {
      for await (const _ of out2.message) { /* drain */ }
    })(),
    { code: Code.Unknown },
  );
  assert.equal(lines.filter((l) => JSON.parse(l).level === "error").length, 1);
});
