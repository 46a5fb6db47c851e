/**
 * `containerd-ts publish`: put one event on a running daemon's exchange, for shims that
 * publish through a binary (`-publish-binary`) rather than the ttrpc socket.
 *
 * Like containerd 1.6's `publish` command (cmd/containerd/command/publish.go): flags
 * `--namespace NS` and `--topic T`, the daemon's socket from the global `--address`/`-a`
 * (which the old shim puts before the command word: `containerd --address A publish --topic T
 * --namespace NS`; after it works too), the event as a protobuf `google.protobuf.Any` on
 * stdin, sent with containerd.services.events.v1.Events/Publish and the namespace in the
 * `containerd-namespace` header. Without `-a`, the config's `[grpc] address` is used.
 *
 * Exit 0 once the daemon took the event; otherwise one line on stderr and exit 1, as
 * containerd exits for any failure of this command: no topic, stdin not an Any, daemon not
 * reachable, or the daemon refusing the event (its message and kind, e.g. `invalid argument`).
 *
 * @example
 * ```ts
 * import { publishEvent } from "./publish.ts";
 * await publishEvent({
 *   address: "/run/containerd-ts/containerd-ts.sock",
 *   namespace: "default",
 *   topic: "/tasks/oom",
 *   payload: new Uint8Array(), // a serialized google.protobuf.Any
 * });
 * ```
 * @module
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import type { CommandContext } from "./cli.ts";
import { loadConfig } from "./config.ts";
import { concatBytes } from "./bytes.ts";
import { ErrdefsError, InvalidArgumentError } from "./errdefs.ts";
import { grpcMessageOf } from "./interceptors.ts";
import { Events } from "../proto/gen/containerd/services/events/v1/events_pb.ts";
import { dial } from "../client/connection.ts";
import { toTypedError } from "../client/errors.ts";
import { NAMESPACE_HEADER } from "../client/rpc.ts";

/** Options of {@link publishEvent}. */
export interface PublishOptions {
  /** The daemon's gRPC socket (a path, `unix:///path`, or `host:port`). */
  address: string;
  /** Namespace the event belongs to; sent as `containerd-namespace`. */
  namespace: string;
  /** The event's topic, e.g. `/tasks/exit`. */
  topic: string;
  /** The serialized `google.protobuf.Any` holding the event. */
  payload: Uint8Array;
  /** Give up after this long (DeadlineExceeded). Default 10 000 ms. */
  timeoutMs?: number;
}

/**
 * Decode the event a publisher writes on stdin: a serialized `google.protobuf.Any`. Bytes that
 * are not one throw InvalidArgumentError.
 *
 * @example
 * ```ts
 * import { create, toBinary } from "@bufbuild/protobuf";
 * import { AnySchema } from "@bufbuild/protobuf/wkt";
 * import { decodeEventPayload } from "./publish.ts";
 * const bytes = toBinary(AnySchema, create(AnySchema, { typeUrl: "x.Y" }));
 * decodeEventPayload(bytes).typeUrl; // "x.Y"
 * ```
 */
export function decodeEventPayload(bytes: Uint8Array): Any {
  try {
    return fromBinary(AnySchema, bytes);
  } catch (err) {
    throw new InvalidArgumentError(
      `event on stdin (${bytes.byteLength} bytes) is not a protobuf Any: ${
        err instanceof Error ? err.message : String(err)
      }`,
      { cause: err },
    );
  }
}

/**
 * Publish one event through the daemon's Events/Publish. Failures throw the typed errors of
 * errdefs.ts: UnavailableError when no daemon answers on `address`, the daemon's own kind
 * (InvalidArgumentError, FailedPreconditionError, ...) when it refuses the event.
 */
export async function publishEvent(options: PublishOptions): Promise<void> {
  if (options.topic === "") {
    throw new InvalidArgumentError("topic required to publish event");
  }
  const event = decodeEventPayload(options.payload);
  const connection = dial({
    address: options.address,
    connectTimeoutMs: options.timeoutMs ?? 10_000,
  });
  try {
    const client = createClient(Events, connection.transport);
    await client.publish(
      { topic: options.topic, event: create(AnySchema, event) },
      {
        headers: { [NAMESPACE_HEADER]: options.namespace },
        timeoutMs: options.timeoutMs ?? 10_000,
      },
    );
  } catch (err) {
    throw toTypedError(err, options.address);
  } finally {
    await connection.close();
  }
}

/** Read a stream to its end. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    length += chunk.byteLength;
  }
  return concatBytes(chunks, length);
}

/**
 * The `publish` command: flags from `ctx`, the event from `stdin` (default: the process's).
 * Returns 0 on success; prints one line and returns 1 on any failure.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * // echo -n <Any bytes> | containerd-ts -a SOCK publish --namespace default --topic /x/y
 * Deno.exitCode = await main(["-a", "/run/containerd-ts/containerd-ts.sock", "publish",
 *   "--namespace", "default", "--topic", "/x/y"]);
 * ```
 */
export async function runPublish(
  ctx: CommandContext,
  stdin: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<number> {
  const str = (name: string): string => {
    const value = ctx.values[name];
    return typeof value === "string" ? value : "";
  };
  const topic = str("topic");
  const namespace = str("namespace");
  let address = str("address");
  try {
    if (topic === "") throw new InvalidArgumentError("topic required to publish event");
    const payload = await readAll(stdin);
    if (address === "") {
      const { config } = await loadConfig({ config: str("config") || undefined }, ctx.env);
      address = config.grpc.address;
    }
    await publishEvent({ address, namespace, topic, payload });
    return 0;
  } catch (err) {
    if (!(err instanceof ErrdefsError)) throw err;
    const message = grpcMessageOf(err);
    const where = address === "" || message.includes(address) ? "" : ` to ${address}`;
    ctx.err(`containerd-ts: publish ${topic || "(no topic)"}${where}: ${message}\n`);
    return 1;
  }
}
