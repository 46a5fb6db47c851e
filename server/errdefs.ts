/**
 * Typed errors shared by every layer, and their gRPC codes.
 *
 * Stores and services throw these; one interceptor turns them into gRPC statuses, so a bad
 * request never surfaces as `Unknown`. Mirrors containerd's errdefs package: the kind decides
 * the code, the message names the object and the cause.
 *
 * @example
 * ```ts
 * import { NotFoundError, codeOf } from "./errdefs.ts";
 * const err = new NotFoundError(`content digest sha256:abc: not found`);
 * codeOf(err); // Code.NotFound
 * ```
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";

export { Code };

/** Base class of every typed error; `code` is the gRPC status it maps to. */
export class ErrdefsError extends Error {
  /** The gRPC status code a client sees for this error. */
  readonly code: Code;
  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The object asked for does not exist (gRPC 5). */
export class NotFoundError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.NotFound, message, options);
  }
}

/** The object to create exists already (gRPC 6). */
export class AlreadyExistsError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.AlreadyExists, message, options);
  }
}

/** The request is malformed whatever the state of the daemon (gRPC 3). */
export class InvalidArgumentError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.InvalidArgument, message, options);
  }
}

/** The request is valid but the state does not allow it now (gRPC 9). */
export class FailedPreconditionError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.FailedPrecondition, message, options);
  }
}

/** The resource is busy or not reachable; retrying may succeed (gRPC 14). */
export class UnavailableError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.Unavailable, message, options);
  }
}

/** The operation is not implemented by this daemon (gRPC 12). */
export class NotImplementedError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.Unimplemented, message, options);
  }
}

/** The caller gave up (gRPC 1). */
export class CanceledError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.Canceled, message, options);
  }
}

/** The deadline passed before the operation finished (gRPC 4). */
export class DeadlineExceededError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.DeadlineExceeded, message, options);
  }
}

/** A size or count limit was hit (gRPC 8). */
export class ResourceExhaustedError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.ResourceExhausted, message, options);
  }
}

/** The caller may not do this (gRPC 7). */
export class PermissionDeniedError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.PermissionDenied, message, options);
  }
}

/** A request ran past the end of an object, e.g. a read offset past a blob (gRPC 11). */
export class OutOfRangeError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.OutOfRange, message, options);
  }
}

/** A concurrent change won; the caller may retry (gRPC 10). */
export class AbortedError extends ErrdefsError {
  constructor(message: string, options?: ErrorOptions) {
    super(Code.Aborted, message, options);
  }
}

/** The gRPC code an error maps to: typed errors by kind, ConnectErrors as they are, else Unknown. */
export function codeOf(err: unknown): Code {
  if (err instanceof ErrdefsError) return err.code;
  if (err instanceof ConnectError) return err.code;
  if (err instanceof DOMException && err.name === "AbortError") return Code.Canceled;
  if (err instanceof DOMException && err.name === "TimeoutError") return Code.DeadlineExceeded;
  return Code.Unknown;
}

/** True when `err` is (or maps to) NotFound; lets callers branch without instanceof chains. */
export function isNotFound(err: unknown): boolean {
  return codeOf(err) === Code.NotFound;
}

/** True when `err` is (or maps to) AlreadyExists. */
export function isAlreadyExists(err: unknown): boolean {
  return codeOf(err) === Code.AlreadyExists;
}

/**
 * Convert any thrown value into the ConnectError a client sees. Typed errors keep their code
 * and message; anything else becomes Unknown with its message (the server logs the stack).
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(message, codeOf(err), undefined, undefined, err);
}

/**
 * The typed error for a gRPC status received from a peer (a shim, another daemon, this
 * daemon seen from the client), so callers handle remote and local failures alike.
 */
export function fromCode(code: Code, message: string): ErrdefsError {
  switch (code) {
    case Code.NotFound:
      return new NotFoundError(message);
    case Code.AlreadyExists:
      return new AlreadyExistsError(message);
    case Code.InvalidArgument:
      return new InvalidArgumentError(message);
    case Code.FailedPrecondition:
      return new FailedPreconditionError(message);
    case Code.Unavailable:
      return new UnavailableError(message);
    case Code.Unimplemented:
      return new NotImplementedError(message);
    case Code.Canceled:
      return new CanceledError(message);
    case Code.DeadlineExceeded:
      return new DeadlineExceededError(message);
    case Code.ResourceExhausted:
      return new ResourceExhaustedError(message);
    case Code.PermissionDenied:
      return new PermissionDeniedError(message);
    case Code.OutOfRange:
      return new OutOfRangeError(message);
    case Code.Aborted:
      return new AbortedError(message);
    default:
      return new ErrdefsError(code, message);
  }
}
