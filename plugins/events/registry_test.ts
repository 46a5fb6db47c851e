import assert from "node:assert/strict";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { anyPack, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Envelope } from "../../server/exchange.ts";
import { parseAll } from "../../server/filters.ts";
import {
  ContainerCreateSchema,
  ContainerUpdateSchema,
} from "../../proto/gen/containerd/events/container_pb.ts";
import { NamespaceCreateSchema } from "../../proto/gen/containerd/events/namespace_pb.ts";
import { TaskExitSchema } from "../../proto/gen/containerd/events/task_pb.ts";
import { ImageCreateSchema } from "../../proto/gen/containerd/services/images/v1/image_events_pb.ts";
import { decodeEvent, envelopeAdaptor, eventRegistry, typeNameOf } from "./registry.ts";

function envelope<D extends DescMessage>(
  schema: D,
  init: MessageInitShape<D>,
  typeUrl: string = schema.typeName,
): Envelope {
  return {
    timestamp: new Date(),
    namespace: "default",
    topic: "/test/event",
    typeUrl,
    value: toBinary(schema, create(schema, init)),
  };
}

function field(env: Envelope, path: string): { value: string; present: boolean } {
  return envelopeAdaptor(env)(path.split("."));
}

Deno.test("the registry holds every containerd 1.6 event under its bare type name", () => {
  const names = [
    "containerd.events.ContainerCreate",
    "containerd.events.ContainerCreate.Runtime",
    "containerd.events.ContainerUpdate",
    "containerd.events.ContainerDelete",
    "containerd.events.ContentDelete",
    "containerd.events.NamespaceCreate",
    "containerd.events.NamespaceUpdate",
    "containerd.events.NamespaceDelete",
    "containerd.events.SnapshotPrepare",
    "containerd.events.SnapshotCommit",
    "containerd.events.SnapshotRemove",
    "containerd.events.TaskCreate",
    "containerd.events.TaskStart",
    "containerd.events.TaskDelete",
    "containerd.events.TaskIO",
    "containerd.events.TaskExit",
    "containerd.events.TaskOOM",
    "containerd.events.TaskExecAdded",
    "containerd.events.TaskExecStarted",
    "containerd.events.TaskPaused",
    "containerd.events.TaskResumed",
    "containerd.events.TaskCheckpointed",
    "containerd.services.images.v1.ImageCreate",
    "containerd.services.images.v1.ImageUpdate",
    "containerd.services.images.v1.ImageDelete",
  ];
  for (const name of names) assert.ok(eventRegistry.getMessage(name), `${name} is registered`);
  assert.equal(eventRegistry.getMessage("containerd.events.Nope"), undefined);
});

Deno.test("type URLs resolve bare and prefixed", () => {
  assert.equal(typeNameOf("containerd.events.TaskStart"), "containerd.events.TaskStart");
  assert.equal(
    typeNameOf("type.googleapis.com/containerd.events.TaskStart"),
    "containerd.events.TaskStart",
  );
  const env = envelope(
    NamespaceCreateSchema,
    { name: "x" },
    "type.googleapis.com/containerd.events.NamespaceCreate",
  );
  assert.deepEqual(field(env, "event.name"), { value: "x", present: true });
});

Deno.test("topic and namespace are present when non-empty; other envelope fields never", () => {
  const env = envelope(NamespaceCreateSchema, { name: "x" });
  assert.deepEqual(field(env, "topic"), { value: "/test/event", present: true });
  assert.deepEqual(field(env, "namespace"), { value: "default", present: true });
  assert.equal(field({ ...env, namespace: "" }, "namespace").present, false);
  assert.equal(field(env, "timestamp").present, false);
  assert.equal(field(env, "event").present, false);
});

Deno.test("event fields follow containerd's fieldpath rules", () => {
  const create_ = envelope(ContainerCreateSchema, {
    id: "c1",
    image: "",
    runtime: {
      name: "io.containerd.runc.v2",
      options: anyPack(NamespaceCreateSchema, create(NamespaceCreateSchema, { name: "inner" })),
    },
  });
  assert.deepEqual(field(create_, "event.id"), { value: "c1", present: true });
  // An empty string is absent.
  assert.deepEqual(field(create_, "event.image"), { value: "", present: false });
  // Nested messages are recursed into; Any fields are decoded when their type is known.
  assert.deepEqual(field(create_, "event.runtime.name"), {
    value: "io.containerd.runc.v2",
    present: true,
  });
  assert.deepEqual(field(create_, "event.runtime.options.name"), { value: "inner", present: true });
  assert.equal(field(create_, "event.runtime").present, false);
  assert.equal(field(create_, "event.nope").present, false);
  // Proto names, not JSON names.
  const update = envelope(ContainerUpdateSchema, {
    id: "c1",
    labels: { "a.b": "1", empty: "" },
    snapshotKey: "k",
  });
  assert.deepEqual(field(update, "event.snapshot_key"), { value: "k", present: true });
  assert.equal(field(update, "event.snapshotKey").present, false);
  // Labels: the rest of the path is the key; an existing empty value is present.
  assert.deepEqual(field(update, "event.labels.a.b"), { value: "1", present: true });
  assert.deepEqual(field(update, "event.labels.empty"), { value: "", present: true });
  assert.equal(field(update, "event.labels.c").present, false);
  // Numbers and timestamps are unhandled, as in containerd.
  const exit = envelope(TaskExitSchema, {
    containerId: "c1",
    pid: 42,
    exitStatus: 1,
    exitedAt: timestampFromDate(new Date()),
  });
  assert.deepEqual(field(exit, "event.container_id"), { value: "c1", present: true });
  assert.equal(field(exit, "event.pid").present, false);
  assert.equal(field(exit, "event.exited_at").present, false);
});

Deno.test("unknown types and undecodable bytes make every event field absent", () => {
  const unknown: Envelope = { ...envelope(NamespaceCreateSchema, { name: "x" }), typeUrl: "x.Y" };
  assert.equal(field(unknown, "event.name").present, false);
  const garbage: Envelope = { ...unknown, typeUrl: NamespaceCreateSchema.typeName };
  garbage.value = new Uint8Array([0xff, 0xff, 0xff]);
  assert.equal(decodeEvent(garbage.typeUrl, garbage.value), undefined);
  assert.equal(field(garbage, "event.name").present, false);
  // topic and namespace still work.
  assert.equal(field(unknown, "topic").present, true);
});

Deno.test("filters over envelopes: AND within a filter, OR across filters", () => {
  const image = envelope(ImageCreateSchema, { name: "docker.io/library/redis:7" });
  const ns = envelope(NamespaceCreateSchema, { name: "x", labels: { env: "prod" } });
  const match = (filters: string[], env: Envelope) => parseAll(filters).match(envelopeAdaptor(env));
  assert.ok(match([], image));
  assert.ok(match(["event.name~=redis"], image));
  assert.ok(!match(["event.name~=redis"], ns));
  assert.ok(match(["namespace==default,event.labels.env==prod"], ns));
  assert.ok(!match(["namespace==other,event.labels.env==prod"], ns));
  assert.ok(match([`topic=="/nope"`, "event.name==x"], ns));
  assert.ok(match([`topic=="/test/event"`], ns));
  assert.ok(match(["topic~=^/test/"], ns));
  assert.ok(match(["event.missing!=1"], ns));
});
