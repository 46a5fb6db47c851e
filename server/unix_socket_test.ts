import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { once } from "node:events";
import { connectUnix, type UnixSocket, UnixSocketListener } from "./unix_socket.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A full garbage collection, so freed buffers leave `external` before it is read. */
async function fullGc(): Promise<() => void> {
  const [{ default: v8 }, { default: vm }] = await Promise.all([
    import("node:v8"),
    import("node:vm"),
  ]);
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}

async function readAll(socket: UnixSocket): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of socket) chunks.push(chunk as Uint8Array);
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

Deno.test("bytes cross both ways, end of stream reaches the peer and both sides close", async () => {
  await withDir(async (dir) => {
    const accepted: UnixSocket[] = [];
    const listener = UnixSocketListener.listen(`${dir}/s.sock`, (socket) => {
      accepted.push(socket);
      socket.pipe(socket); // echo; ends when the client ends
    });
    const client = connectUnix(`${dir}/s.sock`);
    assert.equal(client.connecting, true);
    await once(client, "connect");
    assert.equal(client.connecting, false);
    const big = "x".repeat(300_000); // more than one read chunk and one socket buffer
    client.end(big);
    assert.equal(await readAll(client), big);
    if (!client.closed) await once(client, "close");
    assert.equal(accepted.length, 1);
    if (!accepted[0]!.closed) await once(accepted[0]!, "close");
    await listener.close();
  });
});

Deno.test("closing the listener stops accepting and unlinks its socket path", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    const listener = UnixSocketListener.listen(path, (socket) => socket.end("hello"));
    assert.equal(await readAll(connectUnix(path)), "hello");
    await listener.close();
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
    const refused = connectUnix(path);
    const [err] = await once(refused, "error") as [Error & { code?: string }];
    assert.equal(err.code, "ENOENT");
    await listener.close(); // twice is fine
  });
});

Deno.test("a peer that vanishes ends the stream; destroy closes a socket still connecting", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    const listener = UnixSocketListener.listen(path, (socket) => socket.destroy());
    const client = connectUnix(path);
    client.on("error", () => {});
    client.resume();
    await once(client, "close");
    const early = connectUnix(path);
    early.destroy();
    await once(early, "close");
    await listener.close();
  });
});

Deno.test("setTimeout emits timeout after the idle period; 0 turns it off", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    const listener = UnixSocketListener.listen(path, () => {});
    const client = connectUnix(path);
    await once(client, "connect");
    const started = Date.now();
    client.setTimeout(80);
    assert.equal(client.timeout, 80);
    await once(client, "timeout");
    assert.ok(Date.now() - started >= 70);
    client.setTimeout(0);
    assert.equal(client.timeout, undefined);
    client.destroy();
    await listener.close();
  });
});

Deno.test("node's HTTP/2 and HTTP/1.1 servers and HTTP/2 client run over these sockets", async () => {
  await withDir(async (dir) => {
    const h2 = http2.createServer((req, res) => res.end(`h2 ${req.url}`));
    const h1 = http.createServer((req, res) => res.end(`h1 ${req.url}`));
    const h2Listener = UnixSocketListener.listen(`${dir}/h2.sock`, (s) => h2.emit("connection", s));
    const h1Listener = UnixSocketListener.listen(`${dir}/h1.sock`, (s) => h1.emit("connection", s));

    const session = http2.connect("http://localhost", {
      createConnection: () => connectUnix(`${dir}/h2.sock`),
    });
    for (const path of ["/a", "/b"]) {
      const req = session.request({ ":path": path });
      req.setEncoding("utf8");
      let body = "";
      req.on("data", (d: string) => body += d);
      await once(req, "end");
      assert.equal(body, `h2 ${path}`);
    }
    session.close();
    await once(session, "close");

    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request({
        path: "/c",
        createConnection: () => connectUnix(`${dir}/h1.sock`),
        headers: { connection: "close" },
      }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => text += d);
        res.on("end", () => resolve(text));
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(body, "h1 /c");
    await h2Listener.close();
    await h1Listener.close();
  });
});

Deno.test("a callback that throws drops that connection; accepting goes on", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    let calls = 0;
    const listener = UnixSocketListener.listen(path, (socket) => {
      if (++calls === 1) throw new Error("cannot take it");
      socket.end("second");
    });
    const first = connectUnix(path);
    first.on("error", () => {});
    assert.equal(await readAll(first), "");
    assert.equal(await readAll(connectUnix(path)), "second");
    await listener.close();
  });
});

Deno.test("a destroyed socket that stays referenced keeps no read buffer", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    const listener = UnixSocketListener.listen(path, (socket) => socket.end());
    // What node:http2 in Deno 2.9.3 does to every socket it served: keep it reachable.
    const kept: UnixSocket[] = [];
    const gc = await fullGc();
    gc();
    const before = Deno.memoryUsage().external;
    for (let i = 0; i < 64; i++) {
      const socket = connectUnix(path);
      kept.push(socket);
      await readAll(socket);
      if (!socket.closed) await once(socket, "close");
    }
    gc();
    const grown = Deno.memoryUsage().external - before;
    // 64 read buffers would be 16 MiB.
    assert.ok(grown < 4 << 20, `external memory grew by ${grown} bytes for ${kept.length} sockets`);
    await listener.close();
  });
});
