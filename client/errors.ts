/**
 * The one place where a failure seen by the client becomes a typed error.
 *
 * Every call the client makes goes through {@link toTypedError}: a gRPC status from the
 * daemon becomes the same error class the daemon threw (`NotFoundError`,
 * `AlreadyExistsError`, ... from server/errdefs.ts, built with `fromCode`), a socket that
 * cannot be reached becomes `UnavailableError` naming the address, and an abort or deadline
 * becomes `CanceledError` / `DeadlineExceededError`. Callers therefore branch on
 * `instanceof NotFoundError` (or `isNotFound(err)`) and never see a `ConnectError`.
 *
 * @example
 * ```ts
 * import { connect, NotFoundError } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * try {
 *   await client.content.info("sha256:" + "0".repeat(64));
 * } catch (err) {
 *   if (!(err instanceof NotFoundError)) throw err;
 * }
 * ```
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CanceledError,
  DeadlineExceededError,
  ErrdefsError,
  fromCode,
  PermissionDeniedError,
  UnavailableError,
} from "../server/errdefs.ts";

export {
  AbortedError,
  AlreadyExistsError,
  CanceledError,
  Code,
  codeOf,
  DeadlineExceededError,
  ErrdefsError,
  FailedPreconditionError,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  NotFoundError,
  NotImplementedError,
  OutOfRangeError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
} from "../server/errdefs.ts";

/** Socket-level error codes meaning "nothing answers at this address (now)". */
const UNREACHABLE = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTSOCK",
  "EPIPE",
  "ENOTCONN",
]);
/** Socket-level error codes meaning "you may not connect there". */
const FORBIDDEN = new Set(["EACCES", "EPERM"]);

/** The `code` of a Node system error anywhere on the cause chain (`ENOENT`, ...). */
function systemCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
    e = e.cause;
  }
  return undefined;
}

function withCause<E extends Error>(err: E, cause: unknown): E {
  Object.defineProperty(err, "cause", {
    value: cause,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  return err;
}

/**
 * Convert anything a call threw into the typed error a caller should see.
 *
 * - A typed error (`ErrdefsError`) is returned as is.
 * - A `ConnectError` caused by the socket (`ENOENT`, `ECONNREFUSED`, ...) becomes
 *   `UnavailableError("connect to <address>: ...")`; `EACCES` becomes
 *   `PermissionDeniedError`.
 * - Any other `ConnectError` becomes `fromCode(code, rawMessage)`: the daemon's message,
 *   unchanged, in the class for its gRPC code. The ConnectError stays reachable as `cause`.
 * - An `AbortError` / `TimeoutError` DOMException becomes `CanceledError` /
 *   `DeadlineExceededError`.
 * - Anything else (a bug in the caller's callback, say) is returned unchanged.
 *
 * @param err What was thrown.
 * @param address The socket the call went to, named in connection errors.
 * @returns The error to throw instead.
 *
 * @example
 * ```ts
 * import { ConnectError, Code } from "@connectrpc/connect";
 * import { toTypedError, NotFoundError } from "./errors.ts";
 * const err = toTypedError(new ConnectError("namespace x: not found", Code.NotFound));
 * console.log(err instanceof NotFoundError); // true
 * ```
 */
export function toTypedError(err: unknown, address?: string): unknown {
  if (err instanceof ErrdefsError) return err;
  if (err instanceof ConnectError) {
    const sys = systemCode(err.cause);
    const where = address === undefined ? "the daemon" : address;
    if (sys !== undefined && UNREACHABLE.has(sys)) {
      const why = sys === "ENOENT"
        ? "no such socket"
        : sys === "ECONNREFUSED"
        ? "connection refused, no daemon listening"
        : `connection lost (${sys})`;
      return withCause(new UnavailableError(`connect to ${where}: ${why}`), err);
    }
    if (sys !== undefined && FORBIDDEN.has(sys)) {
      return withCause(new PermissionDeniedError(`connect to ${where}: permission denied`), err);
    }
    if (err.code === Code.Canceled && err.rawMessage === "connection aborted") {
      return withCause(new CanceledError("client is closed"), err);
    }
    return withCause(fromCode(err.code, err.rawMessage), err);
  }
  if (err instanceof DOMException && err.name === "AbortError") {
    return withCause(new CanceledError(err.message || "operation was aborted"), err);
  }
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return withCause(new DeadlineExceededError(err.message || "operation timed out"), err);
  }
  return err;
}
