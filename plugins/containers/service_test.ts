/**
 * Tests for the Containers service in process: the Create `ctr containers create` sends,
 * Get/List/ListStream with filters, Update by field mask, Delete, errors and events.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Exchange, type PublishInput } from "../../server/exchange.ts";
import {
  ContainerCreateSchema,
  ContainerDeleteSchema,
  ContainerUpdateSchema,
} from "../../proto/gen/containerd/events/container_pb.ts";
import { Containers } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { OCI_SPEC_TYPE_URL, SqlContainerStore } from "../metadata/containers.ts";
import { inNamespace, memoryMetadata, serviceTransport } from "../metadata/testing.ts";
import { containersService } from "./service.ts";

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

const ns = inNamespace("default");
const enc = new TextEncoder();
const SPEC = enc.encode(
  JSON.stringify({ ociVersion: "1.0.2-dev", process: { args: ["/bin/sh"] } }),
);

function setup() {
  const { md } = memoryMetadata();
  const events = new RecordingExchange();
  const client = createClient(
    Containers,
    serviceTransport([containersService({ containers: new SqlContainerStore(md), events })]),
  );
  return { md, client, events };
}

/** The container `ctr containers create docker.io/library/testbox:latest c1 /bin/sh` sends. */
function ctrContainer(id: string) {
  return {
    id,
    labels: { "io.containerd.image.config.stop-signal": "SIGTERM" },
    image: "docker.io/library/testbox:latest",
    runtime: {
      name: "io.containerd.runc.v2",
      options: { typeUrl: "containerd.runc.v1.Options", value: new Uint8Array() },
    },
    spec: { typeUrl: OCI_SPEC_TYPE_URL, value: SPEC },
    snapshotter: "overlayfs",
    snapshotKey: id,
    // ctr sends Go's zero time; the server sets its own.
    createdAt: { seconds: -62135596800n },
    updatedAt: { seconds: -62135596800n },
  };
}

Deno.test("create, get, list, listStream, duplicate; create event", async () => {
  const { md, client, events } = setup();
  try {
    const created = await client.create({ container: ctrContainer("c1") }, ns);
    assert.equal(created.container?.id, "c1");
    assert.equal(created.container?.runtime?.name, "io.containerd.runc.v2");
    assert.equal(created.container?.runtime?.options?.typeUrl, "containerd.runc.v1.Options");
    assert.deepEqual(created.container?.spec?.value, SPEC);
    assert.equal(created.container?.spec?.typeUrl, OCI_SPEC_TYPE_URL);
    assert.ok(Number(created.container?.createdAt?.seconds) > 1_700_000_000);
    const got = await client.get({ id: "c1" }, ns);
    assert.equal(got.container?.snapshotKey, "c1");
    assert.equal(got.container?.snapshotter, "overlayfs");
    assert.deepEqual(got.container?.labels, {
      "io.containerd.image.config.stop-signal": "SIGTERM",
    });
    await client.create({ container: ctrContainer("c2") }, ns);
    const listed = await client.list({ filters: [] }, ns);
    assert.deepEqual(listed.containers.map((c) => c.id), ["c1", "c2"]);
    const streamed: string[] = [];
    for await (const m of client.listStream({ filters: ["id==c2"] }, ns)) {
      streamed.push(m.container?.id ?? "");
    }
    assert.deepEqual(streamed, ["c2"]);
    const dup = await failure(client.create({ container: ctrContainer("c1") }, ns));
    assert.equal(dup.code, Code.AlreadyExists);
    assert.equal(dup.rawMessage, 'container "c1": already exists');
    const missing = await failure(client.get({ id: "nope" }, ns));
    assert.equal(missing.code, Code.NotFound);
    assert.equal(missing.rawMessage, 'container "nope" in namespace "default": not found');
    const createEvents = events.published.filter((e) => e.topic === "/containers/create");
    assert.equal(createEvents.length, 2);
    const first = createEvents[0];
    assert.ok(first);
    assert.equal(first.typeUrl, "containerd.events.ContainerCreate");
    assert.equal(first.namespace, "default");
    const decoded = fromBinary(ContainerCreateSchema, first.value);
    assert.equal(decoded.id, "c1");
    assert.equal(decoded.image, "docker.io/library/testbox:latest");
    assert.equal(decoded.runtime?.name, "io.containerd.runc.v2");
  } finally {
    md.close();
  }
});

Deno.test("invalid containers are InvalidArgument with containerd's messages", async () => {
  const { md, client } = setup();
  try {
    const noSpec = { ...ctrContainer("c1"), spec: undefined };
    let err = await failure(client.create({ container: noSpec }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(
      err.rawMessage,
      "create container failed validation: container.Spec must be set: invalid argument",
    );
    err = await failure(client.create({ container: { ...ctrContainer("c1"), runtime: {} } }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(
      err.rawMessage,
      "create container failed validation: container.Runtime.Name must be set: invalid argument",
    );
    err = await failure(client.create({ container: ctrContainer("-bad") }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(
      err.rawMessage,
      /^create container failed validation: container\.ID: identifier "-bad" must match/,
    );
    err = await failure(client.create({}, ns));
    assert.equal(err.code, Code.InvalidArgument);
    err = await failure(client.create({ container: ctrContainer("c1") }));
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.rawMessage, "namespace is required: failed precondition");
    err = await failure(client.list({ filters: ["id=="] }, ns));
    assert.equal(err.code, Code.InvalidArgument);
  } finally {
    md.close();
  }
});

Deno.test("update by field mask (ctr containers label), immutables, update event", async () => {
  const { md, client, events } = setup();
  try {
    await client.create({ container: ctrContainer("c1") }, ns);
    // ctr containers label c1 a=b: Update{container{id, labels{a:b}}, mask labels.a}.
    const updated = await client.update({
      container: { id: "c1", labels: { a: "b" } },
      updateMask: { paths: ["labels.a"] },
    }, ns);
    assert.deepEqual(updated.container?.labels, {
      a: "b",
      "io.containerd.image.config.stop-signal": "SIGTERM",
    });
    assert.deepEqual(updated.container?.spec?.value, SPEC);
    assert.equal(updated.container?.runtime?.options?.typeUrl, "containerd.runc.v1.Options");
    const event = events.published.find((e) => e.topic === "/containers/update");
    assert.ok(event);
    assert.equal(event.typeUrl, "containerd.events.ContainerUpdate");
    const decoded = fromBinary(ContainerUpdateSchema, event.value);
    assert.equal(decoded.id, "c1");
    assert.equal(decoded.snapshotKey, "c1");
    assert.equal(decoded.labels["a"], "b");
    let err = await failure(client.update({
      container: { ...ctrContainer("c1"), snapshotter: "native" },
    }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, "container.Snapshotter field is immutable: invalid argument");
    err = await failure(client.update({
      container: ctrContainer("c1"),
      updateMask: { paths: ["runtime"] },
    }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, 'cannot update "runtime" field on "c1": invalid argument');
    err = await failure(client.update({ container: { id: "" } }, ns));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, "Container.ID required: invalid argument");
    err = await failure(client.update({
      container: ctrContainer("c9"),
      updateMask: { paths: ["labels"] },
    }, ns));
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, 'container "c9": not found');
  } finally {
    md.close();
  }
});

Deno.test("delete removes the container; delete event; NotFound after", async () => {
  const { md, client, events } = setup();
  try {
    await client.create({ container: ctrContainer("c1") }, ns);
    await client.delete({ id: "c1" }, ns);
    const event = events.published.find((e) => e.topic === "/containers/delete");
    assert.ok(event);
    assert.equal(event.typeUrl, "containerd.events.ContainerDelete");
    assert.equal(fromBinary(ContainerDeleteSchema, event.value).id, "c1");
    const err = await failure(client.delete({ id: "c1" }, ns));
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, 'container "c1": not found');
    assert.deepEqual((await client.list({}, ns)).containers, []);
  } finally {
    md.close();
  }
});
