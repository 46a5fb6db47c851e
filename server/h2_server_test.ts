import assert from "node:assert/strict";
import http2 from "node:http2";
import { Buffer } from "node:buffer";
import { H2_ERROR, H2Server, type H2ServerOptions, type H2Session } from "./h2_server.ts";
import { concatBytes } from "./bytes.ts";
import { encodeHeaders, HpackDecoder } from "./hpack.ts";
import { connectUnix, UnixSocketListener } from "./unix_socket.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const TYPE = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
};

interface Served {
  socket: string;
  server: H2Server;
  sessions: H2Session[];
  close(): Promise<void>;
}

async function serve(options: H2ServerOptions = {}): Promise<Served> {
  const dir = await Deno.makeTempDir({ prefix: "h2-test-" });
  const socket = `${dir}/h2.sock`;
  const server = new H2Server(options);
  const sessions: H2Session[] = [];
  const listener = UnixSocketListener.listenConns(socket, (conn) => {
    sessions.push(server.serve(conn));
  });
  return {
    socket,
    server,
    sessions,
    async close() {
      await listener.close();
      await Promise.all(
        sessions.filter((s) => !s.closed).map((s) =>
          new Promise<void>((resolve) => {
            s.once("close", () => resolve());
            s.destroy();
          })
        ),
      );
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Echo server: answers each request with its path and body length, plus a trailer. */
function echo(server: H2Server): void {
  server.on("stream", (stream, headers) => {
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => bytes += chunk.length);
    stream.on("end", () => {
      stream.respond({ ":status": "200", "x-path": headers[":path"]! }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "x-bytes": String(bytes) }));
      stream.end(new TextEncoder().encode(`ok ${bytes}`));
    });
  });
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Uint8Array;
}

/** A hand-driven HTTP/2 client for what node's client will not send. */
/**
 * Hand each frame whole in `data` to `onFrame` (its payload a view into `data`); returns the
 * bytes of a frame not yet whole.
 */
function takeFrames(
  data: Uint8Array,
  onFrame: (frame: Frame) => void,
): Uint8Array<ArrayBuffer> {
  let at = 0;
  while (data.length - at >= 9) {
    const length = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
    if (data.length - at < 9 + length) break;
    const id = new DataView(data.buffer, data.byteOffset + at + 5, 4).getUint32(0) & 0x7fffffff;
    onFrame({
      type: data[at + 3]!,
      flags: data[at + 4]!,
      id,
      payload: data.subarray(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return data.slice(at);
}

class RawClient {
  readonly conn: Deno.Conn;
  readonly frames: Frame[] = [];
  closed = false;
  #wake: (() => void) | undefined;
  readonly decoder = new HpackDecoder();

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    void this.#read();
  }

  static async open(socket: string, preface = true): Promise<RawClient> {
    const client = new RawClient(await Deno.connect({ transport: "unix", path: socket }));
    if (preface) {
      await client.write(PREFACE);
      await client.send(TYPE.SETTINGS, 0, 0);
    }
    return client;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(1 << 16);
    let data = new Uint8Array(0);
    for (;;) {
      let n: number | null;
      try {
        n = await this.conn.read(buf);
      } catch {
        n = null;
      }
      if (n === null) break;
      data = takeFrames(
        concatBytes([data, buf.subarray(0, n)]),
        (f) => this.frames.push({ ...f, payload: f.payload.slice() }),
      );
      this.#wake?.();
    }
    this.closed = true;
    this.#wake?.();
  }

  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.conn.write(bytes.subarray(at));
  }

  send(
    type: number,
    flags: number,
    id: number,
    payload: Uint8Array = new Uint8Array(0),
  ): Promise<void> {
    const f = new Uint8Array(9 + payload.length);
    f[0] = payload.length >> 16;
    f[1] = (payload.length >> 8) & 0xff;
    f[2] = payload.length & 0xff;
    f[3] = type;
    f[4] = flags;
    new DataView(f.buffer).setUint32(5, id);
    f.set(payload, 9);
    return this.write(f);
  }

  request(id: number, path: string, endStream: boolean): Promise<void> {
    const block = encodeHeaders([[":method", "POST"], [":scheme", "http"], [":path", path], [
      ":authority",
      "localhost",
    ]]);
    return this.send(TYPE.HEADERS, 0x4 | (endStream ? 1 : 0), id, block);
  }

  /** Wait for the first frame matching `match` (removing it), or the connection's end. */
  async next(match: (f: Frame) => boolean, timeoutMs = 3000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error("timed out waiting for a frame");
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  }

  /** Resolves when the server closed the connection. */
  async ended(timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error("the server kept the connection open");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

function goawayCode(f: Frame | undefined): number | undefined {
  return f === undefined ? undefined : new DataView(f.payload.buffer).getUint32(4);
}

function nodeSession(socket: string): http2.ClientHttp2Session {
  return http2.connect("http://localhost", { createConnection: () => connectUnix(socket) });
}

function nodeRequest(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
): Promise<
  { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }
> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": path });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => headers = h);
    req.on("trailers", (t) => trailers = t);
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("end", () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
    req.end(body);
  });
}

Deno.test("H2Server answers node's client: headers, body, trailers, many concurrent streams", async () => {
  const s = await serve({ streamWindowBytes: 1 << 20, connectionWindowBytes: 4 << 20 });
  echo(s.server);
  const session = nodeSession(s.socket);
  try {
    const results = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => nodeRequest(session, `/p/${i}`, new Uint8Array(i * 100)),
      ),
    );
    results.forEach((r, i) => {
      assert.equal(r.headers[":status"], 200);
      assert.equal(r.headers["x-path"], `/p/${i}`);
      assert.equal(r.body.toString(), `ok ${i * 100}`);
      assert.equal(r.trailers["x-bytes"], String(i * 100));
    });
  } finally {
    session.destroy();
    await s.close();
  }
});

Deno.test("H2Server: uploads and downloads larger than every window arrive whole", async () => {
  // Default 64 KiB windows on both sides: 3 MiB each way needs many WINDOW_UPDATEs.
  const s = await serve();
  const size = 3 << 20;
  s.server.on("stream", (stream) => {
    let received = 0;
    let sum = 0;
    stream.on("data", (chunk: Buffer) => {
      received += chunk.length;
      for (const b of chunk) sum = (sum + b) % 65_521;
    });
    stream.on("end", async () => {
      stream.respond({ ":status": "200", "x-received": String(received), "x-sum": String(sum) });
      const block = new Uint8Array(256 * 1024).map((_, i) => i % 251);
      let writes = 0;
      let waited = 0;
      for (let sent = 0; sent < size; sent += block.length) {
        writes++;
        if (!stream.write(block)) {
          waited++;
          await new Promise((resolve) => stream.once("drain", resolve));
        }
      }
      stream.end();
      assert.equal(writes, size / block.length);
      assert.ok(waited > 0, "write said wait at least once");
    });
  });
  const session = nodeSession(s.socket);
  try {
    const upload = new Uint8Array(size).map((_, i) => i % 7);
    let expectedSum = 0;
    for (const b of upload) expectedSum = (expectedSum + b) % 65_521;
    const r = await nodeRequest(session, "/big", upload);
    assert.equal(r.headers["x-received"], String(size));
    assert.equal(r.headers["x-sum"], String(expectedSum));
    assert.equal(r.body.length, size);
    for (let i = 0; i < r.body.length; i += 4099) assert.equal(r.body[i], (i % (256 * 1024)) % 251);
  } finally {
    session.destroy();
    await s.close();
  }
});

Deno.test("H2Server: sessions whose writes wait at once never share a join buffer", async () => {
  const s = await serve();
  const size = 2 << 20;
  const pattern = (k: number, i: number) => (k * 31 + i) % 251;
  s.server.on("stream", (stream, headers) => {
    const k = Number(String(headers[":path"]).slice(1));
    stream.respond({ ":status": "200" });
    // 8 KiB writes, each a DATA payload of its own: every socket write is a join.
    for (let at = 0; at < size; at += 8192) {
      stream.write(new Uint8Array(8192).map((_, i) => pattern(k, at + i)));
    }
    stream.end();
  });
  // Raw clients granting 16 MiB windows and reading nothing at first: the server's writes
  // fill the socket buffers and wait, each holding its join buffer, while the others write.
  const settings = new Uint8Array(6);
  new DataView(settings.buffer).setUint16(0, 4); // SETTINGS_INITIAL_WINDOW_SIZE
  new DataView(settings.buffer).setUint32(2, 16 << 20);
  const grow = new Uint8Array(4);
  new DataView(grow.buffer).setUint32(0, 16 << 20);
  const frameOf = (type: number, flags: number, id: number, payload: Uint8Array) => {
    const f = new Uint8Array(9 + payload.length);
    new DataView(f.buffer).setUint32(0, payload.length << 8 | type);
    f[4] = flags;
    new DataView(f.buffer).setUint32(5, id);
    f.set(payload, 9);
    return f;
  };
  const conns = await Promise.all(
    Array.from({ length: 4 }, () => Deno.connect({ transport: "unix", path: s.socket })),
  );
  try {
    await Promise.all(conns.map(async (conn, k) => {
      const hello = concatBytes([
        PREFACE,
        frameOf(TYPE.SETTINGS, 0, 0, settings),
        frameOf(TYPE.WINDOW_UPDATE, 0, 0, grow),
        frameOf(
          TYPE.HEADERS,
          0x5,
          1,
          encodeHeaders([[":method", "GET"], [":scheme", "http"], [":path", `/${k}`], [
            ":authority",
            "localhost",
          ]]),
        ),
      ]);
      for (let at = 0; at < hello.length;) at += await conn.write(hello.subarray(at));
    }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const waiting = s.sessions.filter((session) => session.unsentBytes > 0).length;
    assert.ok(waiting >= 2, `sessions with writes waiting: ${waiting}`);
    await Promise.all(conns.map(async (conn, k) => {
      const body = new Uint8Array(size);
      let got = 0;
      let ended = false;
      let carry = new Uint8Array(0);
      const buf = new Uint8Array(1 << 16);
      while (!ended) {
        const n = await conn.read(buf);
        if (n === null) throw new Error(`connection ${k} ended after ${got} bytes`);
        carry = takeFrames(concatBytes([carry, buf.subarray(0, n)]), (f) => {
          if (f.type !== TYPE.DATA || f.id !== 1) return;
          body.set(f.payload, got);
          got += f.payload.length;
          if (f.flags & 1) ended = true;
        });
      }
      assert.equal(got, size, `connection ${k}`);
      for (let i = 0; i < size; i++) {
        if (body[i] !== pattern(k, i)) assert.fail(`connection ${k}: byte ${i} is ${body[i]}`);
      }
    }));
  } finally {
    for (const conn of conns) conn.close();
    await s.close();
  }
});

Deno.test("H2Server: a paused stream holds its window; resume delivers and grants it back", async () => {
  const s = await serve();
  let resumed = false;
  s.server.on("stream", (stream) => {
    let received = 0;
    stream.pause();
    setTimeout(() => {
      resumed = true;
      stream.resume();
    }, 200);
    stream.on("data", (chunk: Buffer) => {
      assert.ok(resumed, "no data while paused");
      received += chunk.length;
    });
    stream.on("end", () => {
      stream.respond({ ":status": "200", "x-received": String(received) }, { endStream: true });
    });
  });
  const session = nodeSession(s.socket);
  try {
    const r = await nodeRequest(session, "/paused", new Uint8Array(200_000));
    assert.equal(r.headers["x-received"], "200000");
  } finally {
    session.destroy();
    await s.close();
  }
});

Deno.test("H2Server: settings are acked, PING is answered, header blocks may continue", async () => {
  const s = await serve({ streamWindowBytes: 1 << 20, maxConcurrentStreams: 7 });
  echo(s.server);
  const c = await RawClient.open(s.socket);
  try {
    const settings = await c.next((f) => f.type === TYPE.SETTINGS && f.flags === 0);
    const values = new Map<number, number>();
    const view = new DataView(settings!.payload.buffer);
    for (let at = 0; at < settings!.payload.length; at += 6) {
      values.set(view.getUint16(at), view.getUint32(at + 2));
    }
    assert.equal(values.get(4), 1 << 20, "SETTINGS_INITIAL_WINDOW_SIZE");
    assert.equal(values.get(3), 7, "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert.ok(await c.next((f) => f.type === TYPE.SETTINGS && f.flags === 1), "our SETTINGS acked");
    await c.send(TYPE.PING, 0, 0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const pong = await c.next((f) => f.type === TYPE.PING);
    assert.equal(pong!.flags, 1);
    assert.deepEqual([...pong!.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
    // One header block split over HEADERS and two CONTINUATIONs.
    const block = encodeHeaders([[":method", "POST"], [":scheme", "http"], [
      ":path",
      "/continued/" + "x".repeat(100),
    ]]);
    await c.send(TYPE.HEADERS, 0x1, 1, block.subarray(0, 10));
    await c.send(TYPE.CONTINUATION, 0, 1, block.subarray(10, 50));
    await c.send(TYPE.CONTINUATION, 0x4, 1, block.subarray(50));
    const head = await c.next((f) => f.type === TYPE.HEADERS && f.id === 1);
    const fields = new Map(c.decoder.decode(head!.payload));
    assert.equal(fields.get("x-path"), "/continued/" + "x".repeat(100));
    const data = await c.next((f) => f.type === TYPE.DATA && f.id === 1);
    assert.equal(new TextDecoder().decode(data!.payload), "ok 0");
    const trailers = await c.next((f) => f.type === TYPE.HEADERS && f.id === 1);
    assert.equal(trailers!.flags & 0x1, 1, "trailers end the stream");
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("H2Server: protocol errors end the connection with GOAWAY and the right code", async () => {
  const s = await serve();
  echo(s.server);
  try {
    // Not HTTP/2 at all.
    const http1 = await RawClient.open(s.socket, false);
    await http1.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal(
      goawayCode(await http1.next((f) => f.type === TYPE.GOAWAY)),
      H2_ERROR.PROTOCOL_ERROR,
    );
    await http1.ended();
    // A frame larger than the 16 KiB we accept.
    const big = await RawClient.open(s.socket);
    await big.request(1, "/x", false);
    await big.send(TYPE.DATA, 0, 1, new Uint8Array(20_000));
    assert.equal(
      goawayCode(await big.next((f) => f.type === TYPE.GOAWAY)),
      H2_ERROR.FRAME_SIZE_ERROR,
    );
    await big.ended();
    // A header block that is not HPACK.
    const garbage = await RawClient.open(s.socket);
    await garbage.send(TYPE.HEADERS, 0x5, 1, new Uint8Array([0x80]));
    assert.equal(
      goawayCode(await garbage.next((f) => f.type === TYPE.GOAWAY)),
      H2_ERROR.COMPRESSION_ERROR,
    );
    await garbage.ended();
    // DATA beyond the window of a paused stream (64 KiB, never granted back; the
    // connection's is wider): that stream is reset, the connection lives on.
    const wide = await serve({ connectionWindowBytes: 1 << 20 });
    wide.server.on("stream", (stream, headers) => {
      if (headers[":path"] === "/greedy") stream.pause();
    });
    echo(wide.server);
    const greedy = await RawClient.open(wide.socket);
    await greedy.request(1, "/greedy", false);
    for (let i = 0; i < 5; i++) await greedy.send(TYPE.DATA, 0, 1, new Uint8Array(16_000));
    const rst = await greedy.next((f) => f.type === TYPE.RST_STREAM && f.id === 1);
    assert.equal(new DataView(rst!.payload.buffer).getUint32(0), H2_ERROR.FLOW_CONTROL_ERROR);
    await greedy.request(3, "/after", true);
    assert.ok(await greedy.next((f) => f.type === TYPE.HEADERS && f.id === 3));
    greedy.close();
    await wide.close();
  } finally {
    await s.close();
  }
});

Deno.test("H2Server: a client reset closes the stream; extra streams are refused", async () => {
  const s = await serve({ maxConcurrentStreams: 2 });
  const closed: number[] = [];
  s.server.on("stream", (stream) => {
    stream.on("close", () => closed.push(stream.id));
  });
  const c = await RawClient.open(s.socket);
  try {
    await c.request(1, "/a", false);
    await c.request(3, "/b", false);
    await c.request(5, "/c", false);
    const refused = await c.next((f) => f.type === TYPE.RST_STREAM && f.id === 5);
    assert.equal(new DataView(refused!.payload.buffer).getUint32(0), H2_ERROR.REFUSED_STREAM);
    await c.send(TYPE.RST_STREAM, 0, 1, new Uint8Array([0, 0, 0, H2_ERROR.CANCEL]));
    for (let i = 0; i < 50 && closed.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(closed, [1]);
    assert.equal(s.sessions[0]!.streamCount, 1);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("H2Server: HEADERS or DATA after the client ended a stream reset it STREAM_CLOSED and close it", async () => {
  const s = await serve();
  const closed: number[] = [];
  s.server.on("stream", (stream, headers) => {
    stream.on("data", () => {});
    stream.on("close", () => closed.push(stream.id));
    // "/slow" never answers: the client's extra frames arrive while it runs.
    if (headers[":path"] !== "/slow") {
      stream.on("end", () => {
        stream.respond({ ":status": "200" });
        stream.end(new TextEncoder().encode("ok"));
      });
    }
  });
  const c = await RawClient.open(s.socket);
  try {
    await c.request(1, "/slow", true);
    await c.request(1, "/slow", true); // a second HEADERS on the ended stream
    const reset1 = await c.next((f) => f.type === TYPE.RST_STREAM && f.id === 1);
    assert.equal(new DataView(reset1!.payload.buffer).getUint32(0), H2_ERROR.STREAM_CLOSED);
    await c.request(3, "/slow", true);
    await c.send(TYPE.DATA, 0, 3, new Uint8Array([1, 2, 3])); // DATA on the ended stream
    const reset3 = await c.next((f) => f.type === TYPE.RST_STREAM && f.id === 3);
    assert.equal(new DataView(reset3!.payload.buffer).getUint32(0), H2_ERROR.STREAM_CLOSED);
    for (let i = 0; i < 50 && closed.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(closed.sort(), [1, 3]);
    assert.equal(s.sessions[0]!.streamCount, 0);
    // The connection goes on: its HPACK table stayed in step (the second block was decoded).
    await c.request(5, "/fast", true);
    const answer = await c.next((f) => f.type === TYPE.DATA && f.id === 5);
    assert.equal(new TextDecoder().decode(answer!.payload), "ok");
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("H2Server: close() sends GOAWAY, lets running streams finish, then closes", async () => {
  const s = await serve();
  let finish: (() => void) | undefined;
  s.server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      finish = () => {
        stream.respond({ ":status": "200" });
        stream.end(new TextEncoder().encode("late"));
      };
    });
  });
  const c = await RawClient.open(s.socket);
  try {
    await c.request(1, "/slow", true);
    while (finish === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    s.sessions[0]!.close();
    const goaway = await c.next((f) => f.type === TYPE.GOAWAY);
    assert.equal(goawayCode(goaway), H2_ERROR.NO_ERROR);
    assert.equal(new DataView(goaway!.payload.buffer).getUint32(0), 1, "last stream id");
    // A stream started after the GOAWAY is ignored; the running one still gets its answer.
    await c.request(3, "/late", true);
    finish();
    const data = await c.next((f) => f.type === TYPE.DATA && f.id === 1);
    assert.equal(new TextDecoder().decode(data!.payload), "late");
    await c.ended();
    assert.equal(c.frames.some((f) => f.id === 3), false);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("H2Server: many requests in one read are answered in parts, all of them", async () => {
  const s = await serve();
  // Record in which event-loop turn each request arrived: a read of 40 requests is served in
  // parts of 10, each part's handlers running before the next part is parsed.
  let turn = 0;
  const turns: number[] = [];
  const tick = () => {
    turn++;
    if (turns.length < 40) setImmediate(tick);
  };
  echo(s.server);
  s.server.on("stream", () => turns.push(turn));
  const c = await RawClient.open(s.socket);
  try {
    await c.next((f) => f.type === TYPE.SETTINGS && f.flags === 0);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const block = encodeHeaders([[":method", "POST"], [":scheme", "http"], [
        ":path",
        `/r/${i}`,
      ]]);
      const f = new Uint8Array(9 + block.length);
      f[2] = block.length;
      f[3] = TYPE.HEADERS;
      f[4] = 0x5;
      new DataView(f.buffer).setUint32(5, 2 * i + 1);
      f.set(block, 9);
      frames.push(f);
    }
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
    setImmediate(tick);
    await c.write(all);
    for (let i = 0; i < 40; i++) {
      const head = await c.next((f) =>
        f.type === TYPE.HEADERS && f.id === 2 * i + 1 && f.flags === 4
      );
      assert.equal(new Map(c.decoder.decode(head!.payload)).get("x-path"), `/r/${i}`);
      assert.ok(
        await c.next((f) => f.type === TYPE.HEADERS && f.id === 2 * i + 1 && f.flags === 5),
      );
    }
    assert.equal(turns.length, 40);
    assert.notEqual(turns[0], turns[39], "all 40 requests were parsed in one turn");
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("H2Server: a client that sends but does not read is no longer read from", async () => {
  const s = await serve();
  const conn = await Deno.connect({ transport: "unix", path: s.socket });
  // 12 MiB of PINGs (17 bytes each), sent while the client reads nothing: every one asks for a
  // 17-byte answer that cannot leave.
  const pings = 12 * 1024 * 1024 / 17 | 0;
  const bytes = new Uint8Array(PREFACE.length + 9 + pings * 17);
  bytes.set(PREFACE);
  let at = PREFACE.length + 9; // SETTINGS, empty: type 4 at offset 3
  bytes[PREFACE.length + 3] = TYPE.SETTINGS;
  for (let i = 0; i < pings; i++, at += 17) {
    bytes[at + 2] = 8;
    bytes[at + 3] = TYPE.PING;
    new DataView(bytes.buffer).setUint32(at + 9, i);
  }
  let sent = false;
  const sending = (async () => {
    for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
    sent = true;
  })();
  try {
    let mostUnsent = 0;
    for (let i = 0; i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      mostUnsent = Math.max(mostUnsent, s.sessions[0]?.unsentBytes ?? 0);
    }
    assert.equal(sent, false, "the server read every PING while its answers could not leave");
    assert.ok(mostUnsent <= 5 << 20, `answers queued: ${mostUnsent} bytes`);
    // Once the client reads, every PING is answered and the rest of its bytes go out.
    let acks = 0;
    let carry = new Uint8Array(0);
    const buf = new Uint8Array(1 << 16);
    while (acks < pings) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`connection ended after ${acks} of ${pings} PING answers`);
      carry = takeFrames(concatBytes([carry, buf.subarray(0, n)]), (f) => {
        if (f.type === TYPE.PING && f.flags === 1) acks++;
      });
    }
    await sending;
    assert.equal(acks, pings);
  } finally {
    conn.close();
    await sending.catch(() => {});
    await s.close();
  }
});
