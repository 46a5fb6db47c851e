import assert from "node:assert/strict";
import { HealthCheckResponse_ServingStatus as Serving } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import { fakeDaemon } from "./_fakes.ts";
import { ContentDeleteSchema } from "../proto/gen/containerd/events/content_pb.ts";
import {
  AlreadyExistsError,
  CanceledError,
  clientFromTransport,
  DeadlineExceededError,
  defineService,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  versionService,
} from "./mod.ts";

Deno.test("version and introspection answer typed results", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  assert.deepEqual(await client.version.get(), { version: "9.9.9", revision: "fake" });
  const plugins = await client.introspection.plugins();
  assert.deepEqual(plugins.map((p) => [p.uri, p.status]), [
    ["io.containerd.grpc.v1.version", "ok"],
    ["io.containerd.snapshotter.v1.zfs", "skip"],
    ["io.containerd.content.v1.broken", "error"],
  ]);
  assert.equal(plugins[0]?.error, undefined);
  assert.deepEqual(plugins[2]?.error, { code: 9, message: "disk on fire" });
  const grpc = await client.introspection.plugins({ filters: ["type==io.containerd.grpc.v1"] });
  assert.deepEqual(grpc.map((p) => p.id), ["version"]);
  assert.equal(
    (await client.introspection.plugin("io.containerd.content.v1.broken"))?.status,
    "error",
  );
  assert.equal(await client.introspection.plugin("io.containerd.nope.v1.x"), undefined);
  await assert.rejects(
    client.introspection.plugins({ filters: ["(("] }),
    InvalidArgumentError,
  );
  const server = await client.introspection.server();
  assert.equal(server.pid, 42);
  assert.equal(server.pidns, 7n);
  assert.equal(server.uuid.length, 36);
});

Deno.test("every call carries the namespace; withNamespace/withLease derive headers", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  await client.version.get();
  const version = () => fake.headers.get("containerd.services.version.v1.Version/Version")!;
  assert.equal(version().get("containerd-namespace"), "default");
  assert.equal(version().get("containerd-lease"), null);
  const derived = client.withNamespace("build").withLease({ id: "L1" });
  assert.equal(derived.namespace, "build");
  assert.equal(derived.lease, "L1");
  await derived.version.get();
  assert.equal(version().get("containerd-namespace"), "build");
  assert.equal(version().get("containerd-lease"), "L1");
  await client.withNamespace("").version.get();
  assert.equal(version().get("containerd-namespace"), null);
  // The parent is unchanged.
  assert.equal(client.namespace, "default");
  assert.equal(client.lease, "");
});

Deno.test("disposing a derived client leaves the connection open; the root closes it", async () => {
  const fake = fakeDaemon();
  const client = clientFromTransport(fake.transport);
  {
    await using derived = client.withNamespace("x");
    await derived.version.get();
  }
  assert.equal(client.closed, false);
  await client.version.get();
  {
    await using _root = client;
  }
  assert.equal(client.closed, true);
  await assert.rejects(client.version.get(), CanceledError);
});

Deno.test("use(): a service defined in one module is built once per client", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  let built = 0;
  const text = defineService("text-version", (rpc) => {
    built++;
    return {
      get: async () => {
        const res = await rpc.unary(Version.method.version, {});
        return `${res.version}+${res.revision}`;
      },
    };
  });
  assert.equal(await client.use(text).get(), "9.9.9+fake");
  assert.equal(await client.use(text).get(), "9.9.9+fake");
  assert.equal(built, 1);
  assert.equal(client.use(versionService), client.version);
});

Deno.test("a service the daemon does not serve rejects with NotImplementedError", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const nope = {
    ...Version.method.version,
    parent: { ...Version, typeName: "containerd.services.nope.v1.Nope" },
  };
  await assert.rejects(client.rpc.unary(nope, {}), NotImplementedError);
});

Deno.test("health: check, unknown service, watch as an async iterator", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  assert.equal(await client.health.check(), "SERVING");
  await assert.rejects(client.health.check({ service: "nope" }), NotFoundError);
  const seen: string[] = [];
  for await (const status of client.health.watch()) seen.push(status);
  assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
  // Breaking out early cancels the stream quietly.
  for await (const status of client.health.watch()) {
    assert.equal(status, "SERVING");
    break;
  }
});

Deno.test("health.waitServing polls until SERVING, and times out naming the last answer", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  fake.health.servingAfter = 3;
  await client.health.waitServing({ intervalMs: 1, timeoutMs: 5000 });
  assert.equal(fake.health.checks, 4);
  fake.health.status = Serving.NOT_SERVING;
  const err = await client.health.waitServing({ intervalMs: 5, timeoutMs: 50 }).catch((e) => e);
  assert.ok(err instanceof DeadlineExceededError);
  assert.match(err.message, /not serving after 50 ms \(last: NOT_SERVING\)/);
  const abort = new AbortController();
  abort.abort(new Error("stop"));
  await assert.rejects(client.health.waitServing({ signal: abort.signal }), /stop/);
});

Deno.test("namespaces: create, get, list, update, delete, with typed errors", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  const created = await client.namespaces.create("build", { labels: { team: "ci", x: "1" } });
  assert.deepEqual(created, { name: "build", labels: { team: "ci", x: "1" } });
  await assert.rejects(client.namespaces.create("build"), AlreadyExistsError);
  assert.deepEqual((await client.namespaces.list()).map((n) => n.name), ["build"]);
  await client.namespaces.update("build", { team: "" }, { fields: ["labels.team"] });
  assert.deepEqual((await client.namespaces.get("build")).labels, { x: "1" });
  await client.namespaces.update("build", { y: "2" });
  assert.deepEqual((await client.namespaces.get("build")).labels, { y: "2" });
  await client.namespaces.delete("build");
  assert.deepEqual(await client.namespaces.list(), []);
  assert.deepEqual(await client.namespaces.get("build"), { name: "build", labels: {} });
  const err = await client.namespaces.delete("build").catch((e) => e);
  assert.ok(err instanceof NotFoundError);
  assert.equal(err.message, "namespace build: not found");
});

Deno.test("leases: handles delete on dispose; namespaced; resources", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  {
    await using lease = await client.leases.create({
      id: "L1",
      labels: { owner: "test" },
      expiresInMs: 60_000,
    });
    assert.equal(lease.id, "L1");
    assert.match(
      lease.labels["containerd.io/gc.expire"] ?? "",
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );
    await lease.addResource({ type: "content", id: "sha256:abc" });
    assert.deepEqual(await lease.resources(), [{ type: "content", id: "sha256:abc" }]);
    await lease.deleteResource({ type: "content", id: "sha256:abc" });
    assert.deepEqual(await lease.resources(), []);
    assert.deepEqual((await client.leases.list()).map((l) => l.id), ["L1"]);
    assert.deepEqual(await client.withNamespace("other").leases.list(), []);
    await assert.rejects(client.leases.create({ id: "L1" }), AlreadyExistsError);
  }
  assert.deepEqual(await client.leases.list(), []);
  // Disposing a lease deleted meanwhile is fine; deleting it by id is NotFound.
  {
    await using lease = await client.leases.create({ id: "L2" });
    await client.leases.delete(lease.id);
  }
  await assert.rejects(client.leases.delete("L2"), NotFoundError);
  await assert.rejects(client.withNamespace("").leases.list(), FailedPreconditionError);
});

Deno.test("events: subscribe decodes containerd's events; publish uses bare type names", async () => {
  const fake = fakeDaemon();
  await using client = clientFromTransport(fake.transport);
  await client.withNamespace("ns2").events.publish("/content/delete", {
    schema: ContentDeleteSchema,
    value: { digest: "sha256:abc" },
  });
  assert.equal(fake.published[0]?.typeUrl, "containerd.events.ContentDelete");
  const seen = [];
  for await (const e of client.events.subscribe({ filters: ["topic~=/"] })) seen.push(e);
  assert.deepEqual(seen.map((e) => [e.namespace, e.topic, e.typeUrl]), [
    ["n1", "/namespaces/create", "containerd.events.NamespaceCreate"],
    ["ns2", "/content/delete", "containerd.events.ContentDelete"],
    ["n1", "/custom", "example.com/Unknown"],
  ]);
  assert.equal(seen[0]?.timestamp?.getTime(), 0);
  assert.equal((seen[0]?.event as { name?: string } | undefined)?.name, "n1");
  assert.equal((seen[1]?.event as { digest?: string } | undefined)?.digest, "sha256:abc");
  assert.equal(seen[2]?.event, undefined);
  assert.deepEqual(seen[2]?.value, new Uint8Array([1, 2]));
  await assert.rejects(client.events.subscribe({ filters: ["(("] }).next(), InvalidArgumentError);
  // Aborting a subscription rejects the pending read with CanceledError.
  const abort = new AbortController();
  const sub = client.events.subscribe({ signal: abort.signal });
  await sub.next();
  abort.abort();
  await assert.rejects(sub.next(), CanceledError);
});
