/**
 * containerd's rules for the path of a listening unix socket, shared by the gRPC and ttrpc
 * listeners (listen.ts) and the debug and metrics endpoints (http_listen.ts): the parent
 * directory is created 0711; a socket file left by a crashed daemon is removed, but only
 * after a connect probe shows nothing listens on it (a live daemon never loses its socket to a
 * second one started by mistake), and a path that is not a socket is never deleted.
 *
 * @example
 * ```ts
 * import { prepareSocketPath } from "./socket_path.ts";
 * await prepareSocketPath("/run/containerd-ts/containerd-ts.sock"); // ready for Deno.listen
 * ```
 * @module
 */
import * as path from "node:path";

/** Thrown when a unix socket path is held by a live listener or is not a socket at all. */
export class AddressInUseError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AddressInUseError";
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Make `socketPath`'s directory (0711) and clear the path for a new listener: nothing there is
 * fine, a socket nobody answers on is removed, a live socket or a non-socket throws
 * {@link AddressInUseError} naming the path.
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  try {
    await Deno.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o711 });
  } catch (err) {
    throw new Error(`create directory of socket ${socketPath}: ${messageOf(err)}`, { cause: err });
  }
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.lstat(socketPath);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new Error(`inspect socket ${socketPath}: ${messageOf(err)}`, { cause: err });
  }
  if (!stat.isSocket) {
    throw new AddressInUseError(`cannot listen on ${socketPath}: it exists and is not a socket`);
  }
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socketPath });
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionRefused || err instanceof Deno.errors.NotFound) {
      try {
        await Deno.remove(socketPath);
      } catch (removeErr) {
        if (!(removeErr instanceof Deno.errors.NotFound)) {
          throw new Error(`remove stale socket ${socketPath}: ${messageOf(removeErr)}`, {
            cause: removeErr,
          });
        }
      }
      return;
    }
    throw new Error(`probe socket ${socketPath}: ${messageOf(err)}`, { cause: err });
  }
  conn.close();
  throw new AddressInUseError(`another process is listening on ${socketPath}`);
}
