/**
 * Tests for the Snapshots service in process: the snapshotter field, every method, error
 * codes and texts as ctr sees them, events, and the GC hook of snapshots-service.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Exchange, type PublishInput } from "../../server/exchange.ts";
import { silentLogger } from "../../server/log.ts";
import {
  SnapshotCommitSchema,
  SnapshotPrepareSchema,
} from "../../proto/gen/containerd/events/snapshot_pb.ts";
import { Kind, Snapshots } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { inNamespace, memoryMetadata, serviceTransport } from "../metadata/testing.ts";
import { NativeSnapshotter } from "./native/native.ts";
import { snapshotsGrpcService, snapshotsService } from "./service.ts";

class RecordingExchange extends Exchange {
  readonly published: PublishInput[] = [];
  override publish(input: PublishInput) {
    this.published.push(input);
    return super.publish(input);
  }
}

async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  return await promise.then(
    () => assert.fail("expected the call to fail"),
    (e) => ConnectError.from(e),
  );
}

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "snapshots-service-" });
  const { md } = memoryMetadata();
  const backend = await NativeSnapshotter.open(dir);
  const service = snapshotsService(md, new Map([["native", backend]]), { log: silentLogger() });
  const events = new RecordingExchange();
  const client = createClient(
    Snapshots,
    serviceTransport([snapshotsGrpcService({ service, events })]),
  );
  return {
    md,
    dir,
    backend,
    client,
    events,
    async [Symbol.asyncDispose]() {
      await service.close();
      backend.close();
      await md.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const ns = inNamespace("default");
const snapshotter = "native";

Deno.test("prepare, stat, mounts, commit, list, usage, update, remove over the wire", async () => {
  await using s = await setup();
  const { client } = s;
  const prepared = await client.prepare({
    snapshotter,
    key: "k1",
    labels: { "containerd.io/gc.root": "now" },
  }, ns);
  assert.equal(prepared.mounts.length, 1);
  assert.equal(prepared.mounts[0]?.type, "bind");
  assert.deepEqual(prepared.mounts[0]?.options, ["rbind", "rw"]);
  const stat = await client.stat({ snapshotter, key: "k1" }, ns);
  assert.equal(stat.info?.name, "k1");
  assert.equal(stat.info?.kind, Kind.ACTIVE);
  assert.ok(stat.info?.createdAt && stat.info.updatedAt);
  assert.deepEqual(stat.info?.labels, { "containerd.io/gc.root": "now" });
  const mounts = await client.mounts({ snapshotter, key: "k1" }, ns);
  await Deno.writeTextFile(`${mounts.mounts[0]!.source}/f`, "x".repeat(5000));
  const usage = await client.usage({ snapshotter, key: "k1" }, ns);
  assert.ok(usage.size >= 5000n && usage.inodes >= 2n, `${usage.size} ${usage.inodes}`);
  await client.commit({ snapshotter, name: "c1", key: "k1", labels: { l: "v" } }, ns);
  await client.view({ snapshotter, key: "v1", parent: "c1" }, ns);
  await client.prepare({ snapshotter, key: "k2", parent: "c1" }, ns);

  const listed: [string, string, Kind][] = [];
  for await (const res of client.list({ snapshotter }, ns)) {
    for (const info of res.info) listed.push([info.name, info.parent, info.kind]);
  }
  assert.deepEqual(listed, [
    ["c1", "", Kind.COMMITTED],
    ["k2", "c1", Kind.ACTIVE],
    ["v1", "c1", Kind.VIEW],
  ]);
  const active: string[] = [];
  for await (const res of client.list({ snapshotter, filters: ["kind==active"] }, ns)) {
    active.push(...res.info.map((i) => i.name));
  }
  assert.deepEqual(active, ["k2"]);

  const updated = await client.update({
    snapshotter,
    info: { name: "c1", labels: { extra: "1" } },
    updateMask: { paths: ["labels.extra"] },
  }, ns);
  assert.deepEqual(updated.info?.labels, { l: "v", extra: "1" });

  const child = await failure(client.remove({ snapshotter, key: "c1" }, ns));
  assert.equal(child.code, Code.FailedPrecondition);
  assert.equal(child.rawMessage, "cannot remove snapshot with child: failed precondition");
  await client.remove({ snapshotter, key: "k2" }, ns);
  await client.remove({ snapshotter, key: "v1" }, ns);
  await client.remove({ snapshotter, key: "c1" }, ns);
  const gone = await failure(client.remove({ snapshotter, key: "c1" }, ns));
  assert.equal(gone.code, Code.NotFound);
  assert.equal(gone.rawMessage, "snapshot c1 does not exist: not found");
  await client.cleanup({ snapshotter }, ns);
});

Deno.test("errors: snapshotter field, namespace, duplicates, missing parents", async () => {
  await using s = await setup();
  const { client } = s;
  const missing = await failure(client.prepare({ key: "k" }, ns));
  assert.equal(missing.code, Code.InvalidArgument);
  assert.equal(missing.rawMessage, "snapshotter argument missing: invalid argument");
  const unknown = await failure(client.stat({ snapshotter: "zfs", key: "k" }, ns));
  assert.equal(unknown.code, Code.InvalidArgument);
  assert.equal(unknown.rawMessage, "snapshotter not loaded: zfs: invalid argument");
  const noNs = await failure(client.prepare({ snapshotter, key: "k" }));
  assert.equal(noNs.code, Code.FailedPrecondition);
  await client.prepare({ snapshotter, key: "k" }, ns);
  const dup = await failure(client.prepare({ snapshotter, key: "k" }, ns));
  assert.equal(dup.code, Code.AlreadyExists);
  assert.equal(dup.rawMessage, 'snapshot "k": already exists');
  const parent = await failure(client.prepare({ snapshotter, key: "k2", parent: "nope" }, ns));
  assert.equal(parent.code, Code.NotFound);
  assert.equal(parent.rawMessage, "parent snapshot nope does not exist: not found");
  const stat = await failure(client.stat({ snapshotter, key: "nope" }, ns));
  assert.equal(stat.code, Code.NotFound);
  assert.equal(stat.rawMessage, "snapshot nope does not exist: not found");
  const other = await failure(client.stat({ snapshotter, key: "k" }, inNamespace("other")));
  assert.equal(other.code, Code.NotFound);
  const mask = await failure(client.update({
    snapshotter,
    info: { name: "k" },
    updateMask: { paths: ["kind"] },
  }, ns));
  assert.equal(mask.code, Code.InvalidArgument);
  const label = await failure(
    client.prepare({ snapshotter, key: "big", labels: { k: "v".repeat(5000) } }, ns),
  );
  assert.equal(label.code, Code.InvalidArgument);
});

Deno.test("prepare and commit publish snapshot events; view does not", async () => {
  await using s = await setup();
  const { client, events } = s;
  await client.prepare({ snapshotter, key: "k" }, ns);
  await client.commit({ snapshotter, name: "c", key: "k" }, ns);
  await client.view({ snapshotter, key: "v", parent: "c" }, ns);
  await client.remove({ snapshotter, key: "v" }, ns);
  assert.deepEqual(events.published.map((e) => [e.namespace, e.topic, e.typeUrl]), [
    ["default", "/snapshot/prepare", "containerd.events.SnapshotPrepare"],
    ["default", "/snapshot/commit", "containerd.events.SnapshotCommit"],
    ["default", "/snapshot/remove", "containerd.events.SnapshotRemove"],
  ]);
  assert.deepEqual(fromBinary(SnapshotPrepareSchema, events.published[0]!.value).key, "k");
  const commit = fromBinary(SnapshotCommitSchema, events.published[1]!.value);
  assert.deepEqual([commit.key, commit.name], ["k", "c"]);
});

Deno.test("snapshots-service hooks each snapshotter into the metadata GC", async () => {
  await using s = await setup();
  await s.client.prepare({ snapshotter, key: "loose" }, ns);
  await s.client.prepare(
    { snapshotter, key: "kept", labels: { "containerd.io/gc.root": "x" } },
    ns,
  );
  await s.md.garbageCollect();
  const keys: string[] = [];
  await s.backend.walk((info) => {
    keys.push(info.name);
  });
  assert.equal(keys.length, 1);
  assert.match(keys[0]!, /^default\/\d+\/kept$/);
});

Deno.test("snapshots-service's boot sweep removes backend snapshots without rows", async () => {
  const dir = await Deno.makeTempDir({ prefix: "snapshots-boot-" });
  const { md } = memoryMetadata();
  const backend = await NativeSnapshotter.open(dir);
  try {
    await backend.prepare("default/7/left-by-a-crash");
    const service = snapshotsService(md, new Map([["native", backend]]), {
      log: silentLogger(),
      sweep: true,
    });
    await service.close();
    let count = 0;
    await backend.walk(() => {
      count++;
    });
    assert.equal(count, 0);
  } finally {
    backend.close();
    await md.close();
    await Deno.remove(dir, { recursive: true });
  }
});
