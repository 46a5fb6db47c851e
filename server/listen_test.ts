import assert from "node:assert/strict";
import http2 from "node:http2";
import { connectUnix } from "./unix_socket.ts";
import { AddressInUseError, closeServer, listenTcp, listenUnix } from "./listen.ts";
import { H2Server } from "./h2_server.ts";

const uid = Deno.uid() ?? 0;
const gid = Deno.gid() ?? 0;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "listen-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A socket file nobody listens on: a process listens, then dies by SIGKILL. */
async function makeStaleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `Deno.listen({ transport: "unix", path: ${
        JSON.stringify(path)
      } }); console.log("up"); setInterval(() => {}, 1000);`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  await child.status;
  assert.ok((await Deno.lstat(path)).isSocket, "stale socket left behind");
}

/** One gRPC-shaped request to an http2 server on `path`; resolves with the :status. */
async function ping(path: string): Promise<number> {
  const session = http2.connect("http://localhost", { createConnection: () => connectUnix(path) });
  session.on("error", () => {});
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = session.request({ ":path": "/ping" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.on("data", () => {});
      req.end();
    });
  } finally {
    session.close();
  }
}

function pingServer(): http2.Http2Server {
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("error", () => {});
    stream.respond({ ":status": 204 }, { endStream: true });
  });
  return server;
}

Deno.test("listenUnix creates the parent dir 0711 and the socket 0660", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/run/containerd/containerd.sock`;
    const server = pingServer();
    await listenUnix(server, { path, uid, gid });
    try {
      const parent = await Deno.stat(`${dir}/run/containerd`);
      assert.ok(parent.isDirectory);
      assert.equal(parent.mode! & 0o777, 0o711);
      const sock = await Deno.lstat(path);
      assert.ok(sock.isSocket);
      assert.equal(sock.mode! & 0o777, 0o660);
      assert.equal(sock.uid, uid);
      assert.equal(await ping(path), 204);
    } finally {
      await closeServer(server);
    }
  });
});

Deno.test("listenUnix applies a custom mode", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/d.sock`;
    const server = pingServer();
    await listenUnix(server, { path, uid, gid, mode: 0o600 });
    try {
      assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o600);
    } finally {
      await closeServer(server);
    }
  });
});

Deno.test("listenUnix removes a stale socket nobody listens on", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/stale.sock`;
    await makeStaleSocket(path);
    const server = pingServer();
    await listenUnix(server, { path, uid, gid });
    try {
      assert.equal(await ping(path), 204);
    } finally {
      await closeServer(server);
    }
  });
});

Deno.test("listenUnix refuses a live socket, naming it, and the live server keeps working", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/live.sock`;
    const live = pingServer();
    await listenUnix(live, { path, uid, gid });
    try {
      const second = pingServer();
      await assert.rejects(
        listenUnix(second, { path, uid, gid }),
        (err: unknown) => {
          assert.ok(err instanceof AddressInUseError);
          assert.equal(err.message, `another process is listening on ${path}`);
          return true;
        },
      );
      assert.ok((await Deno.lstat(path)).isSocket);
      assert.equal(await ping(path), 204);
      assert.equal(await ping(path), 204);
    } finally {
      await closeServer(live);
    }
  });
});

Deno.test("listenUnix refuses to delete a path that is not a socket", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/file.sock`;
    await Deno.writeTextFile(path, "keep me");
    await assert.rejects(listenUnix(pingServer(), { path, uid, gid }), /is not a socket/);
    assert.equal(await Deno.readTextFile(path), "keep me");
  });
});

Deno.test("listenUnix names an over-long path", async () => {
  const path = `/tmp/${"x".repeat(120)}/d.sock`;
  await assert.rejects(listenUnix(pingServer(), { path, uid, gid }), /too long/);
});

Deno.test("listenTcp binds host:port and reports the bound port", async () => {
  const server = pingServer();
  const bound = await listenTcp(server, "127.0.0.1:0");
  try {
    assert.equal(bound.host, "127.0.0.1");
    assert.ok(bound.port > 0);
  } finally {
    await closeServer(server);
  }
  await assert.rejects(listenTcp(pingServer(), "127.0.0.1"), /missing port/);
});

Deno.test("listenTcp serves an H2Server over TCP; closeServer stops it and its sessions", async () => {
  const server = new H2Server();
  server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => stream.respond({ ":status": "204" }, { endStream: true }));
  });
  const bound = await listenTcp(server, "127.0.0.1:0");
  assert.equal(bound.host, "127.0.0.1");
  const session = http2.connect(`http://127.0.0.1:${bound.port}`);
  session.on("error", () => {});
  try {
    const statuses = await Promise.all(
      Array.from({ length: 10 }, () =>
        new Promise<number>((resolve, reject) => {
          const req = session.request({ ":path": "/ping", ":method": "POST" });
          req.on("response", (h) => resolve(Number(h[":status"])));
          req.on("error", reject);
          req.on("data", () => {});
          req.end();
        })),
    );
    assert.deepEqual(statuses, Array(10).fill(204));
    const closed = new Promise((resolve) => session.once("close", resolve));
    await closeServer(server, { graceMs: 1000 });
    await closed; // GOAWAY, then the connection ends
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: bound.port }),
      /refused/i,
      "the port is closed",
    );
  } finally {
    session.destroy();
  }
  await assert.rejects(listenTcp(new H2Server(), "127.0.0.1:x"), /bad port/);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = taken.addr as Deno.NetAddr;
    await assert.rejects(
      listenTcp(new H2Server(), `127.0.0.1:${port}`),
      new RegExp(`listen on 127\\.0\\.0\\.1:${port}: .*in use`, "i"),
    );
  } finally {
    taken.close();
  }
});

Deno.test("closeServer lets a running stream finish, then closes; a hung one is cut at grace", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/g.sock`;
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {});
      if (headers[":path"] === "/hang") return; // never answers
      setTimeout(() => stream.respond({ ":status": 200 }, { endStream: true }), 200);
    });
    await listenUnix(server, { path, uid, gid });
    const session = http2.connect("http://localhost", {
      createConnection: () => connectUnix(path),
    });
    session.on("error", () => {});
    const req = session.request({ ":path": "/slow" });
    req.on("error", () => {});
    req.end();
    const status = new Promise<number>((resolve) => {
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("close", () => resolve(-1));
    });
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await closeServer(server, { graceMs: 5000 });
    assert.equal(await status, 200);
    assert.ok(Date.now() - started < 4000, "closed once the stream finished");
    session.destroy();

    const hung = http2.createServer();
    hung.on("stream", (stream) => stream.on("error", () => {}));
    await listenUnix(hung, { path, uid, gid });
    const s2 = http2.connect("http://localhost", { createConnection: () => connectUnix(path) });
    s2.on("error", () => {});
    const r2 = s2.request({ ":path": "/hang" });
    r2.on("error", () => {});
    r2.on("data", () => {});
    r2.end();
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await closeServer(hung, { graceMs: 300 });
    assert.ok(Date.now() - t0 < 3000);
    s2.destroy();
  });
});
