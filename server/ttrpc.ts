/**
 * ttrpc: the small RPC protocol containerd speaks with its shims, over one unix connection.
 *
 * Every message is a frame: a 10-byte header (payload length u32 BE, stream id u32 BE, type
 * u8 — 1 request, 2 response — and flags u8) and a protobuf payload of at most 4 MiB. A
 * request payload is `ttrpc.Request{service, method, payload, timeout_nano, metadata}`, a
 * response `ttrpc.Response{status (google.rpc.Status), payload}`. Clients number their
 * streams with odd ids (1, 3, 5...), one stream per call; only unary calls are needed for the
 * shim API and for Events/Forward.
 *
 * {@link TtrpcClient} is how the runtime drives `containerd-shim-runc-v2`; {@link TtrpcServer}
 * is the daemon's ttrpc socket, where shims forward their events. Both carry errors as the
 * typed errors of errdefs.ts, so a shim's NotFound reaches a gRPC client as NotFound.
 *
 * @example
 * ```ts
 * import { TtrpcClient } from "./ttrpc.ts";
 * import { Task } from "../proto/gen/containerd/task/v2/shim_pb.ts";
 * const shim = await TtrpcClient.dial("/run/containerd/s/0123abcd");
 * const state = await shim.call(Task.method.state, { id: "c1" });
 * shim.close();
 * ```
 * @module
 */
import { concatBytes } from "./bytes.ts";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type Request as TtrpcRequest,
  RequestSchema,
  ResponseSchema,
} from "../proto/gen/ttrpc/ttrpc_pb.ts";
import {
  Code,
  codeOf,
  DeadlineExceededError,
  ErrdefsError,
  fromCode,
  InvalidArgumentError,
  UnavailableError,
} from "./errdefs.ts";

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 10;
/** Largest payload a frame may carry (ttrpc's messageLengthMax). */
export const MAX_FRAME_PAYLOAD = 4 << 20;
/** Frame type of a request. */
export const FRAME_REQUEST = 1;
/** Frame type of a response. */
export const FRAME_RESPONSE = 2;

/** One decoded frame. */
export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  payload: Uint8Array;
}

/** Encode one frame; a payload over {@link MAX_FRAME_PAYLOAD} is refused. */
export function encodeFrame(frame: Frame): Uint8Array {
  const { payload } = frame;
  if (payload.byteLength > MAX_FRAME_PAYLOAD) {
    throw new InvalidArgumentError(
      `ttrpc message of ${payload.byteLength} bytes exceeds the limit of ${MAX_FRAME_PAYLOAD}`,
    );
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.byteLength);
  view.setUint32(4, frame.streamId);
  out[8] = frame.type;
  out[9] = frame.flags;
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive; it returns the frames
 * completed so far and keeps the rest. A header announcing more than the limit throws, since
 * the peer is then not speaking ttrpc.
 */
export class FrameDecoder {
  #buffer: Uint8Array = new Uint8Array(0);

  /** Append `chunk` and return every complete frame. */
  push(chunk: Uint8Array): Frame[] {
    this.#buffer = this.#buffer.byteLength === 0 ? chunk : concatBytes([this.#buffer, chunk]);
    const frames: Frame[] = [];
    while (this.#buffer.byteLength >= FRAME_HEADER_BYTES) {
      const view = new DataView(
        this.#buffer.buffer,
        this.#buffer.byteOffset,
        this.#buffer.byteLength,
      );
      const length = view.getUint32(0);
      if (length > MAX_FRAME_PAYLOAD) {
        throw new InvalidArgumentError(
          `ttrpc frame announces ${length} bytes, over the limit of ${MAX_FRAME_PAYLOAD}`,
        );
      }
      if (this.#buffer.byteLength < FRAME_HEADER_BYTES + length) break;
      frames.push({
        streamId: view.getUint32(4),
        type: view.getUint8(8),
        flags: view.getUint8(9),
        payload: this.#buffer.slice(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length),
      });
      this.#buffer = this.#buffer.subarray(FRAME_HEADER_BYTES + length);
    }
    return frames;
  }
}

/** Options of one {@link TtrpcClient.call}. */
export interface TtrpcCallOptions {
  /** Metadata sent with the request, e.g. `containerd-namespace-ttrpc`. */
  metadata?: Record<string, string>;
  /** Give up (DeadlineExceeded) after this long; also sent to the peer as timeout_nano. */
  timeoutMs?: number;
  /** Abort the wait (Canceled); the peer's answer, if any, is dropped. */
  signal?: AbortSignal;
}

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
}

/** Bytes asked of the kernel per read. */
const READ_CHUNK_BYTES = 64 * 1024;

/**
 * One ttrpc connection on a Deno connection, for both ends: frames are read and handed to
 * `onFrame` in order; frames written while a write is under way leave together in the next
 * one, in the order written. The first error, end of stream or {@link destroy} closes the
 * descriptor once and calls the close listeners with the reason (undefined for a clean end).
 *
 * Deno's own sockets rather than node streams: node:stream and node:net would be the only
 * reason to load them at boot (~12 ms and ~3 MiB of every start, measured), and Deno 2.9.3's
 * node:net closes unix descriptors twice (unix_socket.ts).
 */
export class FrameConnection {
  readonly #conn: Deno.Conn;
  readonly #closeListeners: ((reason: Error | undefined) => void)[] = [];
  #queued: Uint8Array[] = [];
  #writing = false;
  #ending = false;
  #closed = false;

  /** Start reading `conn`; every complete frame goes to `onFrame`. */
  constructor(conn: Deno.Conn, onFrame: (frame: Frame) => void) {
    this.#conn = conn;
    void this.#read(onFrame);
  }

  /** Whether the connection has closed (writes are then dropped). */
  get destroyed(): boolean {
    return this.#closed;
  }

  /** Call `listener` once, when the connection closes (at once if it has). */
  once(_event: "close", listener: (reason: Error | undefined) => void): void {
    if (this.#closed) queueMicrotask(() => listener(undefined));
    else this.#closeListeners.push(listener);
  }

  /** Queue `bytes` (one or more whole frames) behind what is already queued. */
  write(bytes: Uint8Array): void {
    if (this.#closed || this.#ending) return;
    this.#queued.push(bytes);
    if (!this.#writing) void this.#flush();
  }

  /** Close once everything queued is written. */
  end(): void {
    this.#ending = true;
    if (!this.#writing) this.destroy();
  }

  /** Close now; queued frames are dropped. Safe to call twice. */
  destroy(reason?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queued = [];
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    for (const listener of this.#closeListeners.splice(0)) listener(reason);
  }

  async #read(onFrame: (frame: Frame) => void): Promise<void> {
    const decoder = new FrameDecoder();
    const buffer = new Uint8Array(READ_CHUNK_BYTES);
    try {
      for (;;) {
        const read = await this.#conn.read(buffer);
        if (read === null || this.#closed) break;
        // The decoder keeps what it is handed until a frame completes: give it a copy.
        for (const frame of decoder.push(buffer.slice(0, read))) {
          if (this.#closed) return;
          onFrame(frame);
        }
      }
      this.destroy();
    } catch (err) {
      // After our own destroy() the failed read is its echo, and destroy() ignores it.
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queued.length > 0 && !this.#closed) {
        const chunks = this.#queued;
        this.#queued = [];
        let pending = chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
        while (pending.byteLength > 0) {
          pending = pending.subarray(await this.#conn.write(pending));
        }
      }
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#writing = false;
    }
    if (this.#ending) this.destroy();
  }
}

/**
 * A ttrpc client over one unix connection. Calls are multiplexed by stream id; when the
 * connection ends every pending call fails with Unavailable and {@link closed} resolves —
 * for a shim that is the signal that it died.
 */
export class TtrpcClient {
  readonly #connection: FrameConnection;
  readonly #pending = new Map<number, Pending>();
  readonly #closed: Promise<void>;
  #nextStreamId = 1;
  #closeReason: Error | undefined;

  private constructor(conn: Deno.Conn, address: string) {
    this.#connection = new FrameConnection(conn, (frame) => this.#onFrame(frame));
    this.#closed = new Promise((resolve) => {
      this.#connection.once("close", (reason) => {
        this.#closeReason ??= new UnavailableError(
          reason
            ? `ttrpc connection to ${address}: ${reason.message}`
            : `ttrpc connection to ${address} closed`,
          { cause: reason },
        );
        for (const pending of this.#pending.values()) pending.reject(this.#closeReason);
        this.#pending.clear();
        resolve();
      });
    });
  }

  /** Connect to the ttrpc server on the unix socket `path` (`unix://` prefix allowed). */
  static async dial(path: string): Promise<TtrpcClient> {
    const address = path.replace(/^unix:\/\//, "");
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ transport: "unix", path: address });
    } catch (err) {
      throw new UnavailableError(`dial ttrpc ${address}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new TtrpcClient(conn, address);
  }

  /** Resolves once the connection has ended, for whatever reason. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Call `method` with `input`; peer errors arrive as typed errors with the peer's message. */
  async call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    input: MessageInitShape<I>,
    options: TtrpcCallOptions = {},
  ): Promise<MessageShape<O>> {
    if (this.#closeReason) throw this.#closeReason;
    const streamId = this.#nextStreamId;
    this.#nextStreamId += 2;
    const request = create(RequestSchema, {
      service: method.parent.typeName,
      method: method.name,
      payload: toBinary(method.input, create(method.input, input)),
      timeoutNano: options.timeoutMs === undefined ? 0n : BigInt(options.timeoutMs) * 1_000_000n,
      metadata: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
    const frame = encodeFrame({
      streamId,
      type: FRAME_REQUEST,
      flags: 0,
      payload: toBinary(RequestSchema, request),
    });
    const what = `ttrpc ${method.parent.typeName}/${method.name}`;
    const payload = await new Promise<Uint8Array>((resolve, reject) => {
      const cleanups: (() => void)[] = [];
      const finish = () => {
        this.#pending.delete(streamId);
        for (const cleanup of cleanups) cleanup();
      };
      this.#pending.set(streamId, {
        resolve: (bytes) => {
          finish();
          resolve(bytes);
        },
        reject: (err) => {
          finish();
          reject(err);
        },
      });
      if (options.timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          this.#pending.get(streamId)?.reject(
            new DeadlineExceededError(`${what}: no answer within ${options.timeoutMs} ms`),
          );
        }, options.timeoutMs);
        cleanups.push(() => clearTimeout(timer));
      }
      const signal = options.signal;
      if (signal) {
        const onAbort = () => {
          this.#pending.get(streamId)?.reject(fromCode(Code.Canceled, `${what}: canceled`));
        };
        if (signal.aborted) onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener("abort", onAbort));
      }
      this.#connection.write(frame);
    });
    return fromBinary(method.output, payload);
  }

  #onFrame(frame: Frame): void {
    if (frame.type !== FRAME_RESPONSE) return;
    const pending = this.#pending.get(frame.streamId);
    if (!pending) return;
    let response;
    try {
      response = fromBinary(ResponseSchema, frame.payload);
    } catch (err) {
      pending.reject(new UnavailableError(`ttrpc: undecodable response: ${String(err)}`));
      return;
    }
    const status = response.status;
    if (status && status.code !== 0) {
      pending.reject(fromCode(status.code as Code, status.message));
      return;
    }
    pending.resolve(response.payload);
  }

  /** Close the connection; pending calls fail with Unavailable. */
  close(): void {
    this.#connection.destroy();
  }
}

/** What a server-side handler sees besides its request. */
export interface TtrpcCallContext {
  /** Request metadata; a key sent several times keeps its last value. */
  metadata: Map<string, string>;
  /** Aborts when the connection closes or the request's timeout passes. */
  signal: AbortSignal;
}

type UnaryHandler = (
  input: unknown,
  context: TtrpcCallContext,
) => Promise<unknown> | unknown;

/** Handlers for some of a service's unary methods, keyed by their local names. */
export type TtrpcServiceImpl<S extends DescService> = {
  [K in keyof S["method"]]?: S["method"][K] extends DescMethodUnary<infer I, infer O> ? (
      input: MessageShape<I>,
      context: TtrpcCallContext,
    ) => Promise<MessageInitShape<O>> | MessageInitShape<O>
    : never;
};

interface Route {
  method: DescMethodUnary;
  handler: UnaryHandler;
}

/**
 * A ttrpc server: register services, then listen it with listen.ts's `listenUnix` (containerd's
 * socket rules), which hands it each accepted connection through {@link serve}. Requests for
 * an unknown service or method answer Unimplemented; handler errors answer their typed code.
 */
export class TtrpcServer {
  readonly #routes = new Map<string, Route>();
  readonly #connections = new Set<FrameConnection>();

  /** Serve `impl` as `service`. */
  register<S extends DescService>(service: S, impl: TtrpcServiceImpl<S>): void {
    for (const method of service.methods) {
      const handler = (impl as Record<string, UnaryHandler | undefined>)[method.localName];
      if (handler === undefined || method.methodKind !== "unary") continue;
      this.#routes.set(`${service.typeName}/${method.name}`, {
        method: method as DescMethodUnary,
        handler,
      });
    }
  }

  /** Serve one accepted connection until it closes; returns it, for tracking by listen.ts. */
  serve(conn: Deno.Conn): FrameConnection {
    const closed = new AbortController();
    const connection: FrameConnection = new FrameConnection(conn, (frame) => {
      if (frame.type !== FRAME_REQUEST) return;
      void this.#answer(connection, frame, closed.signal);
    });
    this.#connections.add(connection);
    connection.once("close", () => {
      this.#connections.delete(connection);
      closed.abort();
    });
    return connection;
  }

  async #answer(connection: FrameConnection, frame: Frame, closed: AbortSignal): Promise<void> {
    let status: { code: number; message: string } | undefined;
    let payload = new Uint8Array(0);
    try {
      const request: TtrpcRequest = fromBinary(RequestSchema, frame.payload);
      const route = this.#routes.get(`${request.service}/${request.method}`);
      if (!route) {
        throw fromCode(
          Code.Unimplemented,
          `ttrpc: method ${request.service}/${request.method} is not served here`,
        );
      }
      const metadata = new Map(request.metadata.map((kv) => [kv.key, kv.value]));
      const signals = [closed];
      if (request.timeoutNano > 0n) {
        signals.push(AbortSignal.timeout(Number(request.timeoutNano / 1_000_000n)));
      }
      const input = fromBinary(route.method.input, request.payload);
      const output = await route.handler(input, { metadata, signal: AbortSignal.any(signals) });
      payload = toBinary(
        route.method.output,
        create(route.method.output, output as MessageInitShape<DescMessage>),
      );
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const code = err instanceof ErrdefsError ? err.code : codeOf(err);
      status = { code, message };
    }
    if (connection.destroyed) return;
    const response = create(ResponseSchema, { status, payload });
    connection.write(encodeFrame({
      streamId: frame.streamId,
      type: FRAME_RESPONSE,
      flags: 0,
      payload: toBinary(ResponseSchema, response),
    }));
  }

  /** Close every open connection (the listener is closed by its owner). */
  closeConnections(): void {
    for (const connection of this.#connections) connection.destroy();
    this.#connections.clear();
  }
}
