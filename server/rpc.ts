/**
 * The daemon's RPC handler on HTTP/2 streams (server/h2_server.ts's, or node:http2's): gRPC,
 * gRPC-web and Connect (binary and JSON) on one socket, through Connect's router, plus a gRPC
 * fast path (unary, server streams) beside it.
 *
 * Why not connect-node's `connectNodeAdapter`: on Deno's node:http2 it runs 5–10× slower than
 * containerd (see /work/shared/DENO-HTTP2.md). This module owns two thin paths instead:
 *
 * - **Fast path** — unary and server-streaming methods called with `application/grpc` /
 *   `application/grpc+proto` and no compression, which is everything `ctr` and the Go client
 *   send for them: collect the body with 'data'/'end' events, parse the 5-byte envelope,
 *   `fromBinary`, run the SAME interceptor chain Connect runs (`invokeUnaryImplementation` /
 *   invoke_stream.ts's equivalent of `transformInvokeImplementation`, with a HandlerContext
 *   like `createHandlerContext`'s),
 *   `toBinary`, and answer with one write plus trailers (unary) or one write per message with
 *   backpressure (server streams — `ctr content get` makes one Read stream per 32 KiB).
 *   Errors before the first message are trailers-only responses, as grpc-go sends them.
 * - **Router path** — everything else (client/bidi streams, Connect, gRPC-web, JSON, compressed) to
 *   Connect's universal handlers through a small stream-API adapter: the request body is
 *   collected (single-request methods) or queued with backpressure (client/bidi streams), the
 *   response is written with `waitForTrailers`, and an error with no body becomes a
 *   trailers-only response.
 *
 * Unknown services and methods answer gRPC status 12 (HTTP 200) to gRPC and gRPC-web clients,
 * and Connect's `unimplemented` error (HTTP 404) to everything else. Session and stream errors
 * (clients closing abruptly or being SIGKILLed) are caught and logged at debug level.
 *
 * @example
 * ```ts
 * import http2 from "node:http2";
 * import { createRpcHandler, GRPC_SERVER_OPTIONS, serviceSpec } from "./rpc.ts";
 * import { silentLogger } from "./log.ts";
 * import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
 *
 * const rpc = createRpcHandler({
 *   services: [serviceSpec(Version, { version: () => ({ version: "1.6.20", revision: "x" }) })],
 *   interceptors: [],
 *   maxRecvMessageBytes: 16 << 20,
 *   maxSendMessageBytes: 16 << 20,
 *   log: silentLogger(),
 * });
 * const server = http2.createServer(GRPC_SERVER_OPTIONS);
 * rpc.attach(server);
 * ```
 * @module
 */
import type * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import {
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageShape,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  invokeUnaryImplementation,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { gzipCompression } from "./gzip.ts";
import { invokeServerStreaming, type ServerStreamingSpec, singleMessage } from "./invoke_stream.ts";
import { H2_ERROR, type H2RespondOptions, H2Server, type H2ServerOptions } from "./h2_server.ts";
import { type HeapTrimmer, NO_HEAP_TRIM } from "./heap_trim.ts";
import type { Logger } from "./log.ts";
import type { TtrpcServiceImpl } from "./ttrpc.ts";

/**
 * A hand-written `toBinary` for one response message type, for responses large enough that
 * protobuf-es's reflective encoding shows (images List of 10 000 images); it must give
 * exactly `toBinary`'s bytes, or undefined to leave this message to `toBinary`.
 */
export type ResponseEncoder = (message: MessageShape<DescMessage>) => Uint8Array | undefined;

/** A Connect service and its implementation, as a plugin hands it to the server. */
export interface ServiceSpec {
  /** The generated service descriptor (e.g. `Version` from version_pb.ts). */
  readonly service: DescService;
  /** Method implementations by local name; missing methods answer Unimplemented. */
  readonly impl: Partial<ServiceImpl<DescService>>;
  /** {@link ResponseEncoder}s by response type name, for unary answers on the gRPC fast path. */
  readonly encoders?: ReadonlyMap<string, ResponseEncoder>;
}

/**
 * Pair a service descriptor with its implementation, type-checked against the descriptor, so a
 * plugin's `services` list is checked where it is written and erased to {@link ServiceSpec}.
 */
export function serviceSpec<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  encoders?: ReadonlyMap<string, ResponseEncoder>,
): ServiceSpec {
  const spec = { service, impl: impl as Partial<ServiceImpl<DescService>> };
  return encoders === undefined ? spec : { ...spec, encoders };
}

/**
 * A ttrpc service and its implementation, for the daemon's ttrpc socket (`[ttrpc] address`,
 * default `<grpc address>.ttrpc`) — what containerd's `RegisterTTRPC` hands its ttrpc server.
 */
export interface TtrpcServiceSpec {
  /** The generated service descriptor (e.g. `Events` from ttrpc/events/v1/events_pb.ts). */
  readonly service: DescService;
  /** Unary method implementations by local name; missing methods answer Unimplemented. */
  readonly impl: TtrpcServiceImpl<DescService>;
}

/**
 * Pair a service descriptor with its ttrpc implementation, type-checked against the
 * descriptor, erased to {@link TtrpcServiceSpec} for a plugin's `ttrpc` list.
 */
export function ttrpcServiceSpec<S extends DescService>(
  service: S,
  impl: TtrpcServiceImpl<S>,
): TtrpcServiceSpec {
  return { service, impl: impl as TtrpcServiceImpl<DescService> };
}

/**
 * A plugin instance that serves RPCs has `services`; the server mounts them on its gRPC
 * socket, and the optional `ttrpc` services on its ttrpc socket.
 */
export interface RpcServices {
  readonly services: readonly ServiceSpec[];
  /** Services for the daemon's ttrpc socket (containerd's RegisterTTRPC). Default: none. */
  readonly ttrpc?: readonly TtrpcServiceSpec[];
}

/**
 * Whether a plugin instance serves RPCs (has a `services` array of {@link ServiceSpec}); lets
 * the server mount services without knowing any plugin by name.
 */
export function servesRpc(instance: unknown): instance is RpcServices {
  if (typeof instance !== "object" || instance === null) return false;
  const services = (instance as { services?: unknown }).services;
  return Array.isArray(services) &&
    services.every((s) =>
      typeof s === "object" && s !== null && "service" in s && "impl" in s &&
      typeof (s as { service: { typeName?: unknown } }).service?.typeName === "string"
    );
}

/** Options of {@link createRpcHandler}. */
export interface RpcHandlerOptions {
  /** Every service mounted on the socket; a duplicate service name throws. */
  services: readonly ServiceSpec[];
  /** Connect interceptors, outermost first; applied on the router path and the fast path. */
  interceptors: readonly Interceptor[];
  /** Largest request message accepted; over → ResourceExhausted (gRPC 8). */
  maxRecvMessageBytes: number;
  /** Largest response message sent; over → ResourceExhausted (gRPC 8). */
  maxSendMessageBytes: number;
  /** Where session/stream failures and handler crashes are reported. */
  log: Logger;
  /** Noted once per finished RPC, so the heap is trimmed after bursts of calls. */
  heapTrimmer?: HeapTrimmer;
}

/**
 * The part of a server stream this module uses. The daemon's {@link H2Server} streams and
 * node:http2's `ServerHttp2Stream` both have it, so the same handler serves either server.
 */
export interface RpcStream {
  readonly headersSent: boolean;
  readonly closed: boolean;
  readonly destroyed: boolean;
  respond(headers: NodeHeaders, options?: H2RespondOptions): void;
  write(chunk: Uint8Array): boolean;
  end(chunk?: Uint8Array): void;
  sendTrailers(headers: NodeHeaders): void;
  close(code?: number): void;
  destroy(): void;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "end" | "close" | "drain" | "wantTrailers", listener: () => void): unknown;
  once(event: "data", listener: (chunk: Buffer) => void): unknown;
  once(event: "error", listener: (err: Error) => void): unknown;
  once(event: "end" | "close" | "drain" | "wantTrailers", listener: () => void): unknown;
  off(event: "end" | "close" | "drain" | "wantTrailers", listener: () => void): unknown;
}

/** The RPC side of the gRPC listeners: attach it to servers, count and drain RPCs. */
export interface RpcHandler {
  /**
   * Attach to a server: the daemon's {@link H2Server} (its unix and TCP listeners), or a
   * node:http2 server (createServer). Handles every stream.
   */
  attach(server: H2Server | http2.Http2Server): void;
  /** RPCs currently running (debug vars, graceful shutdown). */
  readonly inFlight: number;
  /** Resolves when inFlight reaches 0 (or the signal aborts). */
  drain(signal: AbortSignal): Promise<void>;
}

/** A unary method served on the fast path. */
interface FastMethod {
  readonly method: DescMethod;
  readonly spec: Extract<MethodImplSpec, { kind: "unary" | "server_streaming" }>;
  /** The service's hand-written encoder of this method's response type, if it has one. */
  readonly encode?: ResponseEncoder;
}

type NodeHeaders = Record<string, string | string[]>;
/** Take a hold on an RPC; the returned function releases it (idempotent). */
type Hold = () => () => void;

const GRPC_CONTENT_TYPE = "application/grpc";
const GRPC_FAST_CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;
const GRPC_LIKE_CONTENT_TYPE = /^application\/grpc(?:-web(?:-text)?)?(?:[+;]|$)/i;
const GRPC_WEB_CONTENT_TYPE = /^application\/grpc-web/i;
/** Bytes queued from a streaming request before the stream is paused. */
const QUEUE_HIGH_WATER = 1 << 20;
const EMPTY = new Uint8Array(0);
/**
 * HTTP/2 flow-control windows the server grants: per stream, and per connection (set on each
 * session). With the protocol's default 64 KiB a client uploading content stalls every 64 KiB
 * until our WINDOW_UPDATE arrives; ctr writes 1 MiB per Write message and waits for its answer,
 * so most of an ingest was spent waiting. Measured, `ctr content ingest` of 256 MiB (median of
 * 5): 2.5 s with the defaults, 1.2 s with these windows, where containerd took 1.6 s (grpc-go
 * grows its windows by bandwidth-delay estimation, up to 16 MiB).
 */
const STREAM_WINDOW_BYTES = 4 << 20;
const CONNECTION_WINDOW_BYTES = 16 << 20;

/** Options of the {@link H2Server} of a gRPC listener: the windows above. */
export const GRPC_H2_OPTIONS: H2ServerOptions = {
  streamWindowBytes: STREAM_WINDOW_BYTES,
  connectionWindowBytes: CONNECTION_WINDOW_BYTES,
};

/**
 * Options for `http2.createServer` of a gRPC listener: {@link RpcHandler.attach} serves it.
 * The windows above; session memory sized so a full connection window may be buffered.
 */
export const GRPC_SERVER_OPTIONS: http2.ServerOptions = {
  settings: { initialWindowSize: STREAM_WINDOW_BYTES },
  maxSessionMemory: 2 * (CONNECTION_WINDOW_BYTES >> 20),
};

/** Longest delay setTimeout holds; longer ones overflow and fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Build the handler for a set of services. Throws when two specs name the same service, so a
 * plugin registering a taken service fails at boot instead of being silently shadowed.
 */
export function createRpcHandler(options: RpcHandlerOptions): RpcHandler {
  const { log, interceptors } = options;
  const heapTrimmer = options.heapTrimmer ?? NO_HEAP_TRIM;
  const maxRecv = options.maxRecvMessageBytes;
  const maxSend = options.maxSendMessageBytes;
  const router = createConnectRouter({
    interceptors: [...interceptors],
    readMaxBytes: maxRecv,
    writeMaxBytes: maxSend,
    acceptCompression: [gzipCompression],
    // Accept compressed requests but never compress responses: containerd does not, and
    // gzip of 1 MiB content reads would cost more CPU than the socket saves.
    compressMinBytes: Number.MAX_SAFE_INTEGER,
  });
  const services = new Set<string>();
  const fast = new Map<string, FastMethod>();
  // Connect's handlers (every method in three protocols) cost ~3.5 ms for all services at
  // boot, and the gRPC fast path never needs them: a service gets its own on the first call
  // the router path serves (streaming, Connect, gRPC-web, compressed), ~0.1-0.3 ms then.
  const unrouted = new Map<string, ServiceSpec>();
  for (const spec of options.services) {
    if (services.has(spec.service.typeName)) {
      throw new Error(`service ${spec.service.typeName} is registered twice`);
    }
    services.add(spec.service.typeName);
    unrouted.set(spec.service.typeName, spec);
    const implSpec = createServiceImplSpec(spec.service, spec.impl);
    for (const method of spec.service.methods) {
      const m = implSpec.methods[method.localName];
      if (m?.kind === "unary" || m?.kind === "server_streaming") {
        const encode = spec.encoders?.get(m.method.output.typeName);
        fast.set(
          `/${spec.service.typeName}/${method.name}`,
          encode === undefined
            ? { method: m.method, spec: m }
            : { method: m.method, spec: m, encode },
        );
      }
    }
  }
  const routes = new Map<string, UniversalHandler>();
  /** The router-path handler of `path`, making its service's handlers on first use. */
  const routeOf = (path: string): UniversalHandler | undefined => {
    const handler = routes.get(path);
    if (handler !== undefined) return handler;
    const slash = path.lastIndexOf("/");
    const spec = unrouted.get(path.slice(1, slash > 0 ? slash : undefined));
    if (spec === undefined) return undefined;
    unrouted.delete(spec.service.typeName);
    const made = router.handlers.length;
    router.service(spec.service, spec.impl);
    for (const h of router.handlers.slice(made)) routes.set(h.requestPath, h);
    return routes.get(path);
  };
  const chain = [...interceptors];
  // The reason a finished RPC's context signal carries. Aborting without a reason would build
  // a DOMException (and its stack) per call: 10% of the fast path's CPU when measured.
  const completed = new ConnectError("the RPC completed", Code.Canceled);

  let inFlight = 0;
  const drainWaiters = new Set<() => void>();
  /**
   * Count an RPC from its stream's arrival until both the stream closed and every hold taken
   * on it (the running implementation, the response writer) was released.
   */
  // At trace level every RPC logs its method and how long it ran: what a slow client flow (say
  // the ~40 calls of one `ctr run`) spends where, without a profiler.
  const traced = log.enabled("trace");
  const begin = (stream: RpcStream, method: string | undefined): Hold => {
    inFlight++;
    let pending = 1;
    const started = traced ? performance.now() : 0;
    const release = () => {
      if (--pending > 0) return;
      inFlight--;
      heapTrimmer.noteCall();
      if (traced) {
        log.trace("rpc done", { method, ms: Number((performance.now() - started).toFixed(3)) });
      }
      if (inFlight === 0) { for (const wake of [...drainWaiters]) wake(); }
    };
    stream.once("close", release);
    return () => {
      pending++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        release();
      };
    };
  };

  const onStream = (stream: RpcStream, headers: http2.IncomingHttpHeaders) => {
    const hold = begin(stream, headers[":path"]);
    stream.on("error", (err) => log.debug("rpc stream error", { error: err }));
    try {
      route(stream, headers, hold);
    } catch (err) {
      log.error("rpc dispatch failed", { error: err, stack: (err as Error)?.stack });
      if (!stream.destroyed) stream.destroy();
    }
  };

  const route = (
    stream: RpcStream,
    headers: http2.IncomingHttpHeaders,
    hold: Hold,
  ): void => {
    const fullPath = headers[":path"] ?? "";
    const q = fullPath.indexOf("?");
    const path = q < 0 ? fullPath : fullPath.slice(0, q);
    const contentType = headers["content-type"] ?? "";
    const fastMethod = fast.get(path);
    if (
      fastMethod !== undefined && GRPC_FAST_CONTENT_TYPE.test(contentType) &&
      headers[":method"] === "POST" && isIdentity(headers["grpc-encoding"])
    ) {
      serveFast(stream, headers, path, fastMethod, hold);
      return;
    }
    const handler = routeOf(path);
    if (handler !== undefined) {
      serveUniversal(stream, headers, handler, hold);
      return;
    }
    const slash = path.lastIndexOf("/");
    const serviceName = path.slice(1, slash > 0 ? slash : undefined);
    const message = slash > 0 && services.has(serviceName)
      ? `unknown method ${path.slice(slash + 1)} for service ${serviceName}`
      : `unknown service ${serviceName}`;
    if (GRPC_LIKE_CONTENT_TYPE.test(contentType)) {
      const responseType = GRPC_WEB_CONTENT_TYPE.test(contentType)
        ? contentType
        : GRPC_CONTENT_TYPE;
      sendTrailersOnly(stream, new ConnectError(message, Code.Unimplemented), responseType);
    } else {
      const body = errorToJsonBytes(new ConnectError(message, Code.Unimplemented), {});
      respondSafely(
        stream,
        {
          ":status": "404",
          "content-type": "application/json",
          "content-length": String(body.byteLength),
        },
        { endStream: false },
        body,
      );
    }
    discardRequest(stream);
  };

  /**
   * The gRPC fast path for unary and server-streaming methods: one request envelope in; one
   * envelope (unary) or a stream of envelopes out, then trailers. Errors before the first
   * response message are trailers-only responses.
   */
  const serveFast = (
    stream: RpcStream,
    headers: http2.IncomingHttpHeaders,
    path: string,
    fm: FastMethod,
    hold: Hold,
  ): void => {
    /** The final status is decided (sent, or the client is gone). */
    let answered = false;
    let requestEnded = false;
    const timeout = parseTimeout(
      headerValue(headers["grpc-timeout"]) ?? null,
      Number.MAX_SAFE_INTEGER,
    );
    // Deadlines past what a timer can hold (~24.8 days) would fire at once: treat as none.
    const timeoutMs = timeout.timeoutMs !== undefined && timeout.timeoutMs <= MAX_TIMER_MS
      ? timeout.timeoutMs
      : undefined;
    const context = fastContext(
      fm.method,
      `http://${headerValue(headers[":authority"]) ?? "localhost"}${path}`,
      webHeaders(headers),
      timeout.error === undefined ? timeoutMs : undefined,
      // A deadline that passes before the answer: reply DeadlineExceeded now, whatever the
      // implementation does with its aborted signal.
      (err) => finish(err),
    );
    stream.once("close", () => {
      if (!answered) {
        answered = true;
        context.abort(new ConnectError("the client canceled the request", Code.Canceled));
      } else {
        context.abort(completed);
      }
    });
    /** Trailers of a response whose headers went out; sent on 'wantTrailers'. */
    let trailers: NodeHeaders = { "grpc-status": "0" };
    const respondHeaders = (): void => {
      const head: NodeHeaders = { ":status": "200", "content-type": GRPC_CONTENT_TYPE };
      addHeaders(head, context.responseHeader);
      stream.respond(head, { waitForTrailers: true });
      stream.once("wantTrailers", () => {
        try {
          stream.sendTrailers(trailers);
        } catch (err) {
          log.debug("rpc trailers not sent", { error: err });
        }
      });
    };
    /** End the RPC with `err` (or OK): trailers-only before any message, else trailers. */
    const finish = (err?: unknown): void => {
      if (answered) return;
      answered = true;
      if (stream.destroyed || stream.closed) return;
      try {
        if (!stream.headersSent) {
          if (err === undefined) {
            const head: NodeHeaders = { ":status": "200", "content-type": GRPC_CONTENT_TYPE };
            addHeaders(head, context.responseHeader);
            addHeaders(head, context.responseTrailer);
            head["grpc-status"] = "0";
            stream.respond(head, { endStream: true });
          } else {
            sendTrailersOnly(stream, errorFor(err), GRPC_CONTENT_TYPE, context);
          }
        } else {
          const t: NodeHeaders = {};
          addHeaders(t, context.responseTrailer);
          if (err === undefined) t["grpc-status"] = "0";
          else addHeaders(t, grpcStatusHeaders(errorFor(err)));
          trailers = t;
          stream.end();
        }
      } catch (e) {
        log.debug("rpc response not sent", { error: e });
      }
      if (!requestEnded) closeAfterResponse(stream);
      context.abort(completed);
    };
    if (timeout.error !== undefined) {
      finish(timeout.error);
      discardRequest(stream);
      return;
    }

    let chunks: Buffer[] = [];
    let size = 0;
    let declared = -1;
    stream.on("data", (chunk: Buffer) => {
      if (answered) return;
      chunks.push(chunk);
      size += chunk.length;
      if (declared < 0) {
        if (size < 5) return;
        if (chunks.length > 1) chunks = [Buffer.concat(chunks)];
        declared = chunks[0]!.readUInt32BE(1);
        if (declared > maxRecv) {
          finish(
            new ConnectError(
              `grpc: received message larger than max (${declared} vs. ${maxRecv})`,
              Code.ResourceExhausted,
            ),
          );
          return;
        }
      }
      if (size > 5 + declared) finish(extraMessageError(fm.spec.kind));
    });
    stream.once("end", () => {
      requestEnded = true;
      if (answered) return;
      let input: MessageShape<DescMessage>;
      try {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        chunks = [];
        input = parseRequestEnvelope(body, fm.method.input, maxRecv, fm.spec.kind);
      } catch (err) {
        finish(err);
        return;
      }
      const release = hold();
      if (fm.spec.kind === "unary") {
        invokeUnaryImplementation(fm.spec, context, input, chain).then((output) => {
          if (answered) return;
          let envelope: Buffer;
          try {
            const custom = fm.encode?.(output);
            envelope = custom === undefined
              ? encodeEnvelope(fm.method.output, output)
              : envelopeOf(custom);
          } catch (err) {
            // An implementation's message that does not encode (or an encoder that failed)
            // ends this call with an error; thrown here it would reject a promise no one
            // handles, and an unhandled rejection ends the process.
            finish(err);
            return;
          }
          if (envelope.byteLength - 5 > maxSend) {
            finish(sendTooLarge(envelope.byteLength - 5, maxSend));
            return;
          }
          answered = true;
          if (stream.destroyed || stream.closed) return;
          try {
            respondHeaders();
            const t: NodeHeaders = {};
            addHeaders(t, context.responseTrailer);
            t["grpc-status"] = "0";
            trailers = t;
            stream.end(envelope);
          } catch (err) {
            log.debug("rpc response not sent", { error: err });
          }
          context.abort(completed);
        }, finish).finally(release);
      } else {
        streamResponses(fm.spec, input).then(() => finish(), finish).finally(release);
      }
    });

    /** Run a server-streaming implementation, writing each message as it comes. */
    const streamResponses = async (
      spec: ServerStreamingSpec,
      input: MessageShape<DescMessage>,
    ): Promise<void> => {
      const output = await invokeServerStreaming(spec, context, input, chain);
      try {
        for (;;) {
          const next = await output.next();
          if (next.done || answered) return;
          const parts = encodeEnvelopeParts(fm.method.output, next.value);
          let size = -5;
          for (const part of parts) size += part.byteLength;
          if (size > maxSend) throw sendTooLarge(size, maxSend);
          if (stream.destroyed || stream.closed) return;
          if (!stream.headersSent) respondHeaders();
          let writable = true;
          for (const part of parts) writable = stream.write(part);
          if (!writable) await drained(stream);
        }
      } finally {
        output.return?.().catch(() => {});
      }
    };
  };

  /** The router path: a stream-API adapter to Connect's universal handlers. */
  const serveUniversal = (
    stream: RpcStream,
    headers: http2.IncomingHttpHeaders,
    handler: UniversalHandler,
    hold: Hold,
  ): void => {
    const requestAbort = new AbortController();
    let finished = false;
    let requestEnded = false;
    stream.once("close", () => {
      if (!finished) {
        requestAbort.abort(new ConnectError("the client canceled the request", Code.Canceled));
      }
    });
    stream.once("end", () => requestEnded = true);
    const kind = handler.method.methodKind;
    const request = (body: AsyncIterable<Uint8Array>): UniversalServerRequest => ({
      httpVersion: "2.0",
      method: headerValue(headers[":method"]) ?? "POST",
      url: `http://${headerValue(headers[":authority"]) ?? "localhost"}${
        headerValue(headers[":path"]) ?? "/"
      }`,
      header: webHeaders(headers, true),
      body,
      signal: requestAbort.signal,
    });
    const run = (body: AsyncIterable<Uint8Array>): void => {
      const release = hold();
      handler(request(body))
        .then((response) => writeUniversal(stream, response, handler.method, () => requestEnded))
        .catch((err) => {
          if (!(err instanceof ConnectError && err.code === Code.Canceled)) {
            log.error("rpc handler failed", {
              method: handler.requestPath,
              error: err,
              stack: (err as Error)?.stack,
            });
          }
          if (!stream.headersSent) {
            respondSafely(stream, { ":status": "500" }, { endStream: true });
          } else if (!stream.destroyed) {
            try {
              stream.close(H2_ERROR.INTERNAL_ERROR);
            } catch { /* already gone */ }
          }
        })
        .finally(() => {
          finished = true;
          release();
        });
    };
    if (kind === "unary" || kind === "server_streaming") {
      // One request message: collect it, but never more than the limit allows plus one
      // byte, so an oversized request reaches Connect's size check without being buffered.
      const cap = maxRecv + 6;
      const chunks: Buffer[] = [];
      let size = 0;
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        const body = chunks.length === 0
          ? EMPTY
          : chunks.length === 1
          ? chunks[0]!
          : Buffer.concat(chunks);
        run(singleMessage<Uint8Array>(body));
      };
      stream.on("data", (chunk: Buffer) => {
        if (started) return;
        chunks.push(chunk);
        size += chunk.length;
        if (size > cap) start();
      });
      stream.once("end", start);
    } else {
      run(queuedBody(stream));
    }
  };

  /** Write a universal response: headers, body chunks with backpressure, then trailers. */
  const writeUniversal = async (
    stream: RpcStream,
    response: UniversalServerResponse,
    method: DescMethod,
    requestEnded: () => boolean,
  ): Promise<void> => {
    const it = response.body?.[Symbol.asyncIterator]();
    try {
      let next: IteratorResult<Uint8Array> = it
        ? await it.next()
        : { done: true, value: undefined };
      if (stream.destroyed || stream.closed) return;
      const head: NodeHeaders = { ":status": String(response.status) };
      if (response.header) addHeaders(head, response.header);
      if (next.done) {
        // No body: a trailers-only response when the protocol has trailers (gRPC errors).
        if (response.trailer) addHeaders(head, response.trailer);
        stream.respond(head, { endStream: true });
        if (!requestEnded()) closeAfterResponse(stream);
        return;
      }
      const trailer = response.trailer;
      stream.respond(head, { waitForTrailers: trailer !== undefined });
      if (trailer !== undefined) {
        stream.once("wantTrailers", () => {
          const t: NodeHeaders = {};
          addHeaders(t, trailer);
          try {
            stream.sendTrailers(t);
          } catch (err) {
            log.debug("rpc trailers not sent", { error: err });
          }
          if (!requestEnded()) closeAfterResponse(stream);
        });
      }
      if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
        // One response message: gather it and write it once.
        const parts: Uint8Array[] = [];
        while (!next.done) {
          parts.push(next.value);
          next = await it!.next();
        }
        if (stream.destroyed || stream.closed) return;
        stream.end(parts.length === 1 ? parts[0] : Buffer.concat(parts));
      } else {
        while (!next.done) {
          if (stream.destroyed || stream.closed) return;
          if (!stream.write(next.value)) await drained(stream);
          next = await it!.next();
        }
        if (stream.destroyed || stream.closed) return;
        stream.end();
      }
      if (trailer === undefined && !requestEnded()) closeAfterResponse(stream);
    } catch (err) {
      if (stream.destroyed || stream.closed) return;
      throw err;
    } finally {
      it?.return?.().catch(() => {});
    }
  };

  return {
    attach(server: H2Server | http2.Http2Server): void {
      if (server instanceof H2Server) {
        server.on("stream", onStream);
        server.on("sessionError", (err: Error) => log.warn("http2 session failed", { error: err }));
        return;
      }
      server.on("stream", onStream);
      server.on("session", (session: http2.ServerHttp2Session) => {
        session.on("error", (err) => log.debug("http2 session error", { error: err }));
        try {
          session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        } catch (err) {
          log.debug("cannot widen the HTTP/2 connection window", { error: err });
        }
      });
      server.on("sessionError", (err: Error) => log.debug("http2 session error", { error: err }));
      server.on("error", (err: Error) => log.warn("http2 server error", { error: err }));
    },
    get inFlight() {
      return inFlight;
    },
    drain(signal: AbortSignal): Promise<void> {
      if (inFlight === 0 || signal.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        const wake = () => {
          drainWaiters.delete(wake);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        drainWaiters.add(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    },
  };
}

/** A HandlerContext the fast path can end: `abort` settles its signal and stops its deadline. */
interface FastContext extends HandlerContext {
  abort(reason: unknown): void;
}

/**
 * The fast path's HandlerContext: what Connect's `createHandlerContext` builds, with one
 * AbortController and one timer instead of a deadline controller linked to a second one
 * (listeners added and removed per call). On a deadline the signal aborts with Connect's
 * DeadlineExceeded error and `onDeadline` gets it (on a later tick when already expired).
 */
function fastContext(
  method: DescMethod,
  url: string,
  requestHeader: Headers,
  timeoutMs: number | undefined,
  onDeadline: (err: ConnectError) => void,
): FastContext {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let deadline: number | undefined;
  if (timeoutMs !== undefined) {
    deadline = Date.now() + timeoutMs;
    const expire = () => {
      timer = undefined;
      const err = new ConnectError("the operation timed out", Code.DeadlineExceeded);
      if (!controller.signal.aborted) controller.abort(err);
      onDeadline(err);
    };
    timer = setTimeout(expire, Math.max(timeoutMs, 0));
  }
  return {
    service: method.parent,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url,
    signal: controller.signal,
    timeoutMs: deadline === undefined ? () => undefined : () => deadline - Date.now(),
    requestHeader,
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    values: createContextValues(),
    abort(reason: unknown): void {
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      if (!controller.signal.aborted) controller.abort(reason);
    },
  };
}

/**
 * Percent-encode a gRPC status message as the gRPC spec asks: bytes outside printable ASCII
 * (0x20–0x7E) and `%` become `%XX`; everything else is sent as is, so plain messages stay
 * readable on the wire.
 */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Request kinds the fast path serves: one request message each. */
type SingleRequestKind = "unary" | "server_streaming";

function methodWords(kind: SingleRequestKind): string {
  return kind === "unary" ? "unary" : "server-streaming";
}

/** Connect's error for a second request message where the method takes one. */
function extraMessageError(kind: SingleRequestKind): ConnectError {
  return new ConnectError(
    `protocol error: received extra input message for ${methodWords(kind)} method`,
    Code.Unimplemented,
  );
}

function sendTooLarge(size: number, max: number): ConnectError {
  return new ConnectError(
    `grpc: trying to send message larger than max (${size} vs. ${max})`,
    Code.ResourceExhausted,
  );
}

/** Parse the single envelope of a unary or server-streaming gRPC request into a message. */
function parseRequestEnvelope<I extends DescMessage>(
  body: Uint8Array,
  schema: I,
  maxRecv: number,
  kind: SingleRequestKind,
): MessageShape<I> {
  if (body.byteLength < 5) {
    throw new ConnectError(
      body.byteLength === 0
        ? `protocol error: missing input message for ${methodWords(kind)} method`
        : "protocol error: incomplete envelope",
      body.byteLength === 0 ? Code.Unimplemented : Code.InvalidArgument,
    );
  }
  const flags = body[0]!;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const length = view.getUint32(1);
  if (length > maxRecv) {
    throw new ConnectError(
      `grpc: received message larger than max (${length} vs. ${maxRecv})`,
      Code.ResourceExhausted,
    );
  }
  if (body.byteLength < 5 + length) {
    throw new ConnectError(
      `protocol error: promised ${length} bytes, received ${body.byteLength - 5}`,
      Code.InvalidArgument,
    );
  }
  if (body.byteLength > 5 + length) throw extraMessageError(kind);
  if ((flags & 0x01) !== 0) {
    throw new ConnectError(
      "protocol error: received compressed message without grpc-encoding",
      Code.Internal,
    );
  }
  try {
    return fromBinary(schema, body.subarray(5, 5 + length));
  } catch (err) {
    throw new ConnectError(
      `parse binary: ${err instanceof Error ? err.message : String(err)}`,
      Code.Internal,
    );
  }
}

/** A whole gRPC message: prefix and payload in one buffer. */
function envelopeOf(bytes: Uint8Array): Buffer {
  const envelope = Buffer.allocUnsafe(5 + bytes.byteLength);
  envelope[0] = 0;
  envelope.writeUInt32BE(bytes.byteLength, 1);
  envelope.set(bytes, 5);
  return envelope;
}

/** google.protobuf.FeatureSet.FieldPresence.IMPLICIT: proto3 singular fields. */
const IMPLICIT_PRESENCE = 2;
/** A `bytes` value at least this large is copied once, straight into the envelope. */
const TRAILING_BYTES_MIN = 16 * 1024;
/** Per message schema: its highest-numbered field when that is a singular `bytes` field. */
const trailingBytesFields = new WeakMap<DescMessage, DescField | null>();

function trailingBytesField(schema: DescMessage): DescField | null {
  let field = trailingBytesFields.get(schema);
  if (field === undefined) {
    const last = schema.fields.reduce<DescField | undefined>(
      (a, f) => (a === undefined || f.number > a.number ? f : a),
      undefined,
    );
    // Implicit presence only (proto3 `bytes`): an empty value is then left out of the head.
    field = last?.fieldKind === "scalar" && last.scalar === ScalarType.BYTES &&
        last.oneof === undefined && last.presence === IMPLICIT_PRESENCE
      ? last
      : null;
    trailingBytesFields.set(schema, field);
  }
  return field;
}

/**
 * Encode `message` as one gRPC envelope (5-byte prefix + protobuf): the bytes of
 * `envelopeOf(toBinary(schema, message))`, with the large-`bytes` shortcut of
 * {@link encodeEnvelopeParts} (the payload copied once, straight into the envelope).
 */
export function encodeEnvelope(
  schema: DescMessage,
  message: MessageShape<DescMessage>,
): Buffer {
  const parts = encodeEnvelopeParts(schema, message);
  return parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts);
}

/**
 * The gRPC envelope of `message` as parts to write in order. One part in general; but when
 * the schema's last field is `bytes` holding at least {@link TRAILING_BYTES_MIN} bytes
 * (content Read responses), two: the prefix with the rest of the message and that field's
 * tag and length, then the caller's bytes themselves, not copied. A server stream writes both
 * and the bytes are copied once, into the HTTP/2 write (three copies less than toBinary's:
 * the writer's growth, its final slice, the envelope).
 */
export function encodeEnvelopeParts(
  schema: DescMessage,
  message: MessageShape<DescMessage>,
): Uint8Array[] {
  const field = trailingBytesField(schema);
  const data = field === null
    ? undefined
    : (message as Record<string, unknown>)[field.localName] as Uint8Array | undefined;
  if (
    field === null || data === undefined || data.byteLength < TRAILING_BYTES_MIN ||
    ((message as { $unknown?: unknown[] }).$unknown?.length ?? 0) > 0
  ) {
    return [envelopeOf(toBinary(schema, message))];
  }
  const rest = toBinary(schema, { ...message, [field.localName]: EMPTY });
  const tag = (field.number << 3) | 2; // wire type 2: length-delimited
  const tagAndLength = varintSize(tag) + varintSize(data.byteLength);
  const length = rest.byteLength + tagAndLength + data.byteLength;
  const head = Buffer.allocUnsafe(5 + rest.byteLength + tagAndLength);
  head[0] = 0;
  head.writeUInt32BE(length, 1);
  head.set(rest, 5);
  const at = writeVarint(head, 5 + rest.byteLength, tag);
  writeVarint(head, at, data.byteLength);
  return [head, data];
}

function varintSize(value: number): number {
  let size = 1;
  while (value > 0x7f) {
    value >>>= 7;
    size++;
  }
  return size;
}

/** Write `value` (< 2^32) as a varint at `at`; returns the position after it. */
function writeVarint(target: Uint8Array, at: number, value: number): number {
  while (value > 0x7f) {
    target[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  target[at++] = value;
  return at;
}

/** The ConnectError a client sees for a failure, as Connect's gRPC handler decides it. */
function errorFor(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/**
 * A trailers-only response: one HEADERS frame with :status 200, the content type, grpc-status
 * and a percent-encoded grpc-message (plus headers and trailers the handler set).
 */
function sendTrailersOnly(
  stream: RpcStream,
  error: ConnectError,
  contentType: string,
  context?: HandlerContext,
): void {
  const status = grpcStatusHeaders(error);
  const head: NodeHeaders = { ":status": "200", "content-type": contentType };
  if (context) {
    addHeaders(head, context.responseHeader);
    addHeaders(head, context.responseTrailer);
  }
  addHeaders(head, status);
  respondSafely(stream, head, { endStream: true });
}

/**
 * grpc-status, grpc-message (percent-encoded per the gRPC spec), grpc-status-details-bin and
 * the error's metadata, as Connect's gRPC handler would set them.
 */
function grpcStatusHeaders(error: ConnectError): Headers {
  const status = new Headers();
  setTrailerStatus(status, error);
  status.set("grpc-message", encodeGrpcMessage(error.rawMessage));
  return status;
}

/** Respond unless the stream is gone; a client that left is not an error. */
function respondSafely(
  stream: RpcStream,
  headers: NodeHeaders,
  options: H2RespondOptions,
  body?: Uint8Array,
): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  try {
    stream.respond(headers, options);
    if (body !== undefined) stream.end(body);
  } catch {
    // The session went away between the check and the write.
  }
}

/** Read and drop the rest of a request we already answered. */
function discardRequest(stream: RpcStream): void {
  stream.on("data", () => {});
}

/**
 * After answering before the request ended, reset the stream with NO_ERROR so the client
 * stops sending (as grpc-go and connect-node do) — after the frames already queued went out.
 */
function closeAfterResponse(stream: RpcStream): void {
  setImmediate(() => {
    if (!stream.destroyed && !stream.closed) {
      try {
        stream.close(H2_ERROR.NO_ERROR);
      } catch {
        // already gone
      }
    }
  });
}

/** Wait until a stream can take more data or is gone. */
function drained(stream: RpcStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/**
 * The body of a client or bidi stream as an async iterable fed by 'data' events; the stream is
 * paused while more than {@link QUEUE_HIGH_WATER} bytes wait, so a fast client cannot fill
 * memory. A reset stream ends the iterable with Canceled.
 */
function queuedBody(stream: RpcStream): AsyncIterable<Uint8Array> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: ConnectError | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  stream.on("data", (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued > QUEUE_HIGH_WATER) stream.pause();
    notify();
  });
  stream.once("end", () => {
    ended = true;
    notify();
  });
  stream.once("close", () => {
    if (!ended) failure = new ConnectError("the client canceled the request", Code.Canceled);
    ended = true;
    notify();
  });
  return {
    [Symbol.asyncIterator]() {
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          for (;;) {
            const chunk = queue.shift();
            if (chunk !== undefined) {
              queued -= chunk.length;
              if (queued <= QUEUE_HIGH_WATER && stream.isPaused()) stream.resume();
              return { done: false, value: chunk };
            }
            if (failure) throw failure;
            if (ended) return { done: true, value: undefined };
            await new Promise<void>((resolve) => wake = resolve);
          }
        },
        return(): Promise<IteratorResult<Uint8Array>> {
          queue.length = 0;
          if (stream.isPaused()) stream.resume();
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
}

function timeoutTooLong(key: string, value: string | string[] | undefined): boolean {
  if (typeof value !== "string") return false;
  if (key === "grpc-timeout") {
    const ms = parseTimeout(value, Number.MAX_SAFE_INTEGER).timeoutMs;
    return ms !== undefined && ms > MAX_TIMER_MS;
  }
  return key === "connect-timeout-ms" && /^\d{1,10}$/.test(value) && Number(value) > MAX_TIMER_MS;
}

function isIdentity(encoding: string | string[] | undefined): boolean {
  return encoding === undefined || encoding === "identity" || encoding === "";
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * Request headers without HTTP/2 pseudo-headers, as web Headers. With `dropLongTimeouts`,
 * a grpc-timeout or connect-timeout-ms longer than a timer can hold is dropped: Connect would
 * arm a timer that overflows and fires at once, failing the call with DeadlineExceeded.
 * Appended one by one: Headers' constructor converts a list of pairs through WebIDL at about
 * twice the cost, and every fast-path call makes one.
 */
function webHeaders(
  headers: http2.IncomingHttpHeaders,
  dropLongTimeouts = false,
): Headers {
  const out = new Headers();
  for (const key in headers) {
    if (key.charCodeAt(0) === 0x3a /* ':' */) continue;
    if (dropLongTimeouts && timeoutTooLong(key, headers[key])) continue;
    const value = headers[key];
    if (value === undefined) continue;
    if (Array.isArray(value)) { for (const v of value) out.append(key, v); }
    else out.append(key, String(value));
  }
  return out;
}

/** Copy web Headers into a node header object (multi-valued headers become arrays). */
function addHeaders(target: NodeHeaders, headers: Headers): void {
  headers.forEach((value, key) => {
    if (key === "set-cookie") target[key] = headers.getSetCookie();
    else target[key] = value;
  });
}
