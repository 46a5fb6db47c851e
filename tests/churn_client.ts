/**
 * Client side of tests/churn_test.ts: one HTTP/2 session on the server's unix socket running
 * unary Version calls at a given concurrency for a given time, then closing the session with
 * calls still in flight — gracefully (`close`, GOAWAY) or abruptly (`destroy`, as a crashing
 * client would).
 *
 * Prints "started" after the first successful call (the test SIGKILLs some clients after
 * that, mid-flight) and "done <calls> <errors>" at the end; exits 1 if no call succeeded.
 *
 * ```sh
 * deno run -A tests/churn_client.ts /tmp/churn.sock 17 300 close
 * ```
 * @module
 */
import http2 from "node:http2";
import { connectUnix } from "../server/unix_socket.ts";

const [socket, concurrencyText = "1", durationText = "300", closeMode = "close"] = Deno.args;
if (!socket) {
  console.error("usage: churn_client.ts SOCKET [CONCURRENCY] [DURATION_MS] [close|destroy]");
  Deno.exit(2);
}
const concurrency = Number(concurrencyText);
const durationMs = Number(durationText);
const session = http2.connect("http://localhost", { createConnection: () => connectUnix(socket) });
let sessionError = "";
session.on("error", (err) => sessionError ||= String(err));
const headers = {
  ":method": "POST",
  ":path": "/containerd.services.version.v1.Version/Version",
  "content-type": "application/grpc",
  te: "trailers",
  "containerd-namespace": "default",
};
const body = new Uint8Array([0, 0, 0, 0, 0]);
let calls = 0;
let errors = 0;
let started = false;

function call(): Promise<boolean> {
  return new Promise((resolve) => {
    let status: unknown;
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request(headers);
    } catch {
      resolve(false);
      return;
    }
    req.on("response", (h) => status ??= h["grpc-status"]);
    req.on("trailers", (t) => status = t["grpc-status"]);
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => resolve(status === "0"));
    req.end(body);
  });
}

// Close the session when the time is up, with calls still in flight (the case that aborts
// Deno 2.9.4/2.9.5's nghttp2), then let the workers see their streams end.
let closing = false;
const closed = new Promise<void>((resolve) => {
  setTimeout(() => {
    closing = true;
    if (closeMode === "destroy") {
      session.destroy();
      resolve();
    } else session.close(() => resolve());
  }, durationMs);
});
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (!closing && !session.closed && !session.destroyed) {
    const ok = await call();
    if (ok) {
      calls++;
      if (!started) {
        started = true;
        console.log("started");
      }
    } else if (!closing) errors++;
  }
}));
await closed;
console.log(`done ${calls} ${errors}${sessionError ? ` (${sessionError})` : ""}`);
Deno.exit(calls > 0 ? 0 : 1);
