/**
 * Unix-socket connections and listeners built on Deno's own sockets, shaped as node streams.
 *
 * Why this exists: in the pinned Deno 2.9.3, node:net's unix-socket handles close their file
 * descriptor twice — once through the handle and once through the Tokio stream that wraps the
 * same number (strace shows `close(N) = 0` then `close(N) = EBADF` for every accepted or dialed
 * connection and for the listener). Between those two closes another runtime thread may open a
 * file and get the number N; the second close then closes *that* file, and a directory walk in
 * `Deno.remove` aborts the whole process ("unexpected error during closedir: Bad file
 * descriptor"). Upstream fixed the ownership after 2.9.3 (denoland/deno#36353), but later
 * versions abort under HTTP/2 session churn (see ../shared/DENO-HTTP2.md), so the daemon keeps
 * 2.9.3 and never lets node:net own a unix socket. Deno's `Deno.listen`/`Deno.connect` close
 * each descriptor exactly once; {@link UnixSocket} adapts such a connection to the
 * `stream.Duplex` that node:http and node:http2 consume (the debug and metrics servers, the
 * `status` command, tests), and {@link UnixSocketListener} hands accepted ones to a callback
 * (typically `server.emit("connection", socket)` of a node server that never listens itself).
 * TCP is unaffected and stays on node:net.
 *
 * @example
 * ```ts
 * import { connectUnix, UnixSocketListener } from "./unix_socket.ts";
 * const dir = await Deno.makeTempDir();
 * const listener = UnixSocketListener.listen(`${dir}/s.sock`, (socket) => socket.pipe(socket));
 * const client = connectUnix(`${dir}/s.sock`);
 * client.end("ping");
 * for await (const chunk of client) console.log(new TextDecoder().decode(chunk)); // ping
 * await listener.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */
import { Duplex } from "node:stream";
import { ConnListener } from "./conn_listener.ts";

/**
 * Bytes asked of the kernel per read: a bulk upload arrives in few reads. Each read is copied
 * out of this one buffer (a memcpy is cheaper than a fresh buffer per read for the GC).
 */
const READ_CHUNK_BYTES = 256 * 1024;

/** Options of {@link UnixSocket}. */
export interface UnixSocketOptions {
  /**
   * Keep the writable side open after the peer's end of stream. Default false, as a node
   * `net.Socket`: the socket ends its side too and closes.
   */
  allowHalfOpen?: boolean;
}

/**
 * A connected (or connecting) unix socket as a node `Duplex`, with the members of
 * `net.Socket` that node's HTTP servers and HTTP/2 sessions use:
 * `connecting` and the `connect` event, `setTimeout`/`timeout`, `setNoDelay`,
 * `setKeepAlive`, `ref`/`unref`. Destroying it closes the descriptor once.
 */
export class UnixSocket extends Duplex {
  /** True until the connection is established (always false for accepted sockets). */
  connecting: boolean;
  /** Unix sockets have no peer IP address; present for code that logs it. */
  readonly remoteAddress: string | undefined = undefined;
  #conn: Deno.Conn | undefined;
  readonly #ready: Promise<Deno.Conn>;
  #buffer = new Uint8Array(READ_CHUNK_BYTES);
  #reading = false;
  #idleMs = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  /** Wrap `conn`, or a connection still being made; prefer {@link connectUnix}. */
  constructor(conn: Deno.Conn | Promise<Deno.Conn>, options: UnixSocketOptions = {}) {
    super({ allowHalfOpen: options.allowHalfOpen ?? false });
    if (conn instanceof Promise) {
      this.connecting = true;
      this.#ready = conn.then((established) => {
        if (this.destroyed) {
          established.close();
          throw new Error("socket destroyed while connecting");
        }
        this.#conn = established;
        this.connecting = false;
        this.emit("connect");
        this.emit("ready");
        return established;
      }, (err: unknown) => {
        this.destroy(err instanceof Error ? err : new Error(String(err)));
        throw err;
      });
      // Every user of #ready handles its rejection; this keeps an unused one from surfacing.
      this.#ready.catch(() => {});
    } else {
      this.connecting = false;
      this.#conn = conn;
      this.#ready = Promise.resolve(conn);
    }
  }

  /** Start or resume delivering data; one read loop runs at a time. */
  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    void this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    let conn: Deno.Conn;
    try {
      conn = await this.#ready;
    } catch {
      this.#reading = false;
      return;
    }
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(this.#buffer);
      } catch (err) {
        this.#reading = false;
        // A read cut short by our own close is not an error of the connection.
        if (!this.destroyed) this.destroy(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (this.destroyed) return;
      if (n === null) {
        this.#reading = false;
        this.push(null);
        return;
      }
      this.#touch();
      if (!this.push(this.#buffer.slice(0, n))) {
        this.#reading = false;
        return;
      }
    }
  }

  /** Write one chunk completely. */
  override _write(
    chunk: Uint8Array,
    _encoding: BufferEncoding,
    callback: (err?: Error | null) => void,
  ): void {
    this.#writeAll(chunk).then(() => callback(), callback);
  }

  /** Write queued chunks as one buffer: one syscall for a burst of HTTP/2 frames. */
  override _writev(
    chunks: { chunk: Uint8Array; encoding: BufferEncoding }[],
    callback: (err?: Error | null) => void,
  ): void {
    let total = 0;
    for (const { chunk } of chunks) total += chunk.byteLength;
    const joined = new Uint8Array(total);
    let at = 0;
    for (const { chunk } of chunks) {
      joined.set(chunk, at);
      at += chunk.byteLength;
    }
    this.#writeAll(joined).then(() => callback(), callback);
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    const conn = await this.#ready;
    let written = 0;
    while (written < bytes.byteLength) written += await conn.write(bytes.subarray(written));
    this.#touch();
  }

  /** End of our writes: shut down the sending direction, the peer reads end of stream. */
  override _final(callback: (err?: Error | null) => void): void {
    // A peer already gone makes closeWrite fail; the close that follows covers it.
    this.#ready.then((conn) => conn.closeWrite()).then(() => callback(), () => callback());
  }

  /** Close the descriptor (once); a connect still in flight closes it when it lands. */
  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Drop the read buffer now: Deno 2.9.3's node:http2 never releases a finished session,
    // and the session's closures keep its socket reachable (a heap snapshot after 12 `ctr
    // run` showed 15 sockets held that way, one per connection). Emptied, a leaked socket
    // costs a few hundred bytes instead of this 256 KiB buffer.
    this.#buffer = new Uint8Array(0);
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    callback(err);
  }

  /** Emit `timeout` after `ms` without reads or writes (0 disables), as `net.Socket`. */
  setTimeout(ms: number, onTimeout?: () => void): this {
    this.#idleMs = ms;
    if (onTimeout) ms > 0 ? this.once("timeout", onTimeout) : this.off("timeout", onTimeout);
    this.#touch();
    return this;
  }

  /** The idle timeout set by {@link setTimeout}, or undefined. */
  get timeout(): number | undefined {
    return this.#idleMs > 0 ? this.#idleMs : undefined;
  }

  #touch(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#idleMs > 0 && !this.destroyed) {
      this.#idleTimer = setTimeout(() => this.emit("timeout"), this.#idleMs);
    }
  }

  /** No Nagle on unix sockets; accepted for `net.Socket` compatibility. */
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  /** No keep-alive probes on unix sockets; accepted for `net.Socket` compatibility. */
  setKeepAlive(_enable?: boolean, _initialDelayMs?: number): this {
    return this;
  }

  /** Let the process exit while this socket is open (pending reads no longer hold it). */
  unref(): this {
    this.#ready.then((conn) => conn.unref(), () => {});
    return this;
  }

  /** Undo {@link unref}. */
  ref(): this {
    this.#ready.then((conn) => conn.ref(), () => {});
    return this;
  }
}

/**
 * Dial the unix socket `path`; returns at once (usable as a `createConnection` result), emits
 * `connect` when established, or `error` (Deno's `NotFound`, `ConnectionRefused`, with their
 * `code`) and `close` when not.
 */
export function connectUnix(path: string, options: UnixSocketOptions = {}): UnixSocket {
  return new UnixSocket(Deno.connect({ transport: "unix", path }), options);
}

/**
 * A listening unix socket that passes each accepted connection, as a {@link UnixSocket}, to a
 * callback. Closing stops accepting and unlinks the socket path, as Go's `net.UnixListener`
 * (and so containerd) does; open connections are left to their owners.
 */
export class UnixSocketListener {
  /** The socket path. */
  readonly path: string;
  readonly #conns: ConnListener;

  private constructor(path: string, conns: ConnListener) {
    this.path = path;
    this.#conns = conns;
  }

  /**
   * Bind and listen on `path` (which must not exist: remove a stale socket first) and start
   * accepting. Throws Deno's `AddrInUse` when the path exists.
   */
  static listen(
    path: string,
    onSocket: (socket: UnixSocket) => void,
    options: UnixSocketOptions = {},
  ): UnixSocketListener {
    return UnixSocketListener.listenConns(path, (conn) => {
      const socket = new UnixSocket(conn, options);
      try {
        onSocket(socket);
      } catch {
        // A consumer that cannot take the connection drops it; the socket closes it once.
        socket.destroy();
      }
    });
  }

  /**
   * As {@link listen}, but hands over Deno's connection itself, for a consumer that reads and
   * writes it directly (the daemon's HTTP/2 server). A callback that throws drops the
   * connection; accepting goes on.
   */
  static listenConns(path: string, onConn: (conn: Deno.Conn) => void): UnixSocketListener {
    return new UnixSocketListener(
      path,
      new ConnListener(Deno.listen({ transport: "unix", path }), onConn),
    );
  }

  /**
   * Stop accepting; resolves once the runtime has released the socket, which unlinks its path
   * (that happens only after the pending accept has settled). Safe to call twice.
   */
  close(): Promise<void> {
    return this.#conns.close();
  }
}
