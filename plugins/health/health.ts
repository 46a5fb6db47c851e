/**
 * io.containerd.grpc.v1.healthcheck: grpc.health.v1.Health, SERVING while the daemon runs
 * and NOT_SERVING once it begins to stop, so a supervisor or `deno task smoke` can wait for
 * readiness and see shutdown.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { register } from "../../server/plugin.ts";
import { type RpcServices, serviceSpec } from "../../server/rpc.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../../proto/gen/grpc/health/v1/health_pb.ts";
import { GRPCPlugin } from "../types.ts";

register({
  type: GRPCPlugin,
  id: "healthcheck",
  init(ctx): RpcServices {
    const daemonStopping = ctx.signal;
    const status = () => daemonStopping.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING;
    return {
      services: [serviceSpec(Health, {
        check: () => create(HealthCheckResponseSchema, { status: status() }),
        async *watch(_request, call) {
          yield create(HealthCheckResponseSchema, { status: status() });
          if (daemonStopping.aborted) return;
          // Wait until the daemon stops or the client goes away, then report the change.
          await new Promise<void>((resolve) => {
            const done = () => resolve();
            daemonStopping.addEventListener("abort", done, { once: true });
            call.signal.addEventListener("abort", done, { once: true });
          });
          if (!call.signal.aborted) yield create(HealthCheckResponseSchema, { status: status() });
        },
      })],
    };
  },
});
