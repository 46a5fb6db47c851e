/** Tests for the Leases service in process: ctr leases create/ls/rm and resources. */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Leases } from "../../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import {
  ingest,
  inNamespace,
  memoryMetadata,
  serviceTransport,
  sha256,
} from "../metadata/testing.ts";
import { MetadataLeaseManager } from "./manager.ts";
import { leasesService } from "./service.ts";

async function failure(promise: Promise<unknown>): Promise<ConnectError | undefined> {
  return await promise.then(() => undefined, (e) => ConnectError.from(e));
}

Deno.test("leases create/list/delete with sync collection", async () => {
  const { md, cs } = memoryMetadata();
  const manager = new MetadataLeaseManager(md.leases, () => md.garbageCollect());
  const client = createClient(Leases, serviceTransport([leasesService(manager)]));
  const ns = inNamespace("default");
  try {
    const expire = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
    const created = await client.create({ labels: { "containerd.io/gc.expire": expire } }, ns);
    assert.match(created.lease?.id ?? "", /^\d+-[A-Za-z0-9_-]{4}$/);
    assert.ok(created.lease?.createdAt);
    await client.create({ id: "mine" }, ns);
    const dup = await failure(client.create({ id: "mine" }, ns));
    assert.equal(dup?.code, Code.AlreadyExists);
    const listed = await client.list({ filters: ["id==mine"] }, ns);
    assert.deepEqual(listed.leases.map((l) => l.id), ["mine"]);
    assert.equal((await client.list({}, ns)).leases.length, 2);
    assert.equal((await client.list({}, inNamespace("other"))).leases.length, 0);

    const digest = await ingest(md.content({ namespace: "default", lease: "mine" }), "r", "held");
    await client.addResource({ id: "mine", resource: { id: "ing", type: "ingests" } }, ns);
    const resources = await client.listResources({ id: "mine" }, ns);
    assert.deepEqual(resources.resources.map((r) => [r.type, r.id]), [
      ["content", digest],
      ["ingests", "ing"],
    ]);
    await client.deleteResource({ id: "mine", resource: { id: "ing", type: "ingests" } }, ns);
    const unsupported = await failure(
      client.addResource({ id: "mine", resource: { id: "x", type: "images" } }, ns),
    );
    assert.equal(unsupported?.code, Code.Unimplemented);

    assert.ok(cs.blobs.has(digest));
    await client.delete({ id: "mine", sync: true }, ns);
    assert.equal(cs.blobs.has(digest), false, "sync delete collected before replying");
    const missing = await failure(client.delete({ id: "mine" }, ns));
    assert.equal(missing?.code, Code.NotFound);
    assert.equal(missing?.rawMessage, 'lease "mine": not found');
    assert.equal(sha256("held"), digest);
  } finally {
    await md.close();
  }
});
