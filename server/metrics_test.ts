import assert from "node:assert/strict";
import * as http from "node:http";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Serving,
} from "../proto/gen/grpc/health/v1/health_pb.ts";
import { NotFoundError, toConnectError } from "./errdefs.ts";
import { silentLogger } from "./log.ts";
import { createMetrics, grpcCodeName, type Metrics, startMetricsServer } from "./metrics.ts";
import { connectUnix } from "./unix_socket.ts";

const VERSION = `grpc_type="unary",grpc_service="containerd.services.version.v1.Version",` +
  `grpc_method="Version"`;
const CHECK = `grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check"`;
const WATCH = `grpc_type="server_stream",grpc_service="grpc.health.v1.Health",grpc_method="Watch"`;

/** Stands in for the server's error interceptor: typed errors become their gRPC codes. */
const mapErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
};

function clients(metrics: Metrics) {
  const transport = createRouterTransport((router) => {
    router.service(Version, { version: () => ({ version: "v2.0.0", revision: "test" }) });
    router.service(Health, {
      check: (req) => {
        if (req.service === "missing") throw new NotFoundError(`service ${req.service}: not found`);
        return { status: Serving.SERVING };
      },
      async *watch(req) {
        yield { status: Serving.SERVING };
        if (req.service === "broken") {
          throw new ConnectError(`service ${req.service}: gone`, Code.NotFound);
        }
        yield { status: Serving.NOT_SERVING };
      },
    });
  }, { router: { interceptors: [metrics.interceptor, mapErrors] } });
  return { version: createClient(Version, transport), health: createClient(Health, transport) };
}

async function callAll(metrics: Metrics): Promise<void> {
  const { version, health } = clients(metrics);
  assert.deepEqual((await version.version({})).version, "v2.0.0");
  await health.check({ service: "" });
  const err = await health.check({ service: "missing" }).then(() => null, (e) => e);
  assert(err instanceof ConnectError && err.code === Code.NotFound, `got ${err}`);
  const statuses = [];
  for await (const res of health.watch({ service: "" })) statuses.push(res.status);
  assert.deepEqual(statuses, [Serving.SERVING, Serving.NOT_SERVING]);
  const streamErr = await (async () => {
    for await (const _ of health.watch({ service: "broken" })) { /* drain */ }
  })().then(() => null, (e) => e);
  assert(streamErr instanceof ConnectError && streamErr.code === Code.NotFound, `${streamErr}`);
}

Deno.test("interceptor counts unary OK, unary error and server streams", async () => {
  const metrics = createMetrics({ histogram: true, processMetrics: false });
  await callAll(metrics);
  const text = await metrics.registry.metrics();
  const expected = [
    `grpc_server_started_total{${VERSION}} 1`,
    `grpc_server_handled_total{${VERSION},grpc_code="OK"} 1`,
    `grpc_server_msg_received_total{${VERSION}} 1`,
    `grpc_server_msg_sent_total{${VERSION}} 1`,
    `grpc_server_started_total{${CHECK}} 2`,
    `grpc_server_handled_total{${CHECK},grpc_code="OK"} 1`,
    `grpc_server_handled_total{${CHECK},grpc_code="NotFound"} 1`,
    `grpc_server_msg_received_total{${CHECK}} 2`,
    `grpc_server_msg_sent_total{${CHECK}} 1`,
    `grpc_server_started_total{${WATCH}} 2`,
    `grpc_server_handled_total{${WATCH},grpc_code="OK"} 1`,
    `grpc_server_handled_total{${WATCH},grpc_code="NotFound"} 1`,
    `grpc_server_msg_received_total{${WATCH}} 2`,
    `grpc_server_msg_sent_total{${WATCH}} 3`,
    `grpc_server_handling_seconds_count{${VERSION}} 1`,
    `grpc_server_handling_seconds_count{${CHECK}} 2`,
    `grpc_server_handling_seconds_count{${WATCH}} 2`,
  ];
  const lines = new Set(text.split("\n"));
  for (const line of expected) assert(lines.has(line), `missing ${line} in:\n${text}`);
  assert.match(text, /grpc_server_handling_seconds_bucket\{le="0\.005",grpc_type="unary"/);
  assert.deepEqual(metrics.inFlight(), 0);
  assert(!text.includes("process_"), "processMetrics: false adds no process metrics");
});

Deno.test("histogram is off by default, as containerd's grpc_histogram", async () => {
  const metrics = createMetrics({ processMetrics: false });
  assert.deepEqual(metrics.histogram, false);
  await callAll(metrics);
  const text = await metrics.registry.metrics();
  assert(!text.includes("grpc_server_handling_seconds"), text);
  assert(text.includes(`grpc_server_handled_total{${CHECK},grpc_code="NotFound"} 1`), text);
});

Deno.test("a server stream the client abandons counts as Canceled", async () => {
  const metrics = createMetrics({ processMetrics: false });
  const { health } = clients(metrics);
  for await (const _ of health.watch({ service: "" })) break;
  // The server side learns of the cancel asynchronously.
  for (let i = 0; i < 100 && metrics.inFlight() > 0; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.deepEqual(metrics.inFlight(), 0);
  const text = await metrics.registry.metrics();
  assert(text.includes(`grpc_server_handled_total{${WATCH},grpc_code="Canceled"} 1`), text);
});

Deno.test("register creates zero series for every method and code", async () => {
  const metrics = createMetrics({ histogram: true, processMetrics: false });
  metrics.register(Health);
  const text = await metrics.registry.metrics();
  const lines = new Set(text.split("\n"));
  for (
    const line of [
      `grpc_server_started_total{${CHECK}} 0`,
      `grpc_server_started_total{${WATCH}} 0`,
      `grpc_server_handled_total{${WATCH},grpc_code="Unauthenticated"} 0`,
      `grpc_server_handled_total{${CHECK},grpc_code="OK"} 0`,
      `grpc_server_handling_seconds_count{${CHECK}} 0`,
    ]
  ) assert(lines.has(line), `missing ${line} in:\n${text}`);
});

Deno.test("grpcCodeName uses Go's names", () => {
  assert.deepEqual(grpcCodeName(0), "OK");
  assert.deepEqual(grpcCodeName(Code.NotFound), "NotFound");
  assert.deepEqual(grpcCodeName(Code.Unauthenticated), "Unauthenticated");
  assert.deepEqual(grpcCodeName(42), "Code(42)");
});

Deno.test("two metrics sets in one process do not collide", async () => {
  const a = createMetrics();
  const b = createMetrics();
  await callAll(a);
  assert((await a.registry.metrics()).includes(`grpc_server_started_total{${VERSION}} 1`));
  assert(!(await b.registry.metrics()).includes(`grpc_server_started_total{${VERSION}}`));
});

const PROCESS_METRICS = [
  "process_cpu_seconds_total",
  "process_start_time_seconds",
  "process_resident_memory_bytes",
  "process_open_fds",
  "nodejs_heap_size_used_bytes",
  "nodejs_heap_size_total_bytes",
];

Deno.test("metrics server on TCP answers /v1/metrics and 404 elsewhere", async () => {
  const metrics = createMetrics();
  await callAll(metrics);
  const server = await startMetricsServer({
    address: "127.0.0.1:0",
    metrics,
    log: silentLogger(),
  });
  try {
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    const res = await fetch(`http://${server.address}/v1/metrics`);
    assert.deepEqual(res.status, 200);
    assert.deepEqual(res.headers.get("content-type"), metrics.registry.contentType);
    const text = await res.text();
    for (const name of PROCESS_METRICS) assert.match(text, new RegExp(`^${name} \\d`, "m"));
    assert(text.includes(`grpc_server_handled_total{${CHECK},grpc_code="NotFound"} 1`));
    // The CPU total includes what was spent before the metrics were registered (boot).
    const cpu = Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1]);
    assert(cpu > 0, `process_cpu_seconds_total ${cpu}`);
    const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)?.[1]);
    assert(Math.abs(start - (Date.now() - performance.now()) / 1000) < 5, `start ${start}`);

    const missing = await fetch(`http://${server.address}/metrics`);
    assert.deepEqual(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`http://${server.address}/v1/metrics`, { method: "POST" });
    assert.deepEqual(post.status, 405);
    await post.body?.cancel();
  } finally {
    await server.close();
  }
});

function unixGet(
  socketPath: string,
  path: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    // Deno's own connection: node:net unix sockets close their descriptor twice (unix_socket.ts).
    const createConnection = () => connectUnix(socketPath);
    const req = http.request({ createConnection, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => body += chunk);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

Deno.test("metrics server on a unix socket answers /v1/metrics", async () => {
  const dir = await Deno.makeTempDir();
  const metrics = createMetrics();
  const socket = `${dir}/run/metrics.sock`;
  const server = await startMetricsServer({ address: socket, metrics, log: silentLogger() });
  try {
    assert.deepEqual(server.address, socket);
    assert.deepEqual((await Deno.stat(socket)).mode! & 0o777, 0o660);
    const res = await unixGet(socket, "/v1/metrics");
    assert.deepEqual(res.status, 200);
    for (const name of PROCESS_METRICS) assert.match(res.body, new RegExp(`^${name} \\d`, "m"));
    assert.deepEqual((await unixGet(socket, "/")).status, 404);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
