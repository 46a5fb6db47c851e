/**
 * Tests for the Images service in process: the Update-then-Create sequence of
 * `ctr images import`, List filters, field masks, events and sync deletes.
 */
import assert from "node:assert/strict";
import { create, equals, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Exchange, type PublishInput } from "../../server/exchange.ts";
import {
  ImageCreateSchema,
  ImageDeleteSchema,
} from "../../proto/gen/containerd/services/images/v1/image_events_pb.ts";
import { Images, ImageSchema } from "../../proto/gen/containerd/services/images/v1/images_pb.ts";
import { DescriptorSchema } from "../../proto/gen/containerd/types/descriptor_pb.ts";
import { SqlImageStore } from "../metadata/images.ts";
import { ingest, inNamespace, memoryMetadata, serviceTransport } from "../metadata/testing.ts";
import { imagesService, imageToProto } from "./service.ts";

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

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const ns = inNamespace("default");

function setup() {
  const { md, cs } = memoryMetadata();
  const events = new RecordingExchange();
  let collections = 0;
  const client = createClient(
    Images,
    serviceTransport([imagesService({
      images: new SqlImageStore(md),
      events,
      collect: () => {
        collections++;
        return md.garbageCollect();
      },
    })]),
  );
  return { md, cs, client, events, collections: () => collections };
}

Deno.test("import's Update then Create; Get, List with filters; events", async () => {
  const { md, client, events } = setup();
  try {
    const digest = await ingest(md.content({ namespace: "default" }), "m", "manifest");
    const image = {
      name: "docker.io/library/testbox:latest",
      target: {
        mediaType: MANIFEST,
        digest,
        size: 8n,
        annotations: { "io.containerd.image.name": "docker.io/library/testbox:latest" },
      },
      // ctr sends Go's zero time; the server sets its own.
      createdAt: { seconds: -62135596800n },
      updatedAt: { seconds: -62135596800n },
    };
    const notYet = await failure(client.update({ image, updateMask: { paths: ["target"] } }, ns));
    assert.equal(notYet.code, Code.NotFound);
    assert.equal(notYet.rawMessage, 'image "docker.io/library/testbox:latest": not found');
    const created = await client.create({ image }, ns);
    assert.equal(created.image?.target?.digest, digest);
    assert.equal(created.image?.target?.size, 8n);
    assert.ok(Number(created.image?.createdAt?.seconds) > 1_700_000_000);
    const dup = await failure(client.create({ image }, ns));
    assert.equal(dup.code, Code.AlreadyExists);
    assert.equal(dup.rawMessage, 'image "docker.io/library/testbox:latest": already exists');

    const got = await client.get({ name: image.name }, ns);
    assert.deepEqual(got.image?.target?.annotations, image.target.annotations);
    const listed = await client.list({ filters: [`target.digest==${digest}`] }, ns);
    assert.deepEqual(listed.images.map((i) => i.name), [image.name]);
    assert.equal((await client.list({ filters: ["name~=nothing"] }, ns)).images.length, 0);
    const bad = await failure(client.list({ filters: ["name=="] }, ns));
    assert.equal(bad.code, Code.InvalidArgument);

    const labelled = await client.update({
      image: { name: image.name, labels: { "io.cri.pinned": "pinned" } },
      updateMask: { paths: ["labels.io.cri.pinned"] },
    }, ns);
    assert.deepEqual(labelled.image?.labels, { "io.cri.pinned": "pinned" });
    assert.equal(labelled.image?.target?.digest, digest);

    assert.deepEqual(events.published.map((e) => [e.topic, e.typeUrl]), [
      ["/images/create", "containerd.services.images.v1.ImageCreate"],
      ["/images/update", "containerd.services.images.v1.ImageUpdate"],
    ]);
    assert.equal(fromBinary(ImageCreateSchema, events.published[0]!.value).name, image.name);
  } finally {
    await md.close();
  }
});

Deno.test("create and update refuse a nameless or invalid image", async () => {
  const { md, client } = setup();
  try {
    const noName = await failure(client.create({ image: { name: "" } }, ns));
    assert.equal(noName.code, Code.InvalidArgument);
    assert.equal(noName.rawMessage, "Image.Name required: invalid argument");
    const noImage = await failure(client.update({}, ns));
    assert.equal(noImage.code, Code.InvalidArgument);
    const size = await failure(client.create({
      image: {
        name: "x",
        target: { mediaType: MANIFEST, digest: `sha256:${"a".repeat(64)}`, size: 0n },
      },
    }, ns));
    assert.equal(size.code, Code.InvalidArgument);
    assert.equal(size.rawMessage, "Target.Size must be greater than zero: invalid argument");
    const noNs = await failure(client.list({}));
    assert.equal(noNs.code, Code.FailedPrecondition);
  } finally {
    await md.close();
  }
});

Deno.test("delete publishes, reports NotFound, and with sync collects before replying", async () => {
  const { md, cs, client, events, collections } = setup();
  try {
    const store = md.content({ namespace: "default" });
    const layer = await ingest(store, "l", "layer");
    const manifest = await ingest(store, "m", "manifest", {
      "containerd.io/gc.ref.content.l.0": layer,
    });
    await client.create({
      image: { name: "img", target: { mediaType: MANIFEST, digest: manifest, size: 8n } },
    }, ns);
    await md.garbageCollect();
    assert.equal(cs.blobs.size, 2);
    await client.delete({ name: "img", sync: true }, ns);
    assert.equal(collections(), 1);
    assert.equal(cs.blobs.size, 0);
    const again = await failure(client.delete({ name: "img" }, ns));
    assert.equal(again.code, Code.NotFound);
    const deleted = events.published.filter((e) => e.topic === "/images/delete");
    assert.equal(deleted.length, 1);
    assert.equal(fromBinary(ImageDeleteSchema, deleted[0]!.value).name, "img");
  } finally {
    await md.close();
  }
});

Deno.test("imageToProto's literal messages equal create's, bytes and JSON included", () => {
  const at = (ms: number) => new Date(ms);
  const images = [
    {
      name: "docker.io/library/a:latest",
      labels: { "containerd.io/gc.ref.content": "x", z: "" },
      target: { mediaType: MANIFEST, digest: `sha256:${"a".repeat(64)}`, size: 1, annotations: {} },
      createdAt: at(1_700_000_000_123),
      updatedAt: at(1_700_000_000_999),
    },
    {
      name: "b",
      labels: {},
      target: { mediaType: "", digest: "", size: 2 ** 40, annotations: { "org.k": "v" } },
      createdAt: at(-1_500), // before 1970: nanos stay positive, seconds floor
      updatedAt: at(0),
    },
  ];
  for (const image of images) {
    const literal = imageToProto(image);
    const created = create(ImageSchema, {
      name: image.name,
      labels: image.labels,
      target: create(DescriptorSchema, { ...image.target, size: BigInt(image.target.size) }),
      createdAt: timestampFromDate(image.createdAt),
      updatedAt: timestampFromDate(image.updatedAt),
    });
    assert.ok(equals(ImageSchema, literal, created), image.name);
    assert.deepEqual(toBinary(ImageSchema, literal), toBinary(ImageSchema, created));
    assert.deepEqual(toJson(ImageSchema, literal), toJson(ImageSchema, created));
    assert.deepEqual(Object.keys(literal), Object.keys(created));
  }
});
