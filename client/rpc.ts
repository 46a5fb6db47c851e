/**
 * The call layer every service wrapper is written against: unary, server-streaming and
 * bidi-streaming calls with the client's headers (`containerd-namespace`,
 * `containerd-lease`), its default deadline, and errors converted by
 * {@link toTypedError} — so a wrapper is a thin, typed translation and adding a service is
 * one module exporting a {@link ServiceDef}.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * // A wrapper for a new service: one module.
 * import { defineService, type Rpc } from "./rpc.ts";
 * import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
 *
 * class MyVersion {
 *   constructor(private readonly rpc: Rpc) {}
 *   async text(): Promise<string> {
 *     const res = await this.rpc.unary(Version.method.version, {});
 *     return `${res.version} ${res.revision}`;
 *   }
 * }
 * export const myVersion = defineService("my-version", (rpc) => new MyVersion(rpc));
 * // then: client.use(myVersion).text()
 * ```
 * @module
 */
import type {
  DescMessage,
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { CanceledError } from "../server/errdefs.ts";
import { toTypedError } from "./errors.ts";

/** The header carrying the namespace of a call (containerd's `namespaces.GRPCHeader`). */
export const NAMESPACE_HEADER = "containerd-namespace";
/** The header carrying the lease new resources join (containerd's `leases.GRPCHeader`). */
export const LEASE_HEADER = "containerd-lease";

/** Per-call options every wrapper method accepts. */
export interface CallOptions {
  /** Abort the call; the call rejects with `CanceledError`. */
  signal?: AbortSignal;
  /**
   * Deadline of this call in milliseconds; past it the call rejects with
   * `DeadlineExceededError`. Default: the client's `timeoutMs` for unary calls, none for
   * streams (a stream lives as long as its consumer reads it).
   */
  timeoutMs?: number;
}

/** What an {@link Rpc} sends its calls through; built by the client. */
export interface RpcSettings {
  /** The Connect transport (gRPC over the unix socket, or an in-process router). */
  readonly transport: Transport;
  /** The address calls go to, named in connection errors. */
  readonly address: string;
  /** Sent as `containerd-namespace`; "" sends no header. */
  readonly namespace: string;
  /** Sent as `containerd-lease`; "" sends no header. */
  readonly lease: string;
  /** Default deadline of unary calls; undefined: none. */
  readonly timeoutMs: number | undefined;
  /** True once the connection was closed; calls then reject with `CanceledError`. */
  readonly isClosed: () => boolean;
}

async function* once<T>(value: T): AsyncGenerator<T> {
  yield value;
}

/**
 * Typed calls with the client's headers, deadline and error mapping. Service wrappers get
 * one from the client (see {@link ServiceDef}); scripts rarely need it directly.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const res = await client.rpc.unary(Version.method.version, {});
 * console.log(res.version);
 * ```
 */
export class Rpc {
  readonly #settings: RpcSettings;

  /** Build the call layer over `settings` (the client does this). */
  constructor(settings: RpcSettings) {
    this.#settings = settings;
  }

  /** The namespace sent with each call ("" when none). */
  get namespace(): string {
    return this.#settings.namespace;
  }

  /** The lease sent with each call ("" when none). */
  get lease(): string {
    return this.#settings.lease;
  }

  /** The address calls go to. */
  get address(): string {
    return this.#settings.address;
  }

  /** The request headers of a call. */
  headers(): Headers {
    const headers = new Headers();
    if (this.#settings.namespace !== "") headers.set(NAMESPACE_HEADER, this.#settings.namespace);
    if (this.#settings.lease !== "") headers.set(LEASE_HEADER, this.#settings.lease);
    return headers;
  }

  #assertOpen(): void {
    if (this.#settings.isClosed()) throw new CanceledError("client is closed");
  }

  /**
   * One unary call; rejects with the daemon's typed error.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * import { Introspection } from "../proto/gen/containerd/services/introspection/v1/introspection_pb.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const rpc = client.rpc;
   * const res = await rpc.unary(Introspection.method.server, {});
   * ```
   */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    input: MessageInitShape<I>,
    options: CallOptions = {},
  ): Promise<MessageShape<O>> {
    this.#assertOpen();
    const s = this.#settings;
    try {
      const res = await s.transport.unary(
        method,
        options.signal,
        options.timeoutMs ?? s.timeoutMs,
        this.headers(),
        input,
      );
      return res.message;
    } catch (err) {
      throw toTypedError(err, s.address);
    }
  }

  /**
   * A server-streaming call as an async iterable of responses; breaking out of the loop
   * cancels the call. Errors (also those arriving mid-stream) are typed.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * import { Health } from "../proto/gen/grpc/health/v1/health_pb.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const rpc = client.rpc;
   * for await (const res of rpc.serverStream(Health.method.watch, {})) console.log(res.status);
   * ```
   */
  async *serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    input: MessageInitShape<I>,
    options: CallOptions = {},
  ): AsyncGenerator<MessageShape<O>, void, undefined> {
    yield* this.#stream(method, once(input), options);
  }

  /**
   * A bidi-streaming call: `inputs` is sent as the consumer of the result reads; the result
   * yields the daemon's responses. Returning early from the loop cancels the call.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * import { Content } from "../proto/gen/containerd/services/content/v1/content_pb.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * import { WriteAction } from "../proto/gen/containerd/services/content/v1/content_pb.ts";
   * import { RequestQueue } from "./mod.ts";
   * const requests = new RequestQueue<{ action: WriteAction; ref: string }>();
   * requests.push({ action: WriteAction.STAT, ref: "upload-1" });
   * requests.close();
   * for await (const res of client.rpc.bidiStream(Content.method.write, requests)) {
   *   console.log(res.offset);
   * }
   * ```
   */
  async *bidiStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    inputs: AsyncIterable<MessageInitShape<I>>,
    options: CallOptions = {},
  ): AsyncGenerator<MessageShape<O>, void, undefined> {
    yield* this.#stream(method, inputs, options);
  }

  async *#stream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O> | DescMethodBiDiStreaming<I, O>,
    inputs: AsyncIterable<MessageInitShape<I>>,
    options: CallOptions,
  ): AsyncGenerator<MessageShape<O>, void, undefined> {
    this.#assertOpen();
    const s = this.#settings;
    let messages: AsyncIterable<MessageShape<O>>;
    try {
      const res = await s.transport.stream(
        method,
        options.signal,
        options.timeoutMs,
        this.headers(),
        inputs,
      );
      messages = res.message;
    } catch (err) {
      throw toTypedError(err, s.address);
    }
    try {
      for await (const message of messages) yield message;
    } catch (err) {
      throw toTypedError(err, s.address);
    }
  }
}

/**
 * A service wrapper the client can build: `name` for messages, `create` to bind it to a
 * client's {@link Rpc}. `client.use(def)` builds it once per client.
 */
export interface ServiceDef<T> {
  /** Short name, e.g. "content". */
  readonly name: string;
  /** Build the wrapper over a client's call layer. */
  create(rpc: Rpc): T;
}

/**
 * Declare a service wrapper; see the module example.
 *
 * @example
 * ```ts
 * import { connect, defineService, VersionClient } from "./mod.ts";
 * const version = defineService("version", (rpc) => new VersionClient(rpc));
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * console.log(await client.use(version).get());
 * ```
 */
export function defineService<T>(name: string, create: (rpc: Rpc) => T): ServiceDef<T> {
  return { name, create };
}

/**
 * An async-iterable queue of requests for a client- or bidi-streaming call: `push` adds a
 * message, `close` ends the stream (half-close). Used by the content writer.
 *
 * @example
 * ```ts
 * const q = new RequestQueue<number>();
 * q.push(1);
 * q.close();
 * for await (const n of q) console.log(n); // 1
 * ```
 */
export class RequestQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #closed = false;
  #wake: (() => void) | undefined;

  /** Queue a message; ignored once closed. */
  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake?.();
  }

  /** End the stream after the queued messages. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    try {
      for (;;) {
        if (this.#items.length > 0) {
          yield this.#items.shift() as T;
          continue;
        }
        if (this.#closed) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
      }
    } finally {
      this.#closed = true;
      this.#items.length = 0;
    }
  }
}
