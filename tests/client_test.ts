/**
 * The client against the real daemon (bin/containerd-ts on temp dirs): every wrapped service,
 * error mapping, namespace isolation, leases, content progress and resume, events. A service
 * the daemon does not serve (per Introspection) is skipped with the reason printed.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  AlreadyExistsError,
  CanceledError,
  type Client,
  connect,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  type PluginInfo,
  UnavailableError,
  type WriteProgress,
} from "../client/mod.ts";
import { startDaemon, type TestDaemon } from "./harness.ts";

function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Step options: run only when the daemon serves `io.containerd.grpc.v1.<ids>`. */
function when(plugins: PluginInfo[], ...ids: string[]): { ignore: boolean } {
  const missing = ids.filter((id) =>
    !plugins.some((p) => p.uri === `io.containerd.grpc.v1.${id}` && p.status === "ok")
  );
  if (missing.length > 0) {
    console.log(
      `client_test: SKIP steps needing ${missing.join(", ")}: not served by this daemon`,
    );
  }
  return { ignore: missing.length > 0 };
}

Deno.test("client against the booted daemon", async (t) => {
  const daemon: TestDaemon = await startDaemon();
  const client: Client = connect({ address: daemon.address, timeoutMs: 10_000 });
  try {
    await client.health.waitServing({ timeoutMs: 30_000 });
    const plugins = await client.introspection.plugins();

    await t.step("version", async () => {
      const v = await client.version.get();
      assert.match(v.version, /^\d+\.\d+\.\d+/);
      assert.notEqual(v.revision, "");
    });

    await t.step("introspection: plugins, filters, server, bad filter", async () => {
      assert.ok(plugins.length >= 3);
      assert.ok(plugins.every((p) => ["ok", "skip", "error"].includes(p.status)));
      assert.equal(plugins.find((p) => p.uri === "io.containerd.grpc.v1.version")?.status, "ok");
      const grpc = await client.introspection.plugins({ filters: ["type==io.containerd.grpc.v1"] });
      assert.ok(grpc.length > 0 && grpc.every((p) => p.type === "io.containerd.grpc.v1"));
      const one = await client.introspection.plugins({
        filters: ["type==io.containerd.grpc.v1,id==introspection"],
      });
      assert.deepEqual(one.map((p) => p.uri), ["io.containerd.grpc.v1.introspection"]);
      const server = await client.introspection.server();
      assert.match(server.uuid, /^[0-9a-f-]{36}$/);
      assert.ok(server.pid > 0);
      await assert.rejects(
        client.introspection.plugins({ filters: ['id=="unterminated'] }),
        InvalidArgumentError,
      );
    });

    await t.step("health: check, watch, unknown RPC service is NotImplemented", async () => {
      assert.equal(await client.health.check(), "SERVING");
      for await (const status of client.health.watch()) {
        assert.equal(status, "SERVING");
        break;
      }
      const nope = {
        ...Version.method.version,
        parent: { ...Version, typeName: "containerd.services.nope.v1.Nope" },
      };
      await assert.rejects(client.rpc.unary(nope, {}), NotImplementedError);
    });

    await t.step({
      name: "namespaces: lifecycle and typed errors",
      ...when(plugins, "namespaces"),
      fn: async () => {
        const name = `ct-${crypto.randomUUID().slice(0, 8)}`;
        await client.namespaces.create(name, { labels: { a: "1", b: "2" } });
        await assert.rejects(client.namespaces.create(name), AlreadyExistsError);
        await assert.rejects(client.namespaces.create("bad name!"), InvalidArgumentError);
        assert.deepEqual((await client.namespaces.get(name)).labels, { a: "1", b: "2" });
        await client.namespaces.update(name, { a: "" }, { fields: ["labels.a"] });
        assert.deepEqual((await client.namespaces.get(name)).labels, { b: "2" });
        assert.ok((await client.namespaces.list()).some((n) => n.name === name));
        await client.namespaces.delete(name);
        assert.ok(!(await client.namespaces.list()).some((n) => n.name === name));
        const err = await client.namespaces.delete(name).catch((e) => e);
        assert.ok(err instanceof NotFoundError, String(err));
        assert.match(err.message, new RegExp(name));
      },
    });

    await t.step({
      name: "namespaces: a namespaced call without a namespace is FailedPrecondition",
      ...when(plugins, "leases"),
      fn: async () => {
        await assert.rejects(client.withNamespace("").leases.list(), FailedPreconditionError);
      },
    });

    await t.step({
      name: "leases: create, list, resources, dispose deletes; isolated by namespace",
      ...when(plugins, "leases"),
      fn: async () => {
        const a = client.withNamespace(`ct-a-${crypto.randomUUID().slice(0, 8)}`);
        const b = client.withNamespace(`ct-b-${crypto.randomUUID().slice(0, 8)}`);
        {
          await using lease = await a.leases.create({ labels: { x: "y" }, expiresInMs: 60_000 });
          assert.notEqual(lease.id, "");
          assert.ok(lease.labels["containerd.io/gc.expire"]);
          assert.deepEqual((await a.leases.list()).map((l) => l.id), [lease.id]);
          assert.deepEqual(await b.leases.list(), []);
          await assert.rejects(a.leases.create({ id: lease.id }), AlreadyExistsError);
          await assert.rejects(b.leases.delete(lease.id), NotFoundError);
        }
        assert.deepEqual(await a.leases.list(), []);
        await assert.rejects(a.leases.delete("never-was"), NotFoundError);
      },
    });

    await t.step({
      name: "content: write with progress, read back, info, list, delete, NotFound",
      ...when(plugins, "content"),
      fn: async () => {
        const ns = client.withNamespace(`ct-c-${crypto.randomUUID().slice(0, 8)}`);
        const data = randomBytes(2 * 1024 * 1024 + 777);
        const progress: WriteProgress[] = [];
        const result = await ns.content.write("ct-blob", data, {
          expected: sha256(data),
          labels: { "containerd.io/gc.root": "test" },
          onProgress: (p) => progress.push(p),
        });
        assert.equal(result.digest, sha256(data));
        assert.equal(result.size, data.length);
        assert.equal(result.existed, false);
        assert.equal(progress[0]?.offset, 0);
        assert.equal(progress.at(-1)?.offset, data.length);
        assert.ok(progress.length >= 4, `progress ${progress.map((p) => p.offset)}`);
        assert.deepEqual(await bytesOf(ns.content.read(result.digest)), data);
        assert.deepEqual(
          await bytesOf(ns.content.read(result.digest, { offset: 100, size: 50 })),
          data.subarray(100, 150),
        );
        const info = await ns.content.info(result.digest);
        assert.equal(info.size, data.length);
        assert.equal(info.labels["containerd.io/gc.root"], "test");
        assert.ok((await ns.content.list()).some((i) => i.digest === result.digest));
        // Writing it again with the expected digest counts as written.
        const again = await ns.content.write("ct-blob-2", data, { expected: sha256(data) });
        assert.equal(again.existed, true);
        // Other namespaces do not see it.
        const other = client.withNamespace(`ct-o-${crypto.randomUUID().slice(0, 8)}`);
        const err = await other.content.info(result.digest).catch((e) => e);
        assert.ok(err instanceof NotFoundError, String(err));
        assert.match(err.message, /not found/);
        await assert.rejects(bytesOf(other.content.read(result.digest)), NotFoundError);
        await ns.content.delete(result.digest);
        await assert.rejects(ns.content.info(result.digest), NotFoundError);
        await assert.rejects(ns.content.delete(result.digest), NotFoundError);
        // A wrong expected digest is refused and nothing is committed.
        const bad = await ns.content.write("ct-bad", data, { expected: sha256(new Uint8Array(1)) })
          .catch((e) => e);
        assert.ok(bad instanceof FailedPreconditionError, String(bad));
      },
    });

    await t.step({
      name: "content: an interrupted write resumes where the daemon stopped",
      ...when(plugins, "content"),
      fn: async () => {
        const ns = client.withNamespace(`ct-r-${crypto.randomUUID().slice(0, 8)}`);
        const data = randomBytes(3 * 1024 * 1024);
        const chunk = 256 * 1024;
        let sent = 0;
        const failing = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent >= 5 * chunk) return controller.error(new Error("cable unplugged"));
            controller.enqueue(data.slice(sent, sent + chunk));
            sent += chunk;
          },
        });
        await assert.rejects(
          ns.content.write("ct-resume", failing, { chunkSize: chunk, expected: sha256(data) }),
          /cable unplugged/,
        );
        const status = await ns.content.status("ct-resume");
        assert.equal(status.offset, 5 * chunk);
        assert.ok((await ns.content.listStatuses()).some((s) => s.ref === "ct-resume"));
        const path = await Deno.makeTempFile();
        try {
          await Deno.writeFile(path, data);
          const progress: number[] = [];
          const result = await ns.content.writeFile("ct-resume", path, {
            expected: sha256(data),
            onProgress: (p) => progress.push(p.offset),
          });
          assert.equal(result.resumedFrom, 5 * chunk);
          assert.equal(progress[0], 5 * chunk);
          assert.equal(progress.at(-1), data.length);
          assert.equal(result.digest, sha256(data));
        } finally {
          await Deno.remove(path);
        }
        assert.deepEqual(await bytesOf(ns.content.read(sha256(data))), data);
        await assert.rejects(ns.content.status("ct-resume"), NotFoundError);
        // Abort drops a partial ingest.
        await ns.content.write("ct-abort", failingAfter(data, chunk)).catch(() => {});
        await ns.content.abort("ct-abort");
        await assert.rejects(ns.content.status("ct-abort"), NotFoundError);
      },
    });

    await t.step({
      name: "content + leases: withLease puts written content into the lease",
      ...when(plugins, "content", "leases"),
      fn: async () => {
        const ns = client.withNamespace(`ct-l-${crypto.randomUUID().slice(0, 8)}`);
        await using lease = await ns.leases.create();
        const data = randomBytes(1000);
        const { digest } = await ns.withLease(lease).content.write("ct-leased", data);
        const resources = await lease.resources();
        assert.ok(
          resources.some((r) => r.type === "content" && r.id === digest),
          `lease resources ${JSON.stringify(resources)} lack ${digest}`,
        );
      },
    });

    await t.step({
      name: "events: subscribe sees a namespace created; publish round trip",
      ...when(plugins, "events", "namespaces"),
      fn: async () => {
        const name = `ct-e-${crypto.randomUUID().slice(0, 8)}`;
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(), 15_000);
        const events = client.events.subscribe({
          filters: ['topic=="/ct/ping"', `topic=="/namespaces/create",event.name==${name}`],
          signal: abort.signal,
        });
        try {
          // Ping until the subscription is live, then create the namespace.
          const first = events.next();
          let done = false;
          first.then(() => (done = true), () => (done = true));
          while (!done) {
            await client.events.publish("/ct/ping", { schema: EmptySchema });
            await new Promise((r) => setTimeout(r, 50));
          }
          const ping = await first;
          assert.equal(ping.done, false);
          assert.equal(ping.value?.typeUrl, "google.protobuf.Empty");
          await client.namespaces.create(name);
          for (;;) {
            const next = await events.next();
            assert.equal(next.done, false);
            if (next.value?.topic !== "/namespaces/create") continue;
            assert.equal(next.value.typeUrl, "containerd.events.NamespaceCreate");
            assert.equal((next.value.event as { name?: string } | undefined)?.name, name);
            assert.ok(next.value.timestamp instanceof Date);
            break;
          }
          await client.namespaces.delete(name);
          await assert.rejects(
            client.events.subscribe({ filters: ["topic==/x"] }).next(),
            InvalidArgumentError,
          );
        } finally {
          clearTimeout(timer);
          await events.return();
        }
      },
    });
  } finally {
    await client.close();
    const status = await daemon.stop();
    assert.equal(status.code, 0, daemon.log());
  }
  // After the daemon is gone: typed errors for a closed client and a missing socket.
  await assert.rejects(client.version.get(), CanceledError);
  await using gone = connect({ address: daemon.address, timeoutMs: 2000 });
  await assert.rejects(gone.version.get(), UnavailableError);
});

/** `data` in `chunk`s, failing after two of them. */
function failingAfter(data: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= 2 * chunk) return controller.error(new Error("stop"));
      controller.enqueue(data.slice(sent, sent + chunk));
      sent += chunk;
    },
  });
}
