/**
 * Prometheus metrics: per-RPC counters in go-grpc-prometheus' shape, process metrics, and the
 * `/v1/metrics` HTTP endpoint.
 *
 * containerd exposes `grpc_server_started_total`, `grpc_server_handled_total`,
 * `grpc_server_msg_received_total`, `grpc_server_msg_sent_total` and, when `[metrics]
 * grpc_histogram = true`, `grpc_server_handling_seconds`, all labelled by `grpc_type`,
 * `grpc_service` (the full proto name) and `grpc_method`; `grpc_code` is the gRPC code name
 * (`OK`, `NotFound`, ...). Dashboards built for containerd read ours unchanged. Each
 * {@link createMetrics} call owns its own prom-client Registry (never the global default), so
 * several daemons or tests in one process do not collide.
 *
 * Process metrics come from prom-client's `collectDefaultMetrics`, which works under Deno
 * 2.9.3 (checked: `process_*` from process.cpuUsage and /proc, `nodejs_heap_*`,
 * event-loop lag, `nodejs_version_info` with Deno's Node-compat version). One gap: Deno emits
 * no `gc` performance entries, so `nodejs_gc_duration_seconds` stays an empty histogram.
 *
 * @example
 * ```ts
 * import { createMetrics, startMetricsServer } from "./metrics.ts";
 * import { silentLogger } from "./log.ts";
 * const metrics = createMetrics({ histogram: true });
 * // pass metrics.interceptor to the Connect router's interceptors
 * const server = await startMetricsServer({ address: "127.0.0.1:0", metrics, log: silentLogger() });
 * await server.close();
 * ```
 * @module
 */
import * as http from "node:http";
import process from "node:process";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import type { DescService } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import { Code, codeOf } from "./errdefs.ts";
import { listenHttp } from "./http_listen.ts";
import type { Logger } from "./log.ts";

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /**
   * Record `grpc_server_handling_seconds`. Default false, as containerd's `grpc_histogram`:
   * a histogram adds 14 series per method, so it is opt-in there and here.
   */
  histogram?: boolean;
  /** Add prom-client's process and Node-compat runtime metrics. Default true. */
  processMetrics?: boolean;
}

/** The daemon's metrics: one registry and the interceptor that feeds it. */
export interface Metrics {
  /** This daemon's registry; `/v1/metrics` renders it. Plugins may add their own metrics. */
  readonly registry: Registry;
  /** Server-side Connect interceptor counting every RPC, unary and streaming. */
  readonly interceptor: Interceptor;
  /** Whether `grpc_server_handling_seconds` is recorded. */
  readonly histogram: boolean;
  /**
   * Create the zero-valued series of every method of `service` (every code for handled), as
   * go-grpc-prometheus' Register does, so a never-called method still shows up as 0.
   */
  register(service: DescService): void;
  /** RPCs started and not yet handled; /debug/vars reports it. */
  inFlight(): number;
}

/**
 * A plugin instance that adds its own metrics to the daemon's registry. The server calls
 * {@link MetricsContributor.registerMetrics} once, right after creating the registry, for
 * every loaded plugin instance that has it (found with {@link isMetricsContributor}); the
 * plugin keeps whatever it registered up to date, typically from a `collect` hook run on
 * each scrape.
 *
 * @example
 * ```ts
 * import { Gauge, type Registry } from "prom-client";
 * import { isMetricsContributor, type MetricsContributor } from "./metrics.ts";
 * const plugin: MetricsContributor = {
 *   registerMetrics(registry: Registry) {
 *     new Gauge({ name: "example_up", help: "Always 1.", registers: [registry] }).set(1);
 *   },
 * };
 * console.log(isMetricsContributor(plugin)); // true
 * ```
 */
export interface MetricsContributor {
  /**
   * Register this plugin's metrics on the daemon's `registry` (awaited by the server). Only
   * called when the daemon serves metrics, so a plugin should import prom-client here, on
   * demand, rather than at module load.
   */
  registerMetrics(registry: Registry): void | Promise<void>;
}

/** Whether a plugin instance is a {@link MetricsContributor}. */
export function isMetricsContributor(instance: unknown): instance is MetricsContributor {
  return typeof instance === "object" && instance !== null &&
    typeof (instance as Partial<MetricsContributor>).registerMetrics === "function";
}

/** go-grpc-prometheus' grpc_type label per protobuf method kind. */
const GRPC_TYPES = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
} as const;

/** gRPC code names as Go's codes.Code.String() prints them; 0 is OK. */
const CODE_NAMES: readonly string[] = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/** The name of a gRPC code (`0` → `OK`, `5` → `NotFound`), `Code(n)` for one out of range. */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? `Code(${code})`;
}

type MethodLabels = { grpc_type: string; grpc_service: string; grpc_method: string };

/** Make a registry with the gRPC server metrics (and, by default, process metrics). */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const methodLabels = ["grpc_type", "grpc_service", "grpc_method"] as const;
  const started = new Counter({
    name: "grpc_server_started_total",
    help: "Total number of RPCs started on the server.",
    labelNames: methodLabels,
    registers,
  });
  const handled = new Counter({
    name: "grpc_server_handled_total",
    help: "Total number of RPCs completed on the server, regardless of success or failure.",
    labelNames: [...methodLabels, "grpc_code"],
    registers,
  });
  const received = new Counter({
    name: "grpc_server_msg_received_total",
    help: "Total number of RPC stream messages received on the server.",
    labelNames: methodLabels,
    registers,
  });
  const sent = new Counter({
    name: "grpc_server_msg_sent_total",
    help: "Total number of gRPC stream messages sent by the server.",
    labelNames: methodLabels,
    registers,
  });
  const handling = options.histogram
    ? new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level " +
        "handled by the server.",
      labelNames: methodLabels,
      // Prometheus' DefBuckets, as go-grpc-prometheus uses.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    : undefined;

  if (options.processMetrics ?? true) addProcessMetrics(registry);

  let inFlight = 0;

  /** Call tracking for one RPC; `finish` counts it handled exactly once. */
  const track = (labels: MethodLabels) => {
    started.inc(labels);
    inFlight++;
    const begin = performance.now();
    let done = false;
    return (code: number) => {
      if (done) return;
      done = true;
      inFlight--;
      handled.inc({ ...labels, grpc_code: grpcCodeName(code) });
      handling?.observe(labels, (performance.now() - begin) / 1000);
    };
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const labels: MethodLabels = {
      grpc_type: GRPC_TYPES[req.method.methodKind],
      grpc_service: req.service.typeName,
      grpc_method: req.method.name,
    };
    const finish = track(labels);
    if (!req.stream) {
      received.inc(labels);
      try {
        const res = await next(req);
        sent.inc(labels);
        finish(0);
        return res;
      } catch (err) {
        finish(codeOf(err));
        throw err;
      }
    }
    const request = { ...req, message: countEach(req.message, () => received.inc(labels)) };
    let res;
    try {
      res = await next(request);
    } catch (err) {
      finish(codeOf(err));
      throw err;
    }
    if (!res.stream) {
      finish(0);
      return res;
    }
    // A client that goes away may leave the stream unread rather than closed: count the
    // abort itself (Canceled, or DeadlineExceeded on a timeout) so no call stays in flight.
    const signal = req.signal;
    const onAbort = () => {
      const code = codeOf(signal.reason);
      finish(code === Code.Unknown ? Code.Canceled : code);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const finishStream = (code: number) => {
      signal.removeEventListener("abort", onAbort);
      finish(code);
    };
    if (signal.aborted) onAbort();
    return { ...res, message: watchStream(res.message, () => sent.inc(labels), finishStream) };
  };

  const register = (service: DescService) => {
    for (const method of service.methods) {
      const labels: MethodLabels = {
        grpc_type: GRPC_TYPES[method.methodKind],
        grpc_service: service.typeName,
        grpc_method: method.name,
      };
      started.inc(labels, 0);
      received.inc(labels, 0);
      sent.inc(labels, 0);
      handling?.zero(labels);
      for (const name of CODE_NAMES) handled.inc({ ...labels, grpc_code: name }, 0);
    }
  };

  return {
    registry,
    interceptor,
    histogram: handling !== undefined,
    register,
    inFlight: () => inFlight,
  };
}

/** Count each message of a request stream as it is read. */
async function* countEach<T>(source: AsyncIterable<T>, onMessage: () => void): AsyncIterable<T> {
  for await (const message of source) {
    onMessage();
    yield message;
  }
}

/**
 * Pass a response stream through, counting messages, and report how it ended: OK when it
 * ran out, the error's code when it failed, Canceled when the consumer stopped early (the
 * client went away) — what a Go handler would have returned in each case.
 */
async function* watchStream<T>(
  source: AsyncIterable<T>,
  onMessage: () => void,
  finish: (code: number) => void,
): AsyncIterable<T> {
  let code: number = Code.Canceled;
  try {
    for await (const message of source) {
      onMessage();
      yield message;
    }
    code = 0;
  } catch (err) {
    code = codeOf(err);
    throw err;
  } finally {
    finish(code);
  }
}

/**
 * prom-client's default metrics, registered on `registry`. Its CPU counters count from the
 * moment they are registered; we add the CPU spent before that (module loading, boot), so
 * `process_cpu_seconds_total` is the process total as Go's process collector reports it.
 */
function addProcessMetrics(registry: Registry): void {
  const before = process.cpuUsage();
  collectDefaultMetrics({ register: registry });
  const add = (name: string, micros: number) => {
    const metric = registry.getSingleMetric(name);
    if (metric instanceof Counter) metric.inc(micros / 1e6);
  };
  add("process_cpu_user_seconds_total", before.user);
  add("process_cpu_system_seconds_total", before.system);
  add("process_cpu_seconds_total", before.user + before.system);
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** `host:port` (containerd's `[metrics] address`) or a unix socket path. */
  address: string;
  metrics: Metrics;
  log: Logger;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** Where it listens; for port 0 the port actually bound. */
  readonly address: string;
  /** Stop serving; safe to call twice. */
  close(): Promise<void>;
}

const gzip = promisify(zlib.gzip);

/**
 * Serve `GET /v1/metrics` (Prometheus text format, gzip when the scraper accepts it) over
 * HTTP/1.1, as containerd's metrics listener does; every other path answers 404.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, log } = options;
  const server = http.createServer((req, res) => {
    handleMetrics(req, res, metrics.registry).catch((err) => {
      log.error("serve metrics", { error: err });
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      }
      res.end(`collect metrics: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  const listener = await listenHttp(server, { address: options.address });
  log.info("metrics server listening", { address: listener.address });
  return listener;
}

async function handleMetrics(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  registry: Registry,
): Promise<void> {
  const { pathname } = new URL(req.url ?? "/", "http://localhost");
  if (pathname !== "/v1/metrics") {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("404 page not found\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { "content-type": "text/plain; charset=utf-8", allow: "GET, HEAD" });
    res.end(`method ${req.method} not allowed on /v1/metrics\n`);
    return;
  }
  const text = await registry.metrics();
  const headers: Record<string, string> = { "content-type": registry.contentType };
  let body: Uint8Array = new TextEncoder().encode(text);
  if (/\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""))) {
    body = await gzip(body);
    headers["content-encoding"] = "gzip";
  }
  headers["content-length"] = String(body.byteLength);
  res.writeHead(200, headers);
  res.end(req.method === "HEAD" ? undefined : body);
}
