/**
 * io.containerd.grpc.v1.leases: containerd.services.leases.v1.Leases over the lease manager —
 * `ctr leases create/ls/rm`, and the lease every image import and pull takes. A `sync`
 * delete answers only after a garbage collection ran.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { EmptySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { namespaceOf } from "../../server/interceptors.ts";
import { register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import {
  CreateResponseSchema,
  type Lease as LeaseProto,
  Leases,
  LeaseSchema,
  ListResourcesResponseSchema,
  ListResponseSchema,
  ResourceSchema,
} from "../../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import type { Lease } from "../metadata/api.ts";
import { GRPCPlugin, LeasePlugin } from "../types.ts";
import type { LeaseManager } from "./api.ts";

function leaseToProto(lease: Lease): LeaseProto {
  return create(LeaseSchema, {
    id: lease.id,
    createdAt: timestampFromDate(lease.createdAt),
    labels: lease.labels,
  });
}

/** The Leases service over a lease manager. */
export function leasesService(manager: LeaseManager): ServiceSpec {
  return serviceSpec(Leases, {
    create(request, ctx) {
      const lease = manager.create(namespaceOf(ctx), { id: request.id, labels: request.labels });
      return create(CreateResponseSchema, { lease: leaseToProto(lease) });
    },
    async delete(request, ctx) {
      await manager.delete(namespaceOf(ctx), request.id, {
        sync: request.sync,
        signal: ctx.signal,
      });
      return create(EmptySchema);
    },
    list(request, ctx) {
      const leases = manager.list(namespaceOf(ctx), request.filters);
      return create(ListResponseSchema, { leases: leases.map(leaseToProto) });
    },
    addResource(request, ctx) {
      manager.addResource(namespaceOf(ctx), request.id, {
        id: request.resource?.id ?? "",
        type: request.resource?.type ?? "",
      });
      return create(EmptySchema);
    },
    deleteResource(request, ctx) {
      manager.deleteResource(namespaceOf(ctx), request.id, {
        id: request.resource?.id ?? "",
        type: request.resource?.type ?? "",
      });
      return create(EmptySchema);
    },
    listResources(request, ctx) {
      const resources = manager.listResources(namespaceOf(ctx), request.id);
      return create(ListResourcesResponseSchema, {
        resources: resources.map((r) => create(ResourceSchema, r)),
      });
    },
  });
}

register({
  type: GRPCPlugin,
  id: "leases",
  requires: [LeasePlugin],
  init(ctx): RpcServices {
    return { services: [leasesService(ctx.get(LeasePlugin))] };
  },
});
