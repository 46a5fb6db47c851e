/**
 * The daemon's Connect interceptors: request context (namespace, lease) and error mapping.
 *
 * containerd carries the namespace in the `containerd-namespace` header and the lease in
 * `containerd-lease`; {@link contextInterceptor} copies them into Connect context values so a
 * service reads them with {@link namespaceOf} / {@link leaseOf} instead of parsing headers.
 * {@link errorInterceptor} is the one place where typed errors (errdefs.ts) become gRPC
 * statuses, for unary calls and for errors thrown while a server stream is iterated.
 *
 * @example
 * ```ts
 * import { contextInterceptor, errorInterceptor, namespaceOf } from "./interceptors.ts";
 * import { silentLogger } from "./log.ts";
 * const interceptors = [contextInterceptor(), errorInterceptor(silentLogger())];
 * // in a service: const ns = namespaceOf(ctx);
 * ```
 * @module
 */
import {
  Code,
  ConnectError,
  type ContextKey,
  createContextKey,
  type HandlerContext,
  type Interceptor,
  type StreamResponse,
} from "@connectrpc/connect";
import { codeOf, ErrdefsError, FailedPreconditionError, InvalidArgumentError } from "./errdefs.ts";
import type { Logger } from "./log.ts";

/** Header carrying the namespace of a gRPC call, as containerd's clients send it. */
export const NAMESPACE_HEADER = "containerd-namespace";
/** Header carrying the lease a call's new resources join. */
export const LEASE_HEADER = "containerd-lease";

/** The request's namespace as sent in `containerd-namespace` (unvalidated). */
export const namespaceKey: ContextKey<string | undefined> = createContextKey<string | undefined>(
  undefined,
  { description: NAMESPACE_HEADER },
);

/** The request's lease as sent in `containerd-lease`. */
export const leaseKey: ContextKey<string | undefined> = createContextKey<string | undefined>(
  undefined,
  { description: LEASE_HEADER },
);

/** containerd's identifier rule (namespaces, leases, containers...). */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;
/** Longest identifier containerd accepts, in bytes. */
export const IDENTIFIER_MAX_LENGTH = 76;

/**
 * Check an identifier against containerd's rule (identifiers.Validate), throwing
 * InvalidArgumentError with containerd's wording; exported so namespaces, leases and
 * containers validate their ids the same way.
 */
export function validateIdentifier(id: string): void {
  // Every call validates its namespace: a valid identifier is ASCII, so its length in UTF-16
  // units is its length in bytes and no encoding is needed to check it.
  if (id.length <= IDENTIFIER_MAX_LENGTH && IDENTIFIER_PATTERN.test(id)) return;
  if (id.length === 0) throw new InvalidArgumentError("identifier must not be empty");
  const bytes = new TextEncoder().encode(id).byteLength;
  if (bytes > IDENTIFIER_MAX_LENGTH) {
    throw new InvalidArgumentError(
      `identifier ${
        JSON.stringify(id)
      } greater than maximum length (${IDENTIFIER_MAX_LENGTH} characters)`,
    );
  }
  if (!IDENTIFIER_PATTERN.test(id)) {
    throw new InvalidArgumentError(
      `identifier ${JSON.stringify(id)} must match ${IDENTIFIER_PATTERN.source}`,
    );
  }
}

/**
 * The request's namespace; throws FailedPreconditionError("namespace is required") when
 * missing, InvalidArgumentError when it breaks containerd's identifier rule
 * (^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$, ≤76 chars). Namespaced services call this first,
 * as containerd's services call namespaces.NamespaceRequired.
 */
export function namespaceOf(ctx: HandlerContext): string {
  const namespace = ctx.values.get(namespaceKey);
  if (namespace === undefined || namespace === "") {
    throw new FailedPreconditionError("namespace is required");
  }
  try {
    validateIdentifier(namespace);
  } catch (err) {
    throw new InvalidArgumentError(`namespace validation: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return namespace;
}

/** The lease the request's new resources join, if the client sent one. */
export function leaseOf(ctx: HandlerContext): string | undefined {
  const lease = ctx.values.get(leaseKey);
  return lease === "" ? undefined : lease;
}

/**
 * First value of a header: grpc-go clients may repeat metadata, and containerd reads the
 * first value, while fetch Headers joins repeats with ", ". Identifiers cannot hold commas.
 */
function firstValue(value: string | null): string | undefined {
  if (value === null) return undefined;
  const comma = value.indexOf(",");
  return (comma < 0 ? value : value.slice(0, comma)).trim();
}

/** Reads the headers into context values. */
export function contextInterceptor(): Interceptor {
  return (next) => (req) => {
    const namespace = firstValue(req.header.get(NAMESPACE_HEADER));
    if (namespace !== undefined) req.contextValues.set(namespaceKey, namespace);
    const lease = firstValue(req.header.get(LEASE_HEADER));
    if (lease !== undefined) req.contextValues.set(leaseKey, lease);
    return next(req);
  };
}

/**
 * The text containerd's errdefs sentinels add at the end of a message ("...: not found"); Go
 * clients strip it and add their own, other clients read it as containerd's message.
 */
const KIND_SUFFIX: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "invalid argument",
  [Code.NotFound]: "not found",
  [Code.AlreadyExists]: "already exists",
  [Code.FailedPrecondition]: "failed precondition",
  [Code.Unavailable]: "unavailable",
  [Code.Unimplemented]: "not implemented",
};

/**
 * The wire message of a typed error: its message with containerd's kind suffix appended
 * unless already there (`namespace is required` → `namespace is required: failed
 * precondition`), so messages match containerd's byte for byte.
 */
export function grpcMessageOf(err: ErrdefsError): string {
  const suffix = KIND_SUFFIX[err.code];
  if (suffix === undefined) return err.message;
  if (err.message === suffix || err.message.endsWith(`: ${suffix}`)) return err.message;
  return err.message === "" ? suffix : `${err.message}: ${suffix}`;
}

/** Convert anything thrown by a service into the ConnectError the client sees. */
function mapError(err: unknown, method: string, log: Logger): ConnectError {
  let out: ConnectError;
  if (err instanceof ConnectError) {
    out = err;
  } else if (err instanceof ErrdefsError) {
    out = new ConnectError(grpcMessageOf(err), err.code, undefined, undefined, err);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    out = new ConnectError(message, codeOf(err), undefined, undefined, err);
  }
  if (out.code === Code.Unknown || out.code === Code.Internal) {
    const cause = out === err ? out.cause ?? err : err;
    log.error("rpc failed", {
      method,
      code: Code[out.code],
      error: out.rawMessage,
      stack: cause instanceof Error ? cause.stack : undefined,
    });
  } else if (log.enabled("debug")) {
    log.debug("rpc failed", { method, code: Code[out.code], error: out.rawMessage });
  }
  return out;
}

/** Re-throw errors raised while a response stream is iterated, mapped. */
async function* mapStream<T>(
  source: AsyncIterable<T>,
  method: string,
  log: Logger,
): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (err) {
    throw mapError(err, method, log);
  }
}

/**
 * Maps thrown typed errors (errdefs.ts) to ConnectError with the right code; logs
 * Unknown/Internal with stack at error level; works for unary AND for errors thrown while
 * iterating a server stream. Put it innermost (last) so other interceptors see the mapped code.
 */
export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const method = `/${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const mapped: StreamResponse = { ...res, message: mapStream(res.message, method, log) };
      return mapped;
    } catch (err) {
      throw mapError(err, method, log);
    }
  };
}
