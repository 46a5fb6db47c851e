/**
 * Listen a node:http (HTTP/1.1) server on a unix socket path or on `host:port`.
 *
 * The debug and metrics endpoints are plain HTTP/1.1 servers, like containerd's; this helper
 * gives both the same socket handling: for a unix path the parent directory is made (0711),
 * a stale socket left by a crashed daemon is removed only after a connect probe shows that
 * nothing listens on it (a live daemon is never robbed of its socket), and the new socket
 * gets mode 0660 and the configured owner. The returned `close` stops the server, drops open
 * keep-alive connections and removes the socket file it made.
 *
 * @example
 * ```ts
 * import * as http from "node:http";
 * import { listenHttp } from "./http_listen.ts";
 * const server = http.createServer((_req, res) => res.end("ok"));
 * const listener = await listenHttp(server, { address: "127.0.0.1:0" });
 * console.log(listener.address); // e.g. 127.0.0.1:40321
 * await listener.close();
 * ```
 * @module
 */
import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { AddressInUseError, prepareSocketPath } from "./socket_path.ts";
import type { UnixSocket, UnixSocketListener } from "./unix_socket.ts";

/** Options of {@link listenHttp}. */
export interface HttpListenOptions {
  /** A unix socket path (see {@link isUnixAddress}) or `host:port` (`[v6]:port`, `:port`). */
  address: string;
  /** Owner set on a unix socket when non-zero. Default 0 (left as created). */
  uid?: number;
  /** Group set on a unix socket when non-zero. Default 0 (left as created). */
  gid?: number;
  /** Mode of a unix socket. Default 0o660, as containerd's local listeners. */
  mode?: number;
}

/** A listening server: where it listens and how to stop it. */
export interface HttpListener {
  /** The socket path, or `host:port` with the port actually bound (useful with port 0). */
  readonly address: string;
  /** Stop accepting, drop open connections, remove the unix socket; safe to call twice. */
  close(): Promise<void>;
}

/** Thrown when a unix socket path is held by a live listener or is not a socket at all. */
export { AddressInUseError };

/**
 * Whether `address` names a unix socket: absolute, or containing "/" (e.g. `./run/d.sock`).
 * Everything else is `host:port`. Exported so config validation uses the same rule.
 */
export function isUnixAddress(address: string): boolean {
  return path.isAbsolute(address) || address.includes("/");
}

/**
 * Split `host:port` (`[::1]:9000`, `:9000`, `localhost:0`) as Go's net.SplitHostPort does;
 * throws naming the address when the port is missing or not a number in 0..65535.
 */
export function splitHostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  if (at < 0) throw new Error(`listen on ${JSON.stringify(address)}: missing port`);
  let host = address.slice(0, at);
  const portText = address.slice(at + 1);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  else if (host.includes(":")) {
    throw new Error(`listen on ${JSON.stringify(address)}: IPv6 hosts must be in brackets`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new Error(`listen on ${JSON.stringify(address)}: bad port ${JSON.stringify(portText)}`);
  }
  return { host, port: Number(portText) };
}

/** Listen `server` on `options.address`; resolves once it accepts connections. */
export async function listenHttp(
  server: http.Server,
  options: HttpListenOptions,
): Promise<HttpListener> {
  if (isUnixAddress(options.address)) return await listenUnix(server, options);
  const { host, port } = splitHostPort(options.address);
  await listenOn(
    server,
    (done) => host === "" ? server.listen(port, done) : server.listen(port, host, done),
  );
  const info = server.address() as AddressInfo;
  const shown = info.address.includes(":") ? `[${info.address}]` : info.address;
  return { address: `${shown}:${info.port}`, close: closer(server, async () => {}) };
}

async function listenUnix(server: http.Server, options: HttpListenOptions): Promise<HttpListener> {
  const socketPath = path.resolve(options.address);
  await prepareSocketPath(socketPath);
  // Deno's own listener, never node:net's (which closes unix descriptors twice; unix_socket.ts).
  // Loaded here, not at import: listen.ts shares this module, and the daemon's boot needs no
  // node streams.
  const { UnixSocketListener } = await import("./unix_socket.ts");
  const sockets = new Set<UnixSocket>();
  const listener = UnixSocketListener.listen(socketPath, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    server.emit("connection", socket);
  });
  const close = closeUnix(listener, sockets);
  try {
    await Deno.chmod(socketPath, options.mode ?? 0o660);
    const uid = options.uid ?? 0;
    const gid = options.gid ?? 0;
    if (uid !== 0 || gid !== 0) {
      // A zero id means "leave as is", so a non-root daemon can still set only the group.
      await Deno.chown(socketPath, uid === 0 ? null : uid, gid === 0 ? null : gid);
    }
  } catch (err) {
    await close();
    throw new Error(`set mode and owner of socket ${socketPath}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  return { address: socketPath, close };
}

/**
 * Stop accepting (the listener removes its socket file if it is still ours) and drop open
 * connections, resolving once they are closed; safe to call twice.
 */
function closeUnix(listener: UnixSocketListener, sockets: Set<UnixSocket>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= (async () => {
      await listener.close();
      await Promise.all([...sockets].map((socket) =>
        new Promise<void>((resolve) => {
          socket.once("close", () => resolve());
          socket.destroy();
        })
      ));
    })();
    return closing;
  };
}

/** Run `start` (a node server's listen) and resolve once it listens, reject on its error. */
export function listenOn(
  server: {
    once(event: "error", listener: (err: Error) => void): unknown;
    off(event: "error", listener: (err: Error) => void): unknown;
  },
  start: (done: () => void) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    start(() => {
      server.off("error", onError);
      resolve();
    });
  });
}

function closer(server: http.Server, after: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }).then(after);
    return closing;
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
