/**
 * The client's connection: one HTTP/2 session (h2c) to the daemon's socket, carrying gRPC,
 * as ctr and containerd's Go client use one connection for every call.
 *
 * Built on connect-node's `Http2SessionManager` with a `createConnection` that dials the
 * unix socket (or `host:port` for the daemon's `[grpc] tcp_address`), so the manager keeps
 * its keep-alive and reconnect logic while the client can close the session on dispose.
 *
 * @example
 * ```ts
 * import { dial } from "./connection.ts";
 * const conn = dial({ address: "/run/containerd-ts/containerd-ts.sock" });
 * // ... conn.transport for Connect clients ...
 * await conn.close();
 * ```
 * @module
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { connectUnix } from "../server/unix_socket.ts";
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** A transport plus its lifetime; the client owns one and shares it with derived clients. */
export interface Connection {
  /** Where calls go, as given (named in errors). */
  readonly address: string;
  /** The Connect transport calls go through. */
  readonly transport: Transport;
  /** True once {@link Connection.close} was called. */
  readonly closed: boolean;
  /** Close the HTTP/2 session (open streams end with CanceledError); idempotent. */
  close(): Promise<void>;
}

/** Options of {@link dial}. */
export interface DialOptions {
  /**
   * The daemon's socket: a unix socket path (also as `unix:///path`), or `host:port` for a
   * TCP listener (`[grpc] tcp_address`, plaintext h2c).
   */
  address: string;
  /** Give up establishing the connection after this long. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Close the session after this long without calls (it reopens on the next). Default 15 min. */
  idleTimeoutMs?: number;
}

/** Where to dial: a unix path or a TCP host and port. */
export type Endpoint = { path: string } | { host: string; port: number };

/**
 * Parse a daemon address: `unix:///p` and anything with a `/` is a unix socket path;
 * `host:port` and `[v6]:port` are TCP.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./connection.ts";
 * parseAddress("unix:///run/x.sock"); // { path: "/run/x.sock" }
 * parseAddress("127.0.0.1:1234");     // { host: "127.0.0.1", port: 1234 }
 * ```
 */
export function parseAddress(address: string): Endpoint {
  if (address.startsWith("unix://")) return { path: address.slice("unix://".length) };
  if (!address.includes("/")) {
    const tcp = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address);
    if (tcp) {
      const port = Number(tcp[3]);
      if (port > 0 && port < 65536) return { host: tcp[1] ?? tcp[2] ?? "", port };
    }
  }
  return { path: address };
}

/**
 * Open a gRPC connection to the daemon. Dialing is lazy: the socket is opened by the first
 * call, and reopened by a later call if it dropped (so polling a daemon that is still
 * booting works with one connection).
 *
 * @example
 * ```ts
 * import { dial } from "./connection.ts";
 * const conn = dial({ address: "unix:///run/containerd-ts/containerd-ts.sock" });
 * await conn.close();
 * ```
 */
export function dial(options: DialOptions): Connection {
  const endpoint = parseAddress(options.address);
  const sockets = new Set<Duplex>();
  const manager = new Http2SessionManager(
    "http://localhost",
    {
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      idleConnectionTimeoutMs: options.idleTimeoutMs ?? 15 * 60_000,
    },
    {
      createConnection: () => {
        // A unix socket is dialed with Deno's own socket: node:net's unix handles close their
        // descriptor twice in the pinned Deno (see server/unix_socket.ts).
        const socket: Duplex = "path" in endpoint
          ? connectUnix(endpoint.path)
          : net.connect(endpoint.port, endpoint.host);
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
        return socket;
      },
    },
  );
  const transport = createGrpcTransport({ baseUrl: "http://localhost", sessionManager: manager });
  let closed = false;
  return {
    address: options.address,
    transport,
    get closed() {
      return closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      manager.abort();
      // Resolve once the sockets are really gone, so a caller that exits or checks for
      // leaks right after close() sees nothing left open.
      await Promise.all([...sockets].map((socket) =>
        new Promise<void>((resolve) => {
          if (socket.destroyed && socket.closed) return resolve();
          const timer = setTimeout(() => {
            socket.destroy();
            resolve();
          }, 1000);
          socket.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          socket.destroy();
        })
      ));
    },
  };
}

/**
 * A connection over an existing transport — an in-process router (`createRouterTransport`)
 * in tests, or a gRPC-web/Connect transport. `close()` only marks it closed.
 *
 * @example
 * ```ts
 * import { createRouterTransport } from "@connectrpc/connect";
 * import { fromTransport } from "./connection.ts";
 * const conn = fromTransport(createRouterTransport(() => {}), "in-process");
 * await conn.close();
 * ```
 */
export function fromTransport(transport: Transport, address = "in-process"): Connection {
  let closed = false;
  return {
    address,
    transport,
    get closed() {
      return closed;
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}
