/**
 * In-process servers the bench measures beside the daemons, each run in its own process:
 *
 * - `fixed`: a trivial node:http2 stream-API server that answers every request with the same
 *   pre-encoded Version reply and grpc-status 0 — the ceiling of the runtime's HTTP/2 and of
 *   the bench client;
 * - `fixed-compat`: the same on node:http2's compatibility (req/res) API;
 * - `handler`: server/rpc.ts's handler with a Version service and the daemon's interceptors —
 *   the RPC layer alone, without plugins.
 *
 * ```sh
 * deno run -A bench/servers.ts handler /tmp/x.sock   # prints "ready" once listening
 * ```
 * @module
 */
import http2 from "node:http2";
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { createRpcHandler, serviceSpec } from "../server/rpc.ts";
import { contextInterceptor, errorInterceptor } from "../server/interceptors.ts";
import { silentLogger } from "../server/log.ts";
import { UnixSocketListener } from "../server/unix_socket.ts";
import {
  Version,
  VersionResponseSchema,
} from "../proto/gen/containerd/services/version/v1/version_pb.ts";

/** Server kinds this module can start. */
export type ServerKind = "fixed" | "fixed-compat" | "handler";

/** The Version reply every server sends. */
export const VERSION_REPLY = create(VersionResponseSchema, {
  version: "1.6.20",
  revision: "1.6.20~ds1-1+b1",
});

/** Create (not listen) a server of `kind`. */
export function createBenchServer(kind: ServerKind): http2.Http2Server {
  const server = http2.createServer();
  const bytes = toBinary(VersionResponseSchema, VERSION_REPLY);
  const envelope = Buffer.alloc(5 + bytes.byteLength);
  envelope.writeUInt32BE(bytes.byteLength, 1);
  envelope.set(bytes, 5);
  server.on("session", (s) => s.on("error", () => {}));
  if (kind === "fixed") {
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.on("data", () => {});
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, {
          waitForTrailers: true,
        });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(envelope);
      });
    });
  } else if (kind === "fixed-compat") {
    server.on("request", (req, res) => {
      req.on("data", () => {});
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/grpc" });
        res.addTrailers({ "grpc-status": "0" });
        res.end(envelope);
      });
    });
  } else {
    const rpc = createRpcHandler({
      services: [serviceSpec(Version, { version: () => VERSION_REPLY })],
      interceptors: [contextInterceptor(), errorInterceptor(silentLogger())],
      maxRecvMessageBytes: 16 << 20,
      maxSendMessageBytes: 16 << 20,
      log: silentLogger(),
    });
    rpc.attach(server);
  }
  return server;
}

if (import.meta.main) {
  const [kind, socket] = Deno.args;
  if (!socket || !["fixed", "fixed-compat", "handler"].includes(kind ?? "")) {
    console.error("usage: servers.ts fixed|fixed-compat|handler SOCKET");
    Deno.exit(2);
  }
  try {
    Deno.removeSync(socket);
  } catch { /* not there */ }
  const server = createBenchServer(kind as ServerKind);
  // Listened as the daemon listens (server/listen.ts): Deno's socket, node's server.
  UnixSocketListener.listen(socket, (s) => server.emit("connection", s));
  console.log("ready");
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
