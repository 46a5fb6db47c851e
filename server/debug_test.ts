import assert from "node:assert/strict";
import * as http from "node:http";
import {
  debugVars,
  type DebugVarsSource,
  diagnosticDump,
  parseProfileSeconds,
  type PluginVar,
  startDebugServer,
} from "./debug.ts";
import { AddressInUseError, isUnixAddress, splitHostPort } from "./http_listen.ts";
import { silentLogger } from "./log.ts";
import { connectUnix } from "./unix_socket.ts";
import { type PluginRecord, PluginSet, pluginType } from "./plugin.ts";

const TestType = pluginType<object>("io.containerd.test.v1");

function record(id: string, status: PluginRecord["status"], error?: Error): PluginRecord {
  return {
    registration: { type: TestType, id, init: () => ({}) },
    uri: `${TestType.name}.${id}`,
    status,
    ...(error ? { error } : { instance: {} }),
    meta: { exports: {}, capabilities: [], platforms: [] },
    initMs: 1.25,
  };
}

function fixture(): DebugVarsSource {
  const plugins = new PluginSet();
  plugins.add(record("good", "ok"));
  plugins.add(record("broken", "error", new Error("open database: permission denied")));
  const started = Date.now() - 2500;
  return {
    vars: () =>
      debugVars({ started, plugins, inFlight: () => 3, extra: () => ({ root: "/var/lib/x" }) }),
  };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Uint8Array;
}

/**
 * GET over a unix socket or host:port with node:http (fetch cannot reach unix sockets). The
 * unix connection is Deno's own (connectUnix), never node:net's `socketPath`: the pinned Deno
 * closes those descriptors twice, which once made this file's `Deno.remove` fail with EBADF.
 */
function get(address: string, path: string): Promise<Reply> {
  const target: http.RequestOptions = isUnixAddress(address)
    ? { createConnection: () => connectUnix(address) }
    : { host: splitHostPort(address).host, port: splitHostPort(address).port };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, path, method: "GET" }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      res.on("end", () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
        let at = 0;
        for (const c of chunks) {
          body.set(c, at);
          at += c.byteLength;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const text = (reply: Reply) => new TextDecoder().decode(reply.body);

async function withServer(
  address: string,
  fn: (address: string) => Promise<void>,
): Promise<void> {
  const server = await startDebugServer({
    address,
    uid: 0,
    gid: 0,
    source: fixture(),
    log: silentLogger(),
  });
  try {
    await fn(server.address);
  } finally {
    await server.close();
  }
}

Deno.test("debugVars reports pid, uptime, memory, versions, in-flight RPCs and plugins", () => {
  const vars = fixture().vars();
  assert.equal(vars.pid, Deno.pid);
  assert.ok(typeof vars.uptimeSeconds === "number" && vars.uptimeSeconds >= 2.5);
  assert.equal(vars.rpcsInFlight, 3);
  assert.equal(vars.root, "/var/lib/x");
  assert.deepEqual(vars.versions, {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  });
  const memory = vars.memory as Deno.MemoryUsage;
  assert.ok(memory.rss > 0 && memory.heapUsed > 0);
  assert.deepEqual(vars.plugins as PluginVar[], [
    { uri: "io.containerd.test.v1.good", status: "ok", initMs: 1.25 },
    {
      uri: "io.containerd.test.v1.broken",
      status: "error",
      initMs: 1.25,
      error: "open database: permission denied",
    },
  ]);
});

Deno.test("diagnosticDump renders vars, memory and the plugin table", () => {
  const dump = diagnosticDump(fixture());
  assert.match(dump, /^containerd-ts diagnostic dump at /);
  assert.match(dump, new RegExp(`^pid: ${Deno.pid}$`, "m"));
  assert.match(dump, /^rpcsInFlight: 3$/m);
  assert.match(dump, /^ {2}rss +\d+ \(\d+\.\d MiB\)$/m);
  assert.match(dump, /^ {2}URI +STATUS +INIT\(ms\) +ERROR$/m);
  assert.match(dump, /^ {2}io\.containerd\.test\.v1\.good +ok +1\.3$/m);
  assert.match(
    dump,
    /^ {2}io\.containerd\.test\.v1\.broken +error +1\.3 +open database: permission denied$/m,
  );
});

Deno.test("parseProfileSeconds: default 30, integers 1..300 only", () => {
  assert.equal(parseProfileSeconds(null), 30);
  assert.equal(parseProfileSeconds("1"), 1);
  assert.equal(parseProfileSeconds("300"), 300);
  for (const bad of ["abc", "0", "301", "1.5", "-1", " 2"]) {
    assert.equal(typeof parseProfileSeconds(bad), "string", bad);
  }
});

Deno.test("debug server on TCP: vars, index, heap snapshot, cpu profile, errors", async () => {
  await withServer("127.0.0.1:0", async (address) => {
    assert.match(address, /^127\.0\.0\.1:\d+$/);

    const vars = await get(address, "/debug/vars");
    assert.equal(vars.status, 200);
    assert.match(String(vars.headers["content-type"]), /^application\/json/);
    const json = JSON.parse(text(vars));
    for (const key of ["pid", "uptimeSeconds", "memory", "versions", "rpcsInFlight", "plugins"]) {
      assert.ok(key in json, `missing ${key}`);
    }
    const young = json.heapSpaces.new_space;
    assert.ok(young.used > 0 && young.used <= young.size, JSON.stringify(young));
    assert.ok(json.heapSpaces.old_space.physical > 0, JSON.stringify(json.heapSpaces));

    const index = await get(address, "/debug/pprof/");
    assert.equal(index.status, 200);
    for (const word of ["/debug/pprof/heap", "/debug/pprof/profile", "goroutine", "mutex"]) {
      assert.ok(text(index).includes(word), `index lacks ${word}`);
    }

    const goroutine = await get(address, "/debug/pprof/goroutine");
    assert.equal(goroutine.status, 501);
    assert.match(text(goroutine), /goroutine: not supported: .*Go runtime/);
    assert.equal((await get(address, "/debug/pprof/nothing")).status, 404);
    assert.equal((await get(address, "/other")).status, 404);

    const heap = await get(address, "/debug/pprof/heap");
    if (heap.status === 501) {
      assert.ok(text(heap).length > 0, "501 must say why");
    } else {
      assert.equal(heap.status, 200);
      assert.equal(heap.headers["content-type"], "application/octet-stream");
      assert.match(String(heap.headers["content-disposition"]), /\.heapsnapshot"$/);
      const snapshot = JSON.parse(text(heap));
      assert.ok("snapshot" in snapshot && Array.isArray(snapshot.nodes));
    }

    const profile = await get(address, "/debug/pprof/profile?seconds=1");
    assert.equal(profile.status, 200, text(profile));
    assert.match(String(profile.headers["content-disposition"]), /\.cpuprofile"$/);
    const cpu = JSON.parse(text(profile));
    assert.ok(Array.isArray(cpu.nodes) && cpu.nodes.length > 0);
    assert.ok(cpu.endTime - cpu.startTime >= 900_000, "profile spans about a second");

    for (const bad of ["abc", "0", "301"]) {
      const reply = await get(address, `/debug/pprof/profile?seconds=${bad}`);
      assert.equal(reply.status, 400, bad);
      assert.match(text(reply), /^profile: seconds must be/);
    }

    const cmdline = await get(address, "/debug/pprof/cmdline");
    assert.equal(cmdline.status, 200);
    assert.ok(text(cmdline).split("\0").length > 1);
  });
});

Deno.test("a second CPU profile while one runs is refused with 409", async () => {
  await withServer("127.0.0.1:0", async (address) => {
    const first = get(address, "/debug/pprof/profile?seconds=1");
    await new Promise((r) => setTimeout(r, 100));
    const second = await get(address, "/debug/pprof/profile?seconds=1");
    assert.equal(second.status, 409);
    assert.equal((await first).status, 200);
  });
});

Deno.test("closing the server stops a running CPU profile at once", async () => {
  const server = await startDebugServer({
    address: "127.0.0.1:0",
    uid: 0,
    gid: 0,
    source: fixture(),
    log: silentLogger(),
  });
  const long = get(server.address, "/debug/pprof/profile?seconds=300").then(
    (reply) => reply.status,
    (err: Error) => err.message,
  );
  await new Promise((r) => setTimeout(r, 100));
  const begin = Date.now();
  await server.close();
  assert.ok(Date.now() - begin < 2000, "close waited for the profile");
  const outcome = await long;
  assert.notEqual(outcome, 200, "no profile is sent after close");
});

Deno.test("debug server on a unix socket: dir 0711, socket 0660, removed on close", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const socket = `${dir}/run/containerd/debug.sock`;
    await withServer(socket, async (address) => {
      assert.equal(address, socket);
      assert.equal((await Deno.stat(`${dir}/run/containerd`)).mode! & 0o777, 0o711);
      const stat = await Deno.lstat(socket);
      assert.ok(stat.isSocket);
      assert.equal(stat.mode! & 0o777, 0o660);
      const vars = await get(address, "/debug/vars");
      assert.equal(vars.status, 200);
      assert.equal(JSON.parse(text(vars)).rpcsInFlight, 3);
    });
    await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a stale socket is replaced", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const socket = `${dir}/debug.sock`;
    // A listener in another process killed with SIGKILL leaves its socket file behind.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${JSON.stringify(socket)} });` +
        `console.log("ready"); setInterval(() => {}, 1000);`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value).trim(), "ready");
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    assert.ok((await Deno.lstat(socket)).isSocket, "stale socket left behind");

    await withServer(socket, async (address) => {
      assert.equal((await get(address, "/debug/vars")).status, 200);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a live socket or a non-socket file is refused and left alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const socket = `${dir}/debug.sock`;
    const live = Deno.listen({ transport: "unix", path: socket });
    try {
      await assert.rejects(
        startDebugServer({
          address: socket,
          uid: 0,
          gid: 0,
          source: fixture(),
          log: silentLogger(),
        }),
        (err: unknown) => err instanceof AddressInUseError && /another process/.test(err.message),
      );
      const accepted = live.accept();
      const conn = await Deno.connect({ transport: "unix", path: socket });
      (await accepted).close();
      conn.close();
    } finally {
      live.close();
    }

    const file = `${dir}/not-a-socket`;
    await Deno.writeTextFile(file, "keep me");
    await assert.rejects(
      startDebugServer({ address: file, uid: 0, gid: 0, source: fixture(), log: silentLogger() }),
      (err: unknown) => err instanceof AddressInUseError && /not a socket/.test(err.message),
    );
    assert.equal(await Deno.readTextFile(file), "keep me");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("splitHostPort and isUnixAddress", () => {
  assert.deepEqual(splitHostPort("127.0.0.1:1338"), { host: "127.0.0.1", port: 1338 });
  assert.deepEqual(splitHostPort("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(splitHostPort(":9090"), { host: "", port: 9090 });
  assert.throws(() => splitHostPort("localhost"), /missing port/);
  assert.throws(() => splitHostPort("::1:80"), /brackets/);
  assert.throws(() => splitHostPort("host:http"), /bad port/);
  assert.ok(isUnixAddress("/run/containerd/debug.sock"));
  assert.ok(isUnixAddress("run/debug.sock"));
  assert.ok(!isUnixAddress("localhost:1338"));
});
