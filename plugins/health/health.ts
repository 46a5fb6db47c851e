/**
 * io.containerd.grpc.v1.healthcheck: grpc.health.v1.Health, SERVING while the daemon runs
 * and NOT_SERVING once it begins to stop, so a supervisor or `deno task smoke` can wait for
 * readiness and see shutdown.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type PluginSet, register } from "../../server/plugin.ts";
import { type RpcServices, servesRpc, serviceSpec } from "../../server/rpc.ts";
import { NotFoundError } from "../../server/errdefs.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../../proto/gen/grpc/health/v1/health_pb.ts";
import { GRPCPlugin } from "../types.ts";

/**
 * Whether `service` is one the health protocol knows: "" (the whole daemon) or the full name
 * of a mounted gRPC service. Unknown names get NotFound, as the gRPC health spec asks.
 */
export function knownService(plugins: PluginSet, service: string): boolean {
  if (service === "") return true;
  return plugins.records().some((record) =>
    record.status === "ok" && servesRpc(record.instance) &&
    record.instance.services.some((spec) => spec.service.typeName === service)
  );
}

function checkKnown(plugins: PluginSet, service: string): void {
  if (!knownService(plugins, service)) throw new NotFoundError(`unknown service ${service}`);
}

register({
  type: GRPCPlugin,
  id: "healthcheck",
  init(ctx): RpcServices {
    const daemonStopping = ctx.signal;
    const status = () => daemonStopping.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING;
    return {
      services: [serviceSpec(Health, {
        check: (request) => {
          checkKnown(ctx.plugins, request.service);
          return create(HealthCheckResponseSchema, { status: status() });
        },
        async *watch(request, call) {
          checkKnown(ctx.plugins, request.service);
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
