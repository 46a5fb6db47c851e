/**
 * The accept loop shared by every listener the daemon owns: unix sockets (through
 * unix_socket.ts) and the gRPC TCP listener (`[grpc] tcp_address`, through listen.ts).
 *
 * Each accepted `Deno.Conn` goes to a callback; a callback that throws drops that connection
 * and accepting goes on. A failed accept (out of descriptors, say) is retried after a short
 * pause, as Go's `net/http` does, instead of ending the listener.
 *
 * @example
 * ```ts
 * import { ConnListener } from "./conn_listener.ts";
 * const listener = new ConnListener(
 *   Deno.listen({ hostname: "127.0.0.1", port: 0 }),
 *   (conn) => conn.close(),
 * );
 * console.log(listener.addr);
 * await listener.close();
 * ```
 * @module
 */

/** Pause before accepting again after a failed accept (e.g. out of descriptors), as Go's. */
const ACCEPT_RETRY_MS = 50;

/** Accepts connections of a Deno listener until closed; see the module doc. */
export class ConnListener {
  readonly #listener: Deno.Listener;
  readonly #accepting: Promise<void>;
  #closing: Promise<void> | undefined;

  /** Start accepting on `listener`, handing each connection to `onConn`. */
  constructor(listener: Deno.Listener, onConn: (conn: Deno.Conn) => void) {
    this.#listener = listener;
    this.#accepting = this.#accept(onConn);
  }

  /** The bound address (for TCP: the port the kernel chose for port 0). */
  get addr(): Deno.Addr {
    return this.#listener.addr;
  }

  async #accept(onConn: (conn: Deno.Conn) => void): Promise<void> {
    while (this.#closing === undefined) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#closing !== undefined) return;
        // EMFILE and friends: the connection waits in the backlog; try again shortly.
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#closing !== undefined) {
        conn.close();
        return;
      }
      try {
        onConn(conn);
      } catch {
        // A consumer that cannot take the connection drops it; accepting goes on.
        try {
          conn.close();
        } catch { /* closed by the consumer */ }
      }
    }
  }

  /**
   * Stop accepting; resolves once the runtime has released the socket (for a unix socket that
   * unlinks its path, which happens only after the pending accept has settled). Open
   * connections are left to their owners. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        this.#listener.close();
      } catch { /* already closed */ }
      await this.#accepting;
    })();
    return this.#closing;
  }
}
