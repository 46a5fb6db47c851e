/** Tests for the Namespaces service in process: ctr's calls, errors, events. */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { type Envelope, Exchange } from "../../server/exchange.ts";
import { Namespaces } from "../../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { ingest, inNamespace, memoryMetadata, serviceTransport } from "../metadata/testing.ts";
import { namespacesService } from "./service.ts";

function setup() {
  const { md } = memoryMetadata();
  const events = new Exchange();
  const seen: Envelope[] = [];
  const controller = new AbortController();
  (async () => {
    for await (const e of events.subscribe({ signal: controller.signal })) seen.push(e);
  })();
  const client = createClient(
    Namespaces,
    serviceTransport([namespacesService({ namespaces: md.namespaces, events })]),
  );
  return {
    md,
    client,
    seen,
    async close() {
      controller.abort();
      await md.close();
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<ConnectError | undefined> {
  return await promise.then(() => undefined, (e) => ConnectError.from(e));
}

Deno.test("create, list, get and label namespaces as ctr does", async () => {
  const t = setup();
  try {
    await t.client.create(
      { namespace: { name: "team", labels: { a: "1" } } },
      inNamespace("default"),
    );
    const dup = await failure(
      t.client.create({ namespace: { name: "team" } }, inNamespace("default")),
    );
    assert.equal(dup?.code, Code.AlreadyExists);
    assert.equal(dup?.rawMessage, 'namespace "team": already exists');
    const bad = await failure(t.client.create({ namespace: { name: "bad/name" } }));
    assert.equal(bad?.code, Code.InvalidArgument);
    // ctr namespaces label: one Update per pair, mask labels.<k>, empty value deletes.
    await t.client.update(
      { namespace: { name: "team", labels: { b: "2" } }, updateMask: { paths: ["labels.b"] } },
      inNamespace("default"),
    );
    await t.client.update(
      { namespace: { name: "team", labels: {} }, updateMask: { paths: ["labels.a"] } },
      inNamespace("default"),
    );
    const list = await t.client.list({}, inNamespace("default"));
    assert.deepEqual(list.namespaces.map((n) => [n.name, n.labels]), [["team", { b: "2" }]]);
    const got = await t.client.get({ name: "team" }, inNamespace("default"));
    assert.deepEqual(got.namespace?.labels, { b: "2" });
    const missing = await t.client.get({ name: "nowhere" }, inNamespace("default"));
    assert.deepEqual(missing.namespace?.labels, {});
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(t.seen.map((e) => [e.topic, e.typeUrl, e.namespace]), [
      ["/namespaces/create", "containerd.events.NamespaceCreate", "default"],
      ["/namespaces/update", "containerd.events.NamespaceUpdate", "default"],
      ["/namespaces/update", "containerd.events.NamespaceUpdate", "default"],
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("rm refuses a namespace with blobs, ignores nothing else, and publishes delete", async () => {
  const t = setup();
  try {
    const digest = await ingest(t.md.content({ namespace: "busy" }), "r", "x");
    const busy = await failure(t.client.delete({ name: "busy" }, inNamespace("default")));
    assert.equal(busy?.code, Code.FailedPrecondition);
    assert.equal(
      busy?.rawMessage,
      'namespace "busy" must be empty, but it still has blobs: failed precondition',
    );
    const gone = await failure(t.client.delete({ name: "ghost" }, inNamespace("default")));
    assert.equal(gone?.code, Code.NotFound);
    t.md.content({ namespace: "busy" }).delete(digest);
    await t.client.delete({ name: "busy" }, inNamespace("default"));
    await new Promise((r) => setTimeout(r, 10));
    const last = t.seen.at(-1);
    assert.deepEqual([last?.topic, last?.namespace], ["/namespaces/delete", "busy"]);
    assert.deepEqual((await t.client.list({})).namespaces, []);
  } finally {
    await t.close();
  }
});
