/**
 * The bench's load generator: one raw node:http2 gRPC client session (as ctr and the Go client
 * use one connection), `concurrency` workers each sending unary calls back to back.
 *
 * Raw on purpose: the same client drives containerd, containerd-ts and the fixed-reply server,
 * so differences are the servers'. The request body is hand-encoded (an empty message is the
 * envelope 00 00000000). Run as a script it prints one JSON {@link LoadResult} line:
 *
 * ```sh
 * deno run -A bench/client.ts --socket /tmp/x.sock --concurrency 16 --duration-ms 3000
 * ```
 * @module
 */
import http2 from "node:http2";
import { connectUnix } from "../server/unix_socket.ts";
import { parseArgs } from "node:util";

/** What one load point measures. */
export interface LoadOptions {
  /** Unix socket of the server. */
  socket: string;
  /** gRPC path. Default containerd's Version/Version. */
  path?: string;
  /** The request envelope. Default the empty message (00 00000000). */
  body?: Uint8Array;
  /** Workers with one call in flight each. */
  concurrency: number;
  /** Measured time. */
  durationMs: number;
  /** Unmeasured time before, to let both sides warm up. Default 500 ms. */
  warmupMs?: number;
}

/** Result of one load point. */
export interface LoadResult {
  concurrency: number;
  requests: number;
  errors: number;
  /** Requests per second over the measured time. */
  rps: number;
  /** Latency percentiles in milliseconds. */
  p50Ms: number;
  p99Ms: number;
  /** First error seen, if any. */
  firstError?: string;
}

/** containerd's Version/Version, the call every client makes first. */
export const VERSION_PATH = "/containerd.services.version.v1.Version/Version";
/** The gRPC envelope of an empty message. */
export const EMPTY_ENVELOPE: Uint8Array = new Uint8Array([0, 0, 0, 0, 0]);

/** Percentile of sorted samples (nearest rank). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** One unary call; resolves with an error text, or undefined when grpc-status was 0. */
function call(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let status: string | undefined;
    let settled = false;
    const done = (err?: string) => {
      if (settled) return;
      settled = true;
      resolve(err);
    };
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request(headers);
    } catch (err) {
      done(String(err));
      return;
    }
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    req.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) status = String(t["grpc-status"]);
    });
    req.on("data", () => {});
    req.on("error", (err) => done(String(err)));
    req.on("close", () => done(status === "0" ? undefined : `grpc-status ${status}`));
    req.end(body);
  });
}

/**
 * One Version call on a fresh session: true when it answered grpc-status 0 within
 * `timeoutMs`. The boot probe: false (not an error) while the socket is missing or refusing.
 */
export function versionOnce(socket: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const session = http2.connect("http://localhost", {
      createConnection: () => connectUnix(socket),
    });
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    session.on("error", () => finish(false));
    session.on("close", () => finish(false));
    call(session, {
      ":method": "POST",
      ":path": VERSION_PATH,
      "content-type": "application/grpc",
      te: "trailers",
      "containerd-namespace": "default",
    }, EMPTY_ENVELOPE).then((err) => finish(err === undefined));
  });
}

/** Run one load point against `options.socket`. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const session = http2.connect("http://localhost", {
    createConnection: () => connectUnix(options.socket),
  });
  const headers: http2.OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": options.path ?? VERSION_PATH,
    ":authority": "localhost",
    "content-type": "application/grpc",
    te: "trailers",
    "containerd-namespace": "default",
  };
  const body = options.body ?? EMPTY_ENVELOPE;
  let sessionError: string | undefined;
  session.on("error", (err) => sessionError = String(err));
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  const warmupMs = options.warmupMs ?? 500;
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const end = measureFrom + options.durationMs;
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const worker = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end || sessionError) return;
      const err = await call(session, headers, body);
      const t1 = performance.now();
      if (t0 < measureFrom) continue;
      if (err !== undefined) {
        errors++;
        firstError ??= err;
        continue;
      }
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = t1 - t0;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const elapsed = Math.min(performance.now(), end) - measureFrom;
  await new Promise<void>((resolve) => session.close(() => resolve()));
  const sorted = latencies.slice(0, count).sort();
  const result: LoadResult = {
    concurrency: options.concurrency,
    requests: count,
    errors,
    rps: count / (elapsed / 1000),
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
  const error = firstError ?? sessionError;
  if (error !== undefined) result.firstError = error;
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      socket: { type: "string" },
      concurrency: { type: "string", default: "1" },
      "duration-ms": { type: "string", default: "3000" },
      "warmup-ms": { type: "string", default: "500" },
      path: { type: "string", default: VERSION_PATH },
    },
  });
  if (!values.socket) {
    console.error("usage: client.ts --socket PATH [--concurrency N] [--duration-ms MS]");
    Deno.exit(2);
  }
  const result = await runLoad({
    socket: values.socket,
    path: values.path,
    concurrency: Number(values.concurrency),
    durationMs: Number(values["duration-ms"]),
    warmupMs: Number(values["warmup-ms"]),
  });
  console.log(JSON.stringify(result));
}
