/**
 * Tests for the Content service, in process behind the daemon's interceptors: the Write
 * stream exactly as ctr drives it, AlreadyExists/Unavailable/OutOfRange, resumes, Read
 * offsets, List filters, events, leases.
 */
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Exchange } from "../../server/exchange.ts";
import { silentLogger } from "../../server/log.ts";
import {
  Content,
  WriteAction,
  type WriteContentRequest,
  WriteContentRequestSchema,
  type WriteContentResponse,
} from "../../proto/gen/containerd/services/content/v1/content_pb.ts";
import {
  Feed,
  inNamespace,
  memoryMetadata,
  serviceTransport,
  sha256,
} from "../metadata/testing.ts";
import { contentService } from "./service.ts";

const enc = new TextEncoder();

function setup() {
  const { md, cs } = memoryMetadata();
  const events = new Exchange();
  const client = createClient(
    Content,
    serviceTransport([contentService({ metadata: md, events, log: silentLogger() })]),
  );
  return { md, cs, events, client };
}

function req(init: MessageInitShape<typeof WriteContentRequestSchema>): WriteContentRequest {
  return create(WriteContentRequestSchema, init);
}

/** A Write stream driven one request at a time, as ctr's remote writer does. */
function writeStream(
  client: ReturnType<typeof setup>["client"],
  namespace: string,
  lease?: string,
) {
  const feed = new Feed<WriteContentRequest>();
  const responses = client.write(feed, inNamespace(namespace, lease))[Symbol.asyncIterator]();
  return {
    async send(request: WriteContentRequest): Promise<WriteContentResponse> {
      feed.push(request);
      const next = await responses.next();
      if (next.done) throw new Error("stream ended");
      return next.value;
    },
    async close(): Promise<void> {
      feed.end();
      await responses.next().catch(() => {});
    },
  };
}

async function codeOf(promise: Promise<unknown>): Promise<Code | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** Ingest as `ctr content ingest --expected-size --expected-digest` does. */
async function ctrIngest(
  client: ReturnType<typeof setup>["client"],
  namespace: string,
  ref: string,
  data: Uint8Array,
  labels: Record<string, string> = {},
  lease?: string,
): Promise<WriteContentResponse[]> {
  const digest = sha256(data);
  const total = BigInt(data.length);
  const w = writeStream(client, namespace, lease);
  const out: WriteContentResponse[] = [];
  out.push(await w.send(req({ action: WriteAction.STAT, ref, total, expected: digest })));
  out.push(await w.send(req({ action: WriteAction.STAT })));
  out.push(await w.send(req({ action: WriteAction.WRITE, data })));
  out.push(
    await w.send(
      req({ action: WriteAction.COMMIT, total, offset: total, expected: digest, labels }),
    ),
  );
  await w.close();
  return out;
}

Deno.test("a ctr-style ingest: STAT, empty STAT, WRITE, COMMIT", async () => {
  const { md, client } = setup();
  try {
    const data = enc.encode("hello world");
    const digest = sha256(data);
    const [stat, stat2, write, commit] = await ctrIngest(client, "default", "my-ref", data, {
      "k": "v",
    });
    assert.equal(stat?.action, WriteAction.STAT);
    assert.equal(stat?.offset, 0n);
    assert.equal(stat?.total, 11n);
    assert.ok(stat?.startedAt && stat.updatedAt);
    assert.equal(stat2?.action, WriteAction.STAT);
    assert.equal(write?.action, WriteAction.WRITE);
    assert.equal(write?.offset, 11n);
    assert.equal(commit?.action, WriteAction.COMMIT);
    assert.equal(commit?.offset, 11n);
    assert.equal(commit?.digest, digest);
    const info = await client.info({ digest }, inNamespace("default"));
    assert.equal(info.info?.size, 11n);
    assert.deepEqual(info.info?.labels, { k: "v" });
    assert.equal(await codeOf(client.info({ digest }, inNamespace("other"))), Code.NotFound);
  } finally {
    await md.close();
  }
});

Deno.test("a second ingest of existing content fails AlreadyExists at open", async () => {
  const { md, client } = setup();
  try {
    const data = enc.encode("twice");
    await ctrIngest(client, "default", "r", data);
    const w = writeStream(client, "default");
    const err = await w.send(req({ action: WriteAction.STAT, ref: "r2", expected: sha256(data) }))
      .then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(err?.code, Code.AlreadyExists);
    assert.match(err?.rawMessage ?? "", /^content sha256:[0-9a-f]{64}: already exists$/);
  } finally {
    await md.close();
  }
});

Deno.test("a held ref is Unavailable to a second stream", async () => {
  const { md, client } = setup();
  try {
    const first = writeStream(client, "default");
    await first.send(req({ action: WriteAction.STAT, ref: "busy" }));
    const second = writeStream(client, "default");
    const err = await second.send(req({ action: WriteAction.STAT, ref: "busy" }))
      .then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(err?.code, Code.Unavailable);
    await first.close();
  } finally {
    await md.close();
  }
});

Deno.test("a cut-off ingest is listed with its offset and resumed by the next stream", async () => {
  const { md, client } = setup();
  try {
    const data = enc.encode("0123456789");
    const first = writeStream(client, "default");
    await first.send(req({ action: WriteAction.STAT, ref: "resume", total: 10n }));
    await first.send(req({ action: WriteAction.WRITE, data: data.slice(0, 4) }));
    await first.close();
    const active = await client.listStatuses({ filters: [""] }, inNamespace("default"));
    assert.deepEqual(active.statuses.map((s) => [s.ref, s.offset, s.total]), [["resume", 4n, 10n]]);
    assert.deepEqual(
      (await client.listStatuses({ filters: [] }, inNamespace("other"))).statuses,
      [],
    );
    const status = await client.status({ ref: "resume" }, inNamespace("default"));
    assert.equal(status.status?.offset, 4n);
    const second = writeStream(client, "default");
    const stat = await second.send(req({ action: WriteAction.STAT, ref: "resume", total: 10n }));
    assert.equal(stat.offset, 4n);
    const bad = await second.send(
      req({ action: WriteAction.WRITE, offset: 3n, data: data.slice(3) }),
    )
      .then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(bad?.code, Code.OutOfRange);
    assert.match(bad?.rawMessage ?? "", /write @3 must occur at current offset 4/);
    const third = writeStream(client, "default");
    await third.send(req({ action: WriteAction.STAT, ref: "resume", total: 10n }));
    const write = await third.send(
      req({ action: WriteAction.WRITE, offset: 4n, data: data.slice(4) }),
    );
    assert.equal(write.offset, 10n);
    const commit = await third.send(
      req({ action: WriteAction.COMMIT, total: 10n, offset: 10n, expected: sha256(data) }),
    );
    assert.equal(commit.digest, sha256(data));
    await third.close();
    assert.deepEqual(
      (await client.listStatuses({ filters: [""] }, inNamespace("default"))).statuses,
      [],
    );
  } finally {
    await md.close();
  }
});

Deno.test("commit with a wrong expected digest fails and keeps nothing visible", async () => {
  const { md, client } = setup();
  try {
    const w = writeStream(client, "default");
    await w.send(req({ action: WriteAction.STAT, ref: "bad" }));
    await w.send(req({ action: WriteAction.WRITE, data: enc.encode("abc") }));
    const err = await w.send(
      req({ action: WriteAction.COMMIT, offset: 3n, expected: sha256("xyz") }),
    ).then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(err?.code, Code.FailedPrecondition);
    const listed: string[] = [];
    for await (const res of client.list({}, inNamespace("default"))) {
      listed.push(...res.info.map((i) => i.digest));
    }
    assert.deepEqual(listed, []);
  } finally {
    await md.close();
  }
});

Deno.test("Read honours offset and size; response offsets count from the read's start", async () => {
  const { md, client } = setup();
  try {
    const data = new Uint8Array(3 * (1 << 20) + 5).map((_, i) => i % 251);
    const digest = sha256(data);
    await ctrIngest(client, "default", "big", data);
    const chunks: { offset: bigint; size: number }[] = [];
    const bytes = new Uint8Array(data.length);
    let at = 0;
    for await (const res of client.read({ digest }, inNamespace("default"))) {
      chunks.push({ offset: res.offset, size: res.data.length });
      bytes.set(res.data, at);
      at += res.data.length;
    }
    assert.equal(at, data.length);
    assert.deepEqual(chunks.map((c) => c.offset), [0n, 1048576n, 2097152n, 3145728n]);
    assert.ok(bytes.every((b, i) => b === data[i]));
    const part: number[] = [];
    for await (
      const res of client.read({ digest, offset: 10n, size: 20n }, inNamespace("default"))
    ) {
      assert.equal(res.offset, 0n);
      part.push(...res.data);
    }
    assert.deepEqual(new Uint8Array(part), data.slice(10, 30));
    const past = async () => {
      for await (
        const _ of client.read({ digest, offset: BigInt(data.length + 1) }, inNamespace("default"))
      ) {
        // drain
      }
    };
    assert.equal(await codeOf(past()), Code.OutOfRange);
    const missing = async () => {
      for await (const _ of client.read({ digest: sha256("nope") }, inNamespace("default"))) {
        // drain
      }
    };
    const err = await missing().then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(err?.code, Code.NotFound);
    assert.equal(err?.rawMessage, `content digest ${sha256("nope")}: not found`);
  } finally {
    await md.close();
  }
});

Deno.test("Info refuses malformed digests; calls without a namespace are refused", async () => {
  const { md, client } = setup();
  try {
    assert.equal(
      await codeOf(client.info({ digest: "sha256:xyz" }, inNamespace("default"))),
      Code.InvalidArgument,
    );
    const err = await client.info({ digest: sha256("a") }).then(
      () => undefined,
      (e) => ConnectError.from(e),
    );
    assert.equal(err?.code, Code.FailedPrecondition);
    assert.equal(err?.rawMessage, "namespace is required: failed precondition");
  } finally {
    await md.close();
  }
});

Deno.test("List filters by labels; Update labels by mask; Delete publishes /content/delete", async () => {
  const { md, client, events } = setup();
  try {
    const a = sha256("a");
    await ctrIngest(client, "default", "a", enc.encode("a"), { app: "one" });
    await ctrIngest(client, "default", "b", enc.encode("b"), { app: "two" });
    const listed: string[] = [];
    for await (const res of client.list({ filters: ["labels.app==one"] }, inNamespace("default"))) {
      listed.push(...res.info.map((i) => i.digest));
    }
    assert.deepEqual(listed, [a]);
    const updated = await client.update({
      info: { digest: a, labels: { extra: "x" } },
      updateMask: { paths: ["labels.extra"] },
    }, inNamespace("default"));
    assert.deepEqual(updated.info?.labels, { app: "one", extra: "x" });
    const controller = new AbortController();
    const sub = events.subscribe({ signal: controller.signal })[Symbol.asyncIterator]();
    const next = sub.next();
    await client.delete({ digest: a }, inNamespace("default"));
    const envelope = (await next).value;
    controller.abort();
    assert.equal(envelope?.topic, "/content/delete");
    assert.equal(envelope?.typeUrl, "containerd.events.ContentDelete");
    assert.equal(envelope?.namespace, "default");
    assert.equal(await codeOf(client.delete({ digest: a }, inNamespace("default"))), Code.NotFound);
  } finally {
    await md.close();
  }
});

Deno.test("the containerd-lease header holds committed content", async () => {
  const { md, client } = setup();
  try {
    md.leases.create("default", { id: "L" });
    const data = enc.encode("leased");
    await ctrIngest(client, "default", "r", data, {}, "L");
    assert.deepEqual(md.leases.listResources("default", "L"), [{
      id: sha256(data),
      type: "content",
    }]);
    await md.garbageCollect();
    assert.equal(
      (await client.info({ digest: sha256(data) }, inNamespace("default"))).info?.size,
      6n,
    );
    const err = await ctrIngest(client, "default", "r2", enc.encode("x"), {}, "missing")
      .then(() => undefined, (e) => ConnectError.from(e));
    assert.equal(err?.code, Code.NotFound);
  } finally {
    await md.close();
  }
});

Deno.test("Abort removes an ingest; aborting a missing one is NotFound", async () => {
  const { md, client } = setup();
  try {
    const w = writeStream(client, "default");
    await w.send(req({ action: WriteAction.STAT, ref: "gone" }));
    await w.send(req({ action: WriteAction.WRITE, data: enc.encode("abc") }));
    await w.close();
    await client.abort({ ref: "gone" }, inNamespace("default"));
    assert.equal(
      await codeOf(client.abort({ ref: "gone" }, inNamespace("default"))),
      Code.NotFound,
    );
    assert.equal(
      await codeOf(client.status({ ref: "gone" }, inNamespace("default"))),
      Code.NotFound,
    );
  } finally {
    await md.close();
  }
});
