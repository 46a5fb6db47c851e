/**
 * Server side of tests/churn_test.ts: server/rpc.ts's handler with Version and Health on a
 * unix socket (listened through server/listen.ts), run in its own Deno process so an abort of
 * the runtime (the nghttp2 assertions of DENO-HTTP2.md) fails the test instead of killing the
 * test runner.
 *
 * Prints "ready" when listening, `inflight=<n>` on SIGUSR2 (must reach 0 once every client is
 * gone). On SIGTERM it closes as the daemon does — GOAWAY to open sessions, drain for up to
 * 1 s, destroy what is left — prints "closed" and exits 0. Any unhandled error kills the
 * process non-zero.
 *
 * ```sh
 * deno run -A tests/churn_server.ts /tmp/churn.sock
 * ```
 * @module
 */
import http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { createRpcHandler, GRPC_SERVER_OPTIONS, serviceSpec } from "../server/rpc.ts";
import { contextInterceptor, errorInterceptor, namespaceOf } from "../server/interceptors.ts";
import { closeServer, listenUnix } from "../server/listen.ts";
import { createLogger } from "../server/log.ts";
import {
  Version,
  VersionResponseSchema,
} from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../proto/gen/grpc/health/v1/health_pb.ts";

const socket = Deno.args[0];
if (!socket) {
  console.error("usage: churn_server.ts SOCKET");
  Deno.exit(2);
}
const log = createLogger({ level: "warn" });
const reply = create(VersionResponseSchema, { version: "churn", revision: "0" });
const rpc = createRpcHandler({
  services: [
    serviceSpec(Version, {
      version: (_req, ctx) => {
        namespaceOf(ctx);
        return reply;
      },
    }),
    serviceSpec(Health, {
      check: () => ({ status: ServingStatus.SERVING }),
      async *watch(_req, ctx) {
        yield { status: ServingStatus.SERVING };
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      },
    }),
  ],
  interceptors: [contextInterceptor(), errorInterceptor(log)],
  maxRecvMessageBytes: 16 << 20,
  maxSendMessageBytes: 16 << 20,
  log,
});
const server = http2.createServer(GRPC_SERVER_OPTIONS);
rpc.attach(server);
await listenUnix(server, { path: socket, uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 });
console.log("ready");

Deno.addSignalListener("SIGUSR2", () => console.log(`inflight=${rpc.inFlight}`));
Deno.addSignalListener("SIGTERM", async () => {
  console.log(`stopping inflight=${rpc.inFlight}`);
  const closing = closeServer(server, { graceMs: 1000 });
  await rpc.drain(AbortSignal.timeout(1000));
  await closing;
  console.log("closed");
  Deno.exit(0);
});
