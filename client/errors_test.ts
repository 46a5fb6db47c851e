import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CanceledError,
  DeadlineExceededError,
  ErrdefsError,
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
  toTypedError,
  UnavailableError,
} from "./errors.ts";

function systemError(code: string): Error {
  return Object.assign(new Error(`connect ${code} /x.sock`), { code });
}

Deno.test("toTypedError: a gRPC status becomes its errdefs class with the daemon's message", () => {
  const wire = new ConnectError("namespace x: not found", Code.NotFound);
  const err = toTypedError(wire, "/x.sock");
  assert.ok(err instanceof NotFoundError);
  assert.equal(err.message, "namespace x: not found");
  assert.equal(err.code, Code.NotFound);
  assert.equal(err.cause, wire);
  const pre = toTypedError(new ConnectError("namespace is required", Code.FailedPrecondition));
  assert.ok(pre instanceof FailedPreconditionError);
  const other = toTypedError(new ConnectError("boom", Code.Internal));
  assert.ok(other instanceof ErrdefsError);
  assert.equal((other as ErrdefsError).code, Code.Internal);
});

Deno.test("toTypedError: socket errors name the address", () => {
  const missing = toTypedError(
    new ConnectError("connect ENOENT", Code.Internal, undefined, undefined, systemError("ENOENT")),
    "/run/x.sock",
  );
  assert.ok(missing instanceof UnavailableError);
  assert.equal(missing.message, "connect to /run/x.sock: no such socket");
  const refused = toTypedError(
    new ConnectError(
      "refused",
      Code.Unavailable,
      undefined,
      undefined,
      systemError("ECONNREFUSED"),
    ),
    "/run/x.sock",
  );
  assert.ok(refused instanceof UnavailableError);
  assert.match((refused as Error).message, /connection refused/);
  const denied = toTypedError(
    new ConnectError("denied", Code.Internal, undefined, undefined, systemError("EACCES")),
    "/run/x.sock",
  );
  assert.ok(denied instanceof PermissionDeniedError);
});

Deno.test("toTypedError: aborts and timeouts, and pass-through of the rest", () => {
  assert.ok(toTypedError(new DOMException("stop", "AbortError")) instanceof CanceledError);
  assert.ok(
    toTypedError(new DOMException("late", "TimeoutError")) instanceof DeadlineExceededError,
  );
  const typed = new NotFoundError("x");
  assert.equal(toTypedError(typed), typed);
  const plain = new TypeError("caller bug");
  assert.equal(toTypedError(plain), plain);
});
