/**
 * Listeners of the gRPC servers: the unix socket clients dial, an optional TCP address, and a
 * graceful close.
 *
 * containerd's socket rules (socket_path.ts, shared with the debug and metrics endpoints): the
 * parent directory is created 0711, a stale socket is removed only after a connect probe; the
 * socket then gets mode 0660 and the configured owner.
 * {@link closeServer} stops accepting, sends GOAWAY to every HTTP/2 session so running RPCs
 * finish and new ones go elsewhere, and destroys what is still open after a grace period.
 *
 * A unix socket is never listened on by node:net (Deno 2.9.3 closes those descriptors twice,
 * see unix_socket.ts): Deno's listener accepts. The daemon's own servers ({@link ConnServer}:
 * the HTTP/2 server and the ttrpc server) take Deno's connection itself; a node server
 * receives it wrapped as a node socket in a `connection` event, exactly as if it had accepted
 * it itself. The TCP address is accepted the same way for a {@link ConnServer} (a
 * {@link ConnListener}); node servers listen on TCP themselves.
 *
 * @example
 * ```ts
 * import http2 from "node:http2";
 * import { closeServer, listenUnix } from "./listen.ts";
 * const dir = await Deno.makeTempDir();
 * const server = http2.createServer();
 * const [uid, gid] = [Deno.uid() ?? 0, Deno.gid() ?? 0];
 * await listenUnix(server, { path: `${dir}/containerd.sock`, uid, gid });
 * await closeServer(server);
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */
import type * as http2 from "node:http2";
import type * as net from "node:net";
import type { EventEmitter } from "node:events";
import * as path from "node:path";
import { listenOn, splitHostPort } from "./http_listen.ts";
import { AddressInUseError, prepareSocketPath } from "./socket_path.ts";
import type { UnixSocketListener } from "./unix_socket.ts";
import { ConnListener } from "./conn_listener.ts";

/** Thrown when the socket path is held by a live listener or is not a socket. */
export { AddressInUseError };

/** Options of {@link listenUnix}. */
export interface UnixListenOptions {
  /** Socket path; relative paths resolve against the working directory. */
  path: string;
  /** Owner of the socket; changed only when it differs from this process's uid. */
  uid: number;
  /** Group of the socket; changed only when it differs from this process's gid. */
  gid: number;
  /** Mode of the socket. Default 0o660, as containerd's. */
  mode?: number;
}

/** Options of {@link closeServer}. */
export interface CloseOptions {
  /**
   * How long open sessions may keep running after GOAWAY before they are destroyed.
   * Default 10 000 ms (the daemon's drain timeout).
   */
  graceMs?: number;
}

/** Longest unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** Connections, HTTP/2 sessions and unix listeners of a server, for closeServer. */
interface Tracked {
  readonly sockets: Set<TrackedConnection>;
  readonly sessions: Set<TrackedSession>;
  readonly listeners: Set<UnixSocketListener | ConnListener>;
  /** Called each time the last open connection closes. */
  readonly onIdle: Set<() => void>;
}

/** What tracking needs of a connection: node sockets, H2 sessions and ttrpc connections. */
export interface TrackedConnection {
  once(event: "close", listener: () => void): unknown;
  end(): void;
  destroy(): void;
}

/**
 * A server that serves accepted Deno connections itself: the daemon's HTTP/2 server and its
 * ttrpc server. `serve` returns the connection, which {@link closeServer} then waits for.
 */
export interface ConnServer {
  serve(conn: Deno.Conn): TrackedConnection;
}

/** Servers this module listens for: {@link ConnServer}s and node servers. */
type AnyServer = net.Server | http2.Http2Server | ConnServer;

function isConnServer(server: AnyServer): server is ConnServer {
  return typeof (server as Partial<ConnServer>).serve === "function";
}

/** What tracking needs of an HTTP/2 session (node's or the daemon's). */
interface TrackedSession {
  once(event: "close", listener: () => void): unknown;
  close(): void;
  destroy(): void;
}

/** Per-server tracking lives on the server object itself, never in module state. */
const TRACKED = Symbol("containerd-ts.listen.tracked");

function track(server: AnyServer): Tracked {
  const holder = server as AnyServer & { [TRACKED]?: Tracked };
  const existing = holder[TRACKED];
  if (existing) return existing;
  const tracked: Tracked = {
    sockets: new Set(),
    sessions: new Set(),
    listeners: new Set(),
    onIdle: new Set(),
  };
  // A node server announces its connections; a ConnServer's come back from serve (accept).
  if (!isConnServer(server)) {
    (server as EventEmitter).on("connection", (socket) => trackConnection(tracked, socket));
  }
  // HTTP/2 servers (node's and ours, both EventEmitters) announce sessions for GOAWAY.
  const emitter = server as Partial<EventEmitter>;
  emitter.on?.("session", (session: TrackedSession) => {
    tracked.sessions.add(session);
    session.once("close", () => tracked.sessions.delete(session));
  });
  Object.defineProperty(server, TRACKED, { value: tracked });
  return tracked;
}

function trackConnection(tracked: Tracked, connection: TrackedConnection): void {
  tracked.sockets.add(connection);
  connection.once("close", () => {
    tracked.sockets.delete(connection);
    if (tracked.sockets.size === 0) { for (const idle of tracked.onIdle) idle(); }
  });
}

/** How a ConnServer takes each connection its listeners accept: served, then tracked. */
function acceptInto(server: ConnServer, tracked: Tracked): (conn: Deno.Conn) => void {
  return (conn) => trackConnection(tracked, server.serve(conn));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Listen on a unix socket: creates the parent dir (0711), removes a leftover socket file ONLY
 * after a connect probe shows nothing listens (a live socket → throw an Error naming the path:
 * "another process is listening on <path>"), chmod mode, chown uid/gid when they differ from
 * current.
 */
export async function listenUnix(server: AnyServer, options: UnixListenOptions): Promise<void> {
  const socketPath = path.resolve(options.path);
  if (new TextEncoder().encode(socketPath).byteLength > MAX_SOCKET_PATH_BYTES) {
    throw new Error(
      `socket path ${socketPath} is too long (a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES} bytes)`,
    );
  }
  await prepareSocketPath(socketPath);
  const tracked = track(server);
  let listener: UnixSocketListener | ConnListener;
  try {
    if (isConnServer(server)) {
      listener = new ConnListener(
        Deno.listen({ transport: "unix", path: socketPath }),
        acceptInto(server, tracked),
      );
    } else {
      // node:stream only for a node server (tests, tools): the daemon's boot never loads it.
      const { UnixSocketListener } = await import("./unix_socket.ts");
      listener = UnixSocketListener.listen(
        socketPath,
        (socket) => server.emit("connection", socket),
      );
    }
  } catch (err) {
    throw new Error(`listen on ${socketPath}: ${messageOf(err)}`, { cause: err });
  }
  tracked.listeners.add(listener);
  try {
    await Deno.chmod(socketPath, options.mode ?? 0o660);
    const uid = options.uid === Deno.uid() ? null : options.uid;
    const gid = options.gid === Deno.gid() ? null : options.gid;
    if (uid !== null || gid !== null) await Deno.chown(socketPath, uid, gid);
  } catch (err) {
    await closeServer(server, { graceMs: 0 });
    await Deno.remove(socketPath).catch(() => {});
    throw new Error(
      `set mode and owner of socket ${socketPath} (uid ${options.uid}, gid ${options.gid}): ${
        messageOf(err)
      }`,
      { cause: err },
    );
  }
}

/**
 * host:port → listen; returns the bound address. An empty host means every IPv4 address for
 * a {@link ConnServer}, every address for a node server.
 */
export async function listenTcp(
  server: AnyServer,
  address: string,
): Promise<{ host: string; port: number }> {
  const { host, port } = splitHostPort(address);
  const tracked = track(server);
  if (isConnServer(server)) {
    const accept = acceptInto(server, tracked);
    let listener: ConnListener;
    try {
      listener = new ConnListener(
        Deno.listen({ transport: "tcp", hostname: host === "" ? "0.0.0.0" : host, port }),
        (conn) => {
          // Each turn's frames leave in one write: Nagle would only hold the next one back.
          (conn as Deno.TcpConn).setNoDelay(true);
          accept(conn);
        },
      );
    } catch (err) {
      throw new Error(`listen on ${address}: ${messageOf(err)}`, { cause: err });
    }
    tracked.listeners.add(listener);
    const bound = listener.addr as Deno.NetAddr;
    return { host: bound.hostname, port: bound.port };
  }
  await listenOn(
    server,
    (done) => host === "" ? server.listen(port, done) : server.listen(port, host, done),
  );
  const bound = server.address();
  if (bound === null || typeof bound === "string") {
    throw new Error(`listen on ${address}: no TCP address bound`);
  }
  return { host: bound.address, port: bound.port };
}

/**
 * Stop accepting connections, send GOAWAY to open HTTP/2 sessions (running RPCs finish, new
 * ones are refused), and destroy what is still open after `graceMs`. Resolves when every
 * connection is gone; never rejects, so shutdown paths can always await it.
 */
export async function closeServer(server: AnyServer, options: CloseOptions = {}): Promise<void> {
  const graceMs = options.graceMs ?? 10_000;
  const tracked = (server as AnyServer & { [TRACKED]?: Tracked })[TRACKED];
  const closed = Promise.all([stopAccepting(server), connectionsGone(tracked)]).then(() => {});
  const destroyAll = () => {
    if (!tracked) return;
    for (const session of tracked.sessions) {
      try {
        session.destroy();
      } catch { /* already gone */ }
    }
    for (const socket of tracked.sockets) socket.destroy();
  };
  if (tracked) {
    for (const session of tracked.sessions) {
      try {
        session.close();
      } catch { /* already closing */ }
    }
    if (tracked.sessions.size === 0) { for (const socket of tracked.sockets) socket.end(); }
  }
  if (graceMs <= 0) {
    destroyAll();
    await closed;
    return;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      destroyAll();
      resolve();
    }, graceMs);
  });
  await Promise.race([closed, grace.then(() => closed)]);
  clearTimeout(timer);
}

/**
 * Stop accepting new connections on every address of `server` (its unix listeners are closed
 * and their socket files removed); open connections are untouched. Resolves once a TCP
 * listener has let all its connections go, as node's `server.close` does.
 */
export async function stopAccepting(server: AnyServer): Promise<void> {
  const tracked = (server as AnyServer & { [TRACKED]?: Tracked })[TRACKED];
  const unix = [...tracked?.listeners ?? []].map((listener) => listener.close().catch(() => {}));
  tracked?.listeners.clear();
  const tcp = !isConnServer(server) && server.listening
    ? new Promise<void>((resolve) => {
      try {
        server.close(() => resolve());
      } catch {
        resolve();
      }
    })
    : Promise.resolve();
  await Promise.all([...unix, tcp]);
}

function connectionsGone(tracked: Tracked | undefined): Promise<void> {
  if (!tracked || tracked.sockets.size === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const idle = () => {
      tracked.onIdle.delete(idle);
      resolve();
    };
    tracked.onIdle.add(idle);
  });
}
