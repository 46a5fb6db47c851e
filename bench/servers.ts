/**
 * In-process servers the bench measures beside the daemons, each run in its own process:
 *
 * - `fixed`: the daemon's HTTP/2 server (server/h2_server.ts) answering every request with the
 *   same pre-encoded Version reply and grpc-status 0 — the ceiling of the bench client and of
 *   the daemon's HTTP/2 layer;
 * - `fixed-node`: the same on node:http2's stream API, for comparison;
 * - `handler`: server/rpc.ts's handler with a Version service and the daemon's interceptors on
 *   the daemon's HTTP/2 server — the RPC layer alone, without plugins.
 *
 * ```sh
 * deno run -A bench/servers.ts handler /tmp/x.sock   # prints "ready" once listening
 * ```
 * @module
 */
import type * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { H2Server } from "../server/h2_server.ts";
import { createRpcHandler, GRPC_H2_OPTIONS, serviceSpec } from "../server/rpc.ts";
import { contextInterceptor, errorInterceptor } from "../server/interceptors.ts";
import { silentLogger } from "../server/log.ts";
import { UnixSocketListener } from "../server/unix_socket.ts";
import {
  Version,
  VersionResponseSchema,
} from "../proto/gen/containerd/services/version/v1/version_pb.ts";

/** Server kinds this module can start. */
export type ServerKind = "fixed" | "fixed-node" | "handler";

/** The Version reply every server sends. */
export const VERSION_REPLY = create(VersionResponseSchema, {
  version: "1.6.20",
  revision: "1.6.20~ds1-1+b1",
});

/** The fixed reply as one gRPC envelope. */
function replyEnvelope(): Buffer {
  const bytes = toBinary(VersionResponseSchema, VERSION_REPLY);
  const envelope = Buffer.alloc(5 + bytes.byteLength);
  envelope.writeUInt32BE(bytes.byteLength, 1);
  envelope.set(bytes, 5);
  return envelope;
}

/**
 * Create (not listen) a server of `kind`. node:http2 is loaded only for `fixed-node`: the
 * other two are booted beside the daemon as references, which does not load it either.
 */
export async function createBenchServer(kind: ServerKind): Promise<H2Server | http2.Http2Server> {
  const envelope = replyEnvelope();
  if (kind === "fixed-node") {
    const { default: nodeHttp2 } = await import("node:http2");
    const server = nodeHttp2.createServer();
    server.on("session", (s) => s.on("error", () => {}));
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
    return server;
  }
  const server = new H2Server(GRPC_H2_OPTIONS);
  if (kind === "fixed") {
    server.on("stream", (stream) => {
      stream.on("data", () => {});
      stream.on("end", () => {
        stream.respond({ ":status": "200", "content-type": "application/grpc" }, {
          waitForTrailers: true,
        });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(envelope);
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
  if (!socket || !["fixed", "fixed-node", "handler"].includes(kind ?? "")) {
    console.error("usage: servers.ts fixed|fixed-node|handler SOCKET");
    Deno.exit(2);
  }
  try {
    Deno.removeSync(socket);
  } catch { /* not there */ }
  const server = await createBenchServer(kind as ServerKind);
  // Listened as the daemon listens (server/listen.ts): Deno's socket; the daemon's server takes
  // the connection itself, node's receives it as a `connection` event.
  if (server instanceof H2Server) UnixSocketListener.listenConns(socket, (c) => server.serve(c));
  else UnixSocketListener.listen(socket, (s) => server.emit("connection", s));
  console.log("ready");
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
