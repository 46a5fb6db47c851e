/**
 * The Containers wrapper in process, against the daemon's own Containers service over an
 * in-memory metadata store: the spec as a parsed object on both sides (JSON in an Any with
 * the OCI type URL), runtime defaults, update by the fields given, typed errors.
 */
import assert from "node:assert/strict";
import { containersService as containersServiceSpec } from "../plugins/containers/service.ts";
import { SqlContainerStore } from "../plugins/metadata/containers.ts";
import { memoryMetadata, serviceTransport } from "../plugins/metadata/testing.ts";
import { Exchange } from "../server/exchange.ts";
import {
  AlreadyExistsError,
  clientFromTransport,
  DEFAULT_RUNTIME,
  defaultSpec,
  InvalidArgumentError,
  jsonAny,
  NotFoundError,
  OCI_SPEC_TYPE_URL,
  parseSpec,
} from "./mod.ts";

function setup() {
  const { md } = memoryMetadata();
  const transport = serviceTransport([
    containersServiceSpec({ containers: new SqlContainerStore(md), events: new Exchange() }),
  ]);
  return clientFromTransport(transport, { namespace: "ns1" });
}

Deno.test("defaultSpec is containerd's default Linux spec with the arguments", () => {
  const spec = defaultSpec({ namespace: "ns1", id: "c1", args: ["/bin/sh", "-c", "true"] });
  assert.equal(spec.root?.path, "rootfs");
  assert.deepEqual(spec.process?.args, ["/bin/sh", "-c", "true"]);
  assert.equal(spec.process?.cwd, "/");
  assert.deepEqual(spec.process?.user, { uid: 0, gid: 0 });
  assert.match(spec.process?.env?.[0] ?? "", /^PATH=\/usr\/local\/sbin:/);
  assert.deepEqual(
    spec.mounts?.map((m) => m.destination),
    ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/run"],
  );
  assert.equal(spec.linux?.cgroupsPath, "/ns1/c1");
  assert.equal(spec.process?.capabilities?.bounding?.length, 14);
  assert.equal(spec.hostname, undefined);
  const more = defaultSpec({
    namespace: "n",
    id: "x",
    args: ["/x"],
    env: ["A=1"],
    cwd: "/tmp",
    hostname: "h",
    terminal: true,
    readonlyRootfs: true,
    mounts: [{ destination: "/data", type: "bind", source: "/srv", options: ["rbind"] }],
  });
  assert.deepEqual(more.process?.env?.slice(1), ["A=1"]);
  assert.equal(more.process?.terminal, true);
  assert.equal(more.hostname, "h");
  assert.equal(more.root?.readonly, true);
  assert.equal(more.mounts?.at(-1)?.destination, "/data");
  // Specs do not share arrays.
  spec.process?.capabilities?.bounding?.pop();
  assert.equal(more.process?.capabilities?.bounding?.length, 14);
});

Deno.test("containers: create, get and list carry the spec as an object", async () => {
  await using client = setup();
  const spec = defaultSpec({ namespace: "ns1", id: "c1", args: ["/bin/true"] });
  const created = await client.containers.create({
    id: "c1",
    image: "docker.io/library/testbox:latest",
    spec,
    labels: { owner: "me" },
    snapshotter: "overlayfs",
    snapshotKey: "c1",
  });
  assert.equal(created.id, "c1");
  assert.deepEqual(created.runtime, { name: DEFAULT_RUNTIME });
  assert.deepEqual(created.spec, spec);
  assert.equal(created.rawSpec?.typeUrl, OCI_SPEC_TYPE_URL);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(created.rawSpec?.value)), spec);
  assert.ok(created.createdAt instanceof Date);

  const got = await client.containers.get("c1");
  assert.deepEqual(got.spec, spec);
  assert.deepEqual(got.labels, { owner: "me" });
  assert.equal(got.snapshotKey, "c1");
  assert.equal(got.snapshotter, "overlayfs");
  assert.equal(got.image, "docker.io/library/testbox:latest");

  const options = { typeUrl: "containerd.runc.v1.Options", value: new Uint8Array([8, 1]) };
  await client.containers.create({
    id: "c2",
    spec: jsonAny("example.com/Other", { x: 1 }),
    runtime: { name: "io.containerd.runc.v2", options },
  });
  const c2 = await client.containers.get("c2");
  assert.deepEqual(c2.runtime, { name: "io.containerd.runc.v2", options });
  assert.equal(c2.spec, undefined, "not an OCI spec: only rawSpec");
  assert.equal(c2.rawSpec?.typeUrl, "example.com/Other");

  assert.deepEqual((await client.containers.list()).map((c) => c.id).sort(), ["c1", "c2"]);
  assert.deepEqual(
    (await client.containers.list({ filters: ["labels.owner==me"] })).map((c) => c.id),
    ["c1"],
  );
  assert.deepEqual(await client.withNamespace("other").containers.list(), []);
});

Deno.test("containers: update changes only the fields given", async () => {
  await using client = setup();
  const spec = defaultSpec({ namespace: "ns1", id: "u1", args: ["/bin/true"] });
  await client.containers.create({ id: "u1", spec, labels: { a: "1", b: "2" }, image: "img:1" });

  const relabelled = await client.containers.update({ id: "u1", labels: { c: "3" } });
  assert.deepEqual(relabelled.labels, { c: "3" });
  assert.equal(relabelled.image, "img:1");
  assert.deepEqual(relabelled.spec, spec);

  const one = await client.containers.update({ id: "u1", labels: { d: "4" } }, {
    fields: ["labels.d"],
  });
  assert.deepEqual(one.labels, { c: "3", d: "4" });

  const newSpec = { ...spec, hostname: "changed" };
  const respecced = await client.containers.update({ id: "u1", spec: newSpec, image: "img:2" });
  assert.equal(respecced.spec?.hostname, "changed");
  assert.equal(respecced.image, "img:2");
  assert.deepEqual(respecced.labels, { c: "3", d: "4" });

  await assert.rejects(client.containers.update({ id: "u1" }), InvalidArgumentError);
  await assert.rejects(
    client.containers.update({ id: "nope", labels: {} }),
    (err: unknown) => err instanceof NotFoundError && /nope/.test(err.message),
  );
});

Deno.test("containers: typed errors for duplicates, missing records and bad input", async () => {
  await using client = setup();
  const spec = defaultSpec({ namespace: "ns1", id: "e1", args: ["/bin/true"] });
  await client.containers.create({ id: "e1", spec });
  await assert.rejects(
    client.containers.create({ id: "e1", spec }),
    (err: unknown) => err instanceof AlreadyExistsError && /e1/.test(err.message),
  );
  await assert.rejects(client.containers.get("missing"), NotFoundError);
  await assert.rejects(client.containers.delete("missing"), NotFoundError);
  await assert.rejects(
    client.containers.create({ id: "bad id!", spec }),
    (err: unknown) => err instanceof InvalidArgumentError && /container\.ID/.test(err.message),
  );
  await assert.rejects(
    client.containers.create({ id: "e2", spec, snapshotKey: "k" }),
    (err: unknown) => err instanceof InvalidArgumentError && /Snapshotter/.test(err.message),
  );
  await client.containers.delete("e1");
  await assert.rejects(client.containers.get("e1"), NotFoundError);
});

Deno.test("parseSpec: only OCI specs that are JSON objects", () => {
  assert.deepEqual(parseSpec(jsonAny(OCI_SPEC_TYPE_URL, { ociVersion: "1" })), { ociVersion: "1" });
  assert.equal(parseSpec(jsonAny(OCI_SPEC_TYPE_URL, [1])), undefined);
  assert.equal(parseSpec({ typeUrl: OCI_SPEC_TYPE_URL, value: new Uint8Array([1, 2]) }), undefined);
  assert.equal(parseSpec(jsonAny("x", {})), undefined);
  assert.equal(parseSpec(undefined), undefined);
});
