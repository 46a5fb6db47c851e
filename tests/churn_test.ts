/**
 * Session churn against server/rpc.ts's handler (DENO-HTTP2.md): Deno 2.9.4–2.9.6 abort the
 * process in nghttp2 when HTTP/2 sessions close under load. The server runs in its own Deno
 * process (tests/churn_server.ts) so such an abort fails this test instead of killing the
 * runner; clients are processes too (tests/churn_client.ts), and every 5th one is SIGKILLed
 * mid-flight. Keep this test: a Deno bump that brings the abort back must fail CI.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { connectUnix } from "../server/unix_socket.ts";

const REPO = new URL("..", import.meta.url).pathname;
const ROUNDS = 5;
const SESSIONS_PER_ROUND = 30;
const CONCURRENCIES = [1, 17, 33, 49, 64];
const SESSION_MS = 300;
const PARALLEL_CLIENTS = 6;

interface Proc {
  readonly child: Deno.ChildProcess;
  /** Resolves with the first stdout line containing `text` (undefined if stdout ended). */
  waitFor(text: string): Promise<string | undefined>;
  stdout(): string;
  stderr(): string;
  readonly status: Promise<Deno.CommandStatus>;
}

function spawn(script: string, args: string[]): Proc {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", script, ...args],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const waiters: { text: string; resolve: (line: string | undefined) => void }[] = [];
  const check = (ended: boolean) => {
    for (const w of [...waiters]) {
      const line = out.split("\n").find((l) => l.includes(w.text));
      if (line !== undefined || ended) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      out += decoder.decode(chunk, { stream: true });
      check(false);
    }
    check(true);
  })();
  const readingErr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) err += decoder.decode(chunk, { stream: true });
  })();
  let stdoutEnded = false;
  reading.then(() => stdoutEnded = true);
  const status = Promise.all([child.status, reading, readingErr]).then(([s]) => s);
  return {
    child,
    waitFor(text) {
      const line = out.split("\n").find((l) => l.includes(text));
      if (line !== undefined || stdoutEnded) return Promise.resolve(line);
      return new Promise((resolve) => waiters.push({ text, resolve }));
    },
    stdout: () => out,
    stderr: () => err,
    status,
  };
}

async function versionCall(socket: string): Promise<string | undefined> {
  const session = http2.connect("http://localhost", {
    createConnection: () => connectUnix(socket),
  });
  session.on("error", () => {});
  try {
    return await new Promise<string | undefined>((resolve) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/containerd.services.version.v1.Version/Version",
        "content-type": "application/grpc",
        te: "trailers",
        "containerd-namespace": "default",
      });
      let status: string | undefined;
      req.on("trailers", (t) => status = String(t["grpc-status"]));
      req.on("data", () => {});
      req.on("error", () => {});
      req.on("close", () => resolve(status));
      req.end(new Uint8Array(5));
    });
  } finally {
    session.close();
  }
}

/** A Health/Watch stream held open on its own session until the server goes away. */
function openWatch(socket: string): { first: Promise<void>; closed: Promise<void> } {
  const session = http2.connect("http://localhost", {
    createConnection: () => connectUnix(socket),
  });
  session.on("error", () => {});
  const req = session.request({
    ":method": "POST",
    ":path": "/grpc.health.v1.Health/Watch",
    "content-type": "application/grpc",
    te: "trailers",
  });
  req.on("error", () => {});
  req.end(new Uint8Array(5));
  const first = new Promise<void>((resolve) => req.once("data", () => resolve()));
  const closed = new Promise<void>((resolve) => {
    req.on("close", () => {
      session.destroy();
      resolve();
    });
  });
  return { first, closed };
}

async function runClient(socket: string, index: number): Promise<string | undefined> {
  const concurrency = CONCURRENCIES[index % CONCURRENCIES.length]!;
  const kill = index % 5 === 4;
  const mode = index % 2 === 0 ? "close" : "destroy";
  const client = spawn("tests/churn_client.ts", [
    socket,
    String(concurrency),
    String(SESSION_MS),
    mode,
  ]);
  if (kill) {
    await client.waitFor("started");
    await new Promise((r) => setTimeout(r, Math.random() * 100));
    try {
      client.child.kill("SIGKILL");
    } catch { /* exited already */ }
    await client.status;
    return undefined;
  }
  const status = await client.status;
  if (!status.success) {
    return `client ${index} (c=${concurrency}, ${mode}) exited ${status.code}: ${client.stdout()} ${client.stderr()}`;
  }
  return undefined;
}

Deno.test({
  name: "session churn: the handler's server survives clients that close or die mid-flight",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "churn-" });
    const socket = `${dir}/churn.sock`;
    const server = spawn("tests/churn_server.ts", [socket]);
    let serverExited = false;
    server.status.then(() => serverExited = true);
    try {
      assert.ok(await server.waitFor("ready"), `server did not start: ${server.stderr()}`);
      const failures: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        let next = 0;
        await Promise.all(Array.from({ length: PARALLEL_CLIENTS }, async () => {
          while (next < SESSIONS_PER_ROUND) {
            const failure = await runClient(socket, next++);
            if (failure) failures.push(failure);
          }
        }));
        if (serverExited) {
          const { code, signal } = await server.status;
          assert.fail(
            `server died in round ${
              round + 1
            } (code ${code}, signal ${signal}): ${server.stderr()}`,
          );
        }
      }
      assert.deepEqual(failures, []);
      // Every RPC of the churn is accounted for: in flight drops back to 0.
      const inflightLines = () =>
        server.stdout().split("\n").filter((l) => l.startsWith("inflight="));
      let inflight = "";
      for (let attempt = 0; attempt < 20 && inflight !== "inflight=0"; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, 100));
        const before = inflightLines().length;
        server.child.kill("SIGUSR2");
        for (let i = 0; i < 100 && inflightLines().length === before; i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        inflight = inflightLines().at(-1) ?? "";
      }
      assert.equal(inflight, "inflight=0");
      assert.equal(await versionCall(socket), "0");
      // Stop with a server stream open and calls running: GOAWAY, drain, destroy, exit 0.
      const watcher = openWatch(socket);
      await watcher.first;
      const busy = spawn("tests/churn_client.ts", [socket, "8", "3000", "close"]);
      await busy.waitFor("started");
      server.child.kill("SIGTERM");
      const status = await server.status;
      assert.match(server.stdout(), /stopping inflight=\d+\n/);
      assert.match(server.stdout(), /closed\n/);
      assert.equal(status.code, 0, server.stderr());
      await watcher.closed;
      await busy.status;
    } finally {
      if (!serverExited) {
        try {
          server.child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await server.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
