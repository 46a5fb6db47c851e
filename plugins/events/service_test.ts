import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
} from "@connectrpc/connect";
import { Exchange } from "../../server/exchange.ts";
import { contextInterceptor, errorInterceptor } from "../../server/interceptors.ts";
import { silentLogger } from "../../server/log.ts";
import { initPlugins, registry } from "../../server/plugin.ts";
import { servesRpc } from "../../server/rpc.ts";
import { type Envelope, Events } from "../../proto/gen/containerd/services/events/v1/events_pb.ts";
import {
  NamespaceCreateSchema,
  NamespaceDeleteSchema,
} from "../../proto/gen/containerd/events/namespace_pb.ts";
import { EventPlugin, GRPCPlugin } from "../types.ts";
import { eventsService, validateEventTopic } from "./service.ts";
import "./plugin.ts";

interface Fixture {
  exchange: Exchange;
  client: Client<typeof Events>;
  stop: AbortController;
}

function fixture(): Fixture {
  const exchange = new Exchange();
  const stop = new AbortController();
  const transport = createRouterTransport((router) => {
    const spec = eventsService({ exchange, signal: stop.signal });
    router.service(spec.service, spec.impl);
  }, { router: { interceptors: [contextInterceptor(), errorInterceptor(silentLogger())] } });
  return { exchange, stop, client: createClient(Events, transport) };
}

function ns(namespace: string): CallOptions {
  return { headers: { "containerd-namespace": namespace } };
}

/** An event as containerd packs it: the bare type name, no `type.googleapis.com/` prefix. */
function namespaceCreate(name: string) {
  return create(AnySchema, {
    typeUrl: NamespaceCreateSchema.typeName,
    value: toBinary(NamespaceCreateSchema, create(NamespaceCreateSchema, { name })),
  });
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${err}`);
  return err;
}

/**
 * Subscribe and collect `count` envelopes; resolves once the subscription is live, with the
 * promise of the envelopes (wrapped, since an async function would flatten a bare promise).
 */
async function collect(
  f: Fixture,
  filters: string[],
  count: number,
  options: CallOptions = {},
): Promise<{ envelopes: Promise<Envelope[]> }> {
  const before = f.exchange.subscriberCount;
  const got: Envelope[] = [];
  const controller = new AbortController();
  const done = (async () => {
    try {
      for await (
        const env of f.client.subscribe({ filters }, { ...options, signal: controller.signal })
      ) {
        got.push(env);
        if (got.length === count) controller.abort();
      }
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
    }
    return got;
  })();
  await waitFor(() => f.exchange.subscriberCount > before, "the subscription");
  return { envelopes: done };
}

Deno.test("Publish reaches subscribers of every namespace, stamped and namespaced", async () => {
  const f = fixture();
  // The subscriber's own namespace header does not scope what it sees.
  const received = await collect(f, [], 2, ns("other"));
  const before = Date.now();
  await f.client.publish({ topic: "/namespaces/create", event: namespaceCreate("a") }, ns("ns1"));
  await f.client.publish({ topic: "/namespaces/create", event: namespaceCreate("b") }, ns("ns2"));
  const [first, second] = await received.envelopes;
  assert.ok(first && second);
  assert.equal(first.topic, "/namespaces/create");
  assert.equal(first.namespace, "ns1");
  assert.equal(second.namespace, "ns2");
  assert.equal(first.event?.typeUrl, "containerd.events.NamespaceCreate");
  assert.equal(fromBinary(NamespaceCreateSchema, first.event?.value ?? new Uint8Array()).name, "a");
  assert.ok(first.timestamp);
  const at = timestampDate(first.timestamp).getTime();
  assert.ok(at >= before - 1 && at <= Date.now() + 1, `timestamp ${at} is now`);
  await waitFor(() => f.exchange.subscriberCount === 0, "the subscription to end");
});

Deno.test("Publish requires a namespace, a valid topic and an event", async () => {
  const f = fixture();
  const event = namespaceCreate("a");
  let err = await rejection(f.client.publish({ topic: "/a", event }));
  assert.equal(err.code, Code.FailedPrecondition);
  assert.equal(
    err.rawMessage,
    "failed publishing event: namespace is required: failed precondition",
  );
  err = await rejection(f.client.publish({ topic: "/a", event }, ns("-bad")));
  assert.equal(err.code, Code.InvalidArgument);
  for (const topic of ["", "a/b", "/", "/a//b", "/a/b c", "/a/"]) {
    err = await rejection(f.client.publish({ topic, event }, ns("default")));
    assert.equal(err.code, Code.InvalidArgument, `topic ${JSON.stringify(topic)}`);
    assert.match(err.rawMessage, /^envelope topic ".*": .*: invalid argument$/);
  }
  err = await rejection(f.client.publish({ topic: "/a" }, ns("default")));
  assert.equal(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, /event must be set/);
});

Deno.test("topic validation matches containerd's wording", () => {
  validateEventTopic("/tasks/exec-added");
  validateEventTopic("/snapshot/prepare");
  assert.throws(() => validateEventTopic("tasks"), /envelope topic "tasks": must start with '\/'/);
  assert.throws(() => validateEventTopic(""), /must not be empty/);
  assert.throws(() => validateEventTopic("/"), /must have at least one component/);
  assert.throws(
    () => validateEventTopic("/a/b_"),
    /failed validation on component "b_": identifier "b_" must match/,
  );
});

Deno.test("Forward republishes an envelope as is, after validating it", async () => {
  const f = fixture();
  const received = await collect(f, [], 1);
  const timestamp = timestampFromDate(new Date("2020-01-02T03:04:05.006Z"));
  const event = namespaceCreate("fwd");
  await f.client.forward({
    envelope: { timestamp, namespace: "shim-ns", topic: "/tasks/exit", event },
  });
  const [got] = await received.envelopes;
  assert.ok(got?.timestamp);
  assert.equal(timestampDate(got.timestamp).toISOString(), "2020-01-02T03:04:05.006Z");
  assert.equal(got.namespace, "shim-ns");
  assert.equal(got.topic, "/tasks/exit");
  assert.equal(got.event?.typeUrl, event.typeUrl);
  assert.deepEqual(got.event?.value, event.value);

  const cases = [
    { what: "no envelope", envelope: undefined, message: /envelope must be set/ },
    {
      what: "bad namespace",
      envelope: { timestamp, namespace: "", topic: "/a", event },
      message: /^event envelope has invalid namespace: identifier must not be empty/,
    },
    {
      what: "bad topic",
      envelope: { timestamp, namespace: "n", topic: "a", event },
      message: /must start with/,
    },
    {
      what: "no timestamp",
      envelope: { namespace: "n", topic: "/a", event },
      message: /timestamp must be set on forwarded event/,
    },
    {
      what: "Go's zero time",
      envelope: { timestamp: { seconds: -62135596800n }, namespace: "n", topic: "/a", event },
      message: /timestamp must be set on forwarded event/,
    },
    {
      what: "no event",
      envelope: { timestamp, namespace: "n", topic: "/a" },
      message: /event must be set/,
    },
  ];
  for (const c of cases) {
    const err = await rejection(f.client.forward(c.envelope ? { envelope: c.envelope } : {}));
    assert.equal(err.code, Code.InvalidArgument, c.what);
    assert.match(err.rawMessage, c.message, c.what);
  }
});

Deno.test("Subscribe filters on topic, namespace and decoded event fields", async () => {
  const f = fixture();
  const byTopic = await collect(f, [`topic=="/namespaces/delete"`], 1);
  const byNamespace = await collect(f, ["namespace==ns2"], 1);
  const byEvent = await collect(f, ["event.name==c", `topic~="^/namespaces/" , namespace==ns3`], 2);
  const publish = (topic: string, namespace: string, name: string) => {
    const schema = topic.endsWith("delete") ? NamespaceDeleteSchema : NamespaceCreateSchema;
    return f.client.publish({
      topic,
      event: create(AnySchema, {
        typeUrl: schema.typeName,
        value: toBinary(schema, create(schema, { name })),
      }),
    }, ns(namespace));
  };
  await publish("/namespaces/create", "ns1", "a");
  await publish("/namespaces/create", "ns2", "b");
  await publish("/namespaces/create", "ns1", "c");
  await publish("/namespaces/delete", "ns1", "d");
  await publish("/namespaces/update", "ns3", "e");
  assert.deepEqual((await byTopic.envelopes).map((e) => e.namespace), ["ns1"]);
  assert.deepEqual((await byNamespace.envelopes).map((e) => e.topic), ["/namespaces/create"]);
  assert.deepEqual((await byEvent.envelopes).map((e) => e.topic), [
    "/namespaces/create",
    "/namespaces/update",
  ]);
});

Deno.test("an invalid filter fails Subscribe with InvalidArgument", async () => {
  const f = fixture();
  const err = await rejection((async () => {
    for await (const _ of f.client.subscribe({ filters: ["ok==1", "labels.a=="] })) {
      // no events expected
    }
  })());
  assert.equal(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, /^failed parsing subscription filters: filters: parse error/);
  assert.equal(f.exchange.subscriberCount, 0);
});

Deno.test("a subscription ends when the client goes away and when the daemon stops", async () => {
  const f = fixture();
  const controller = new AbortController();
  const first = (async () => {
    const got: string[] = [];
    try {
      for await (const env of f.client.subscribe({}, { signal: controller.signal })) {
        got.push(env.topic);
        controller.abort();
      }
    } catch (err) {
      assert.ok(err instanceof ConnectError && err.code === Code.Canceled, `${err}`);
    }
    return got;
  })();
  await waitFor(() => f.exchange.subscriberCount === 1, "the subscription");
  await f.client.publish({ topic: "/one", event: namespaceCreate("a") }, ns("default"));
  assert.deepEqual(await first, ["/one"]);
  await waitFor(() => f.exchange.subscriberCount === 0, "the server side to let go");

  const second = (async () => {
    const got: string[] = [];
    for await (const env of f.client.subscribe({})) got.push(env.topic);
    return got;
  })();
  await waitFor(() => f.exchange.subscriberCount === 1, "the second subscription");
  await f.client.publish({ topic: "/two", event: namespaceCreate("b") }, ns("default"));
  await waitFor(() => f.exchange.subscriberCount === 1, "delivery");
  f.stop.abort();
  // The stream ends without an error once the daemon stops.
  assert.deepEqual(await second, ["/two"]);
  assert.equal(f.exchange.subscriberCount, 0);
});

Deno.test("plugin.ts registers the exchange and the Events service as containerd does", async () => {
  const regs = registry.list().filter((r) =>
    (r.type === EventPlugin && r.id === "exchange") || (r.type === GRPCPlugin && r.id === "events")
  );
  assert.equal(regs.length, 2);
  const events = new Exchange();
  const stopping = new AbortController();
  const set = await initPlugins({
    ordered: regs,
    configs: new Map(),
    properties: {
      rootDir: "/nonexistent",
      stateDir: "/nonexistent",
      grpcAddress: "",
      ttrpcAddress: "",
    },
    events,
    log: silentLogger(),
    signal: stopping.signal,
  });
  assert.equal(set.get(EventPlugin), events);
  const grpc = set.get(GRPCPlugin, "events");
  assert.ok(servesRpc(grpc));
  assert.deepEqual(grpc.services.map((s) => s.service.typeName), [
    "containerd.services.events.v1.Events",
  ]);
  // Like containerd's service, the same instance registers the ttrpc Events (RegisterTTRPC).
  assert.deepEqual(grpc.ttrpc?.map((s) => s.service.typeName), [
    "containerd.services.events.ttrpc.v1.Events",
  ]);
  const exchangeReg = regs.find((r) => r.id === "exchange");
  const eventsReg = regs.find((r) => r.id === "events");
  assert.deepEqual(eventsReg?.requires, [EventPlugin]);
  assert.equal(exchangeReg?.requires, undefined);
});
