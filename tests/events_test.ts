/**
 * Events, end to end: `ctr events` (Debian's ctr 1.6.20) against the real daemon, with events
 * published through Events/Publish by a connect-node gRPC client over the unix socket and, when
 * the namespaces service is loaded, by `ctr namespaces create`.
 */
import assert from "node:assert/strict";
import { connectUnix } from "../server/unix_socket.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Events } from "../proto/gen/containerd/services/events/v1/events_pb.ts";
import { NamespaceCreateSchema } from "../proto/gen/containerd/events/namespace_pb.ts";
import { ctr, ctrMissing, sh, startDaemon, type TestDaemon } from "./harness.ts";

const skip = ctrMissing();
if (skip) console.error(`events_test: ${skip}`);

/** A running `ctr events`: its output so far, and a way to end it. */
interface CtrEvents {
  stdout(): string;
  stderr(): string;
  readonly status: Promise<Deno.CommandStatus>;
  /** SIGTERM (if still running) and wait for the process and its pipes. */
  stop(): Promise<Deno.CommandStatus>;
}

function ctrEvents(address: string, filters: string[] = []): CtrEvents {
  const child = new Deno.Command("/usr/bin/ctr", {
    args: ["-a", address, "events", ...filters],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) add(dec.decode(chunk, { stream: true }));
  };
  const pumps = Promise.all([
    pump(child.stdout, (s) => out += s),
    pump(child.stderr, (s) => err += s),
  ]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    stdout: () => out,
    stderr: () => err,
    status,
    async stop() {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch {
          // already gone
        }
      }
      const s = await status;
      await pumps;
      return s;
    },
  };
}

/** A gRPC client of the daemon's Events service over its unix socket. */
function eventsClient(socket: string): { client: Client<typeof Events>; close(): void } {
  const sessionManager = new Http2SessionManager("http://localhost", {}, {
    createConnection: () => connectUnix(socket),
  });
  // gRPC always runs on HTTP/2 here (no httpVersion option); the session manager owns the
  // connection so the test can close it.
  const transport = createGrpcTransport({ baseUrl: "http://localhost", sessionManager });
  return { client: createClient(Events, transport), close: () => sessionManager.abort() };
}

/** NamespaceCreate packed as containerd packs events: the bare type name as type URL. */
function namespaceCreate(name: string) {
  return create(AnySchema, {
    typeUrl: NamespaceCreateSchema.typeName,
    value: toBinary(NamespaceCreateSchema, create(NamespaceCreateSchema, { name })),
  });
}

/**
 * Run `act` until `pattern` shows in `text()`: ctr's Subscribe may reach the daemon after the
 * first event, and nothing tells a client when its subscription is live.
 */
async function until(
  text: () => string,
  pattern: RegExp,
  act: (attempt: number) => Promise<unknown>,
  timeoutMs = 20_000,
): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0;; attempt++) {
    await act(attempt);
    for (let i = 0; i < 10; i++) {
      const found = pattern.exec(text());
      if (found) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (Date.now() > deadline) {
      throw new Error(`${pattern} not seen after ${timeoutMs} ms; output:\n${text()}`);
    }
  }
}

async function debugVars(daemon: TestDaemon): Promise<Record<string, unknown>> {
  const out = await sh("curl", [
    "-sS",
    "--unix-socket",
    `${daemon.dir}/debug.sock`,
    "http://localhost/debug/vars",
  ]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

/**
 * The exchange's live subscriber count, from the SIGUSR1 diagnostic dump: asks for a fresh
 * dump and reads the `eventSubscribers` line of the newest one.
 */
async function eventSubscribers(daemon: TestDaemon): Promise<number> {
  const marker = "SIGUSR1 diagnostic dump";
  const before = daemon.log().split(marker).length;
  daemon.process.kill("SIGUSR1");
  const deadline = Date.now() + 10_000;
  while (daemon.log().split(marker).length === before) {
    if (Date.now() > deadline) throw new Error(`no diagnostic dump:\n${daemon.log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const dumps = daemon.log().split(marker);
  const count = /eventSubscribers: (\d+)/.exec(dumps[dumps.length - 1] ?? "")?.[1];
  assert.ok(count !== undefined, `no eventSubscribers in the dump:\n${daemon.log()}`);
  return Number(count);
}

async function withDaemon(fn: (daemon: TestDaemon) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cts-" });
  const daemon = await startDaemon({
    dir,
    config: `version = 2\n[debug]\n  address = "${dir}/debug.sock"\n`,
  });
  try {
    await fn(daemon);
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "ctr plugins ls lists the exchange and the events service",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const out = await ctr(daemon.address, ["plugins", "ls"]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^io\.containerd\.event\.v1\s+exchange\s+-\s+ok\s*$/m);
      assert.match(out.stdout, /^io\.containerd\.grpc\.v1\s+events\s+-\s+ok\s*$/m);
    });
  },
});

Deno.test({
  name: "ctr events prints events published through Events/Publish, filtered, any namespace",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const all = ctrEvents(daemon.address);
      const filtered = ctrEvents(daemon.address, [`topic=="/test/kept"`]);
      const { client, close } = eventsClient(daemon.address);
      try {
        // Published in a namespace ctr does not use: Subscribe is not namespace-scoped.
        const publish = (topic: string, name: string) =>
          client.publish(
            { topic, event: namespaceCreate(name) },
            { headers: { "containerd-namespace": "evtest" } },
          );
        const line = await until(
          all.stdout,
          /^(\S+ \S+ \S+ \S+) evtest \/test\/published (\{.*\})$/m,
          (i) => publish("/test/published", `p${i}`),
        );
        assert.match(line[2] ?? "", /^\{"name":"p\d+"\}$/);
        // ctr prints Go's time.Time: "2006-01-02 15:04:05.999999999 +0000 UTC".
        assert.match(line[1] ?? "", /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC$/);

        await until(
          filtered.stdout,
          /^\S+ \S+ \S+ \S+ evtest \/test\/kept \{"name":"k\d+"\}$/m,
          async (i) => {
            await publish("/test/dropped", `d${i}`);
            await publish("/test/kept", `k${i}`);
          },
        );
        assert.doesNotMatch(filtered.stdout(), /\/test\/(dropped|published)/);
        assert.match(all.stdout(), /evtest \/test\/dropped/);

        // The daemon validates what it is asked to publish.
        const err = await client.publish({ topic: "no-slash", event: namespaceCreate("x") }, {
          headers: { "containerd-namespace": "evtest" },
        }).then(() => undefined, (e: unknown) => e);
        assert.match(String(err), /invalid_argument.*must start with '\/'/);
        assert.equal(await eventSubscribers(daemon), 2);
      } finally {
        close();
        await all.stop();
        await filtered.stop();
      }
      // Clients that went away leave no stream running in the daemon.
      const deadline = Date.now() + 10_000;
      let vars = await debugVars(daemon);
      while (vars.rpcsInFlight !== 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        vars = await debugVars(daemon);
      }
      assert.equal(vars.rpcsInFlight, 0, JSON.stringify(vars));
      assert.equal(await eventSubscribers(daemon), 0);
    });
  },
});

Deno.test({
  name: "ctr events prints /namespaces/create from ctr namespaces create",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const plugins = await ctr(daemon.address, ["plugins", "ls"]);
      if (!/^io\.containerd\.grpc\.v1\s+namespaces\s+-\s+ok\s*$/m.test(plugins.stdout)) {
        console.error("events_test: SKIP namespaces part: the namespaces service is not loaded");
        return;
      }
      const events = ctrEvents(daemon.address, ["namespace==default"]);
      try {
        const line = await until(
          events.stdout,
          /^\S+ \S+ \S+ \S+ default \/namespaces\/create \{"name":"(evx-\d+)"\}$/m,
          async (i) => {
            const out = await ctr(daemon.address, ["namespaces", "create", `evx-${i}`]);
            assert.equal(out.code, 0, out.stderr);
          },
        );
        assert.ok(line[1]);
      } finally {
        await events.stop();
      }
    });
  },
});

Deno.test({
  name: "ctr events rejects a malformed filter with invalid argument",
  ignore: skip !== undefined,
  async fn() {
    await withDaemon(async (daemon) => {
      const events = ctrEvents(daemon.address, ["labels.a=="]);
      const status = await Promise.race([
        events.status,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000)),
      ]);
      const final = await events.stop();
      assert.ok(status, "ctr events should exit on a bad filter");
      assert.notEqual(final.code, 0);
      assert.match(events.stderr(), /failed parsing subscription filters: .*invalid argument/);
    });
  },
});

Deno.test({
  name: "a daemon stop ends ctr events' stream and does not wait for it",
  ignore: skip !== undefined,
  async fn() {
    const daemon = await startDaemon();
    const events = ctrEvents(daemon.address);
    const { client, close } = eventsClient(daemon.address);
    try {
      await until(
        events.stdout,
        /stop-test \/test\/alive/,
        (i) =>
          client.publish({ topic: "/test/alive", event: namespaceCreate(`a${i}`) }, {
            headers: { "containerd-namespace": "stop-test" },
          }),
      );
    } finally {
      close();
    }
    const started = Date.now();
    const status = await daemon.stop();
    assert.equal(status.code, 0, daemon.log());
    // Well inside the daemon's drain timeout: the stream ended, nothing waited for it.
    assert.ok(Date.now() - started < 5_000, `stop took ${Date.now() - started} ms`);
    const exited = await Promise.race([
      events.status,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000)),
    ]);
    await events.stop();
    assert.ok(exited, "ctr events should exit once the daemon is gone");
  },
});
