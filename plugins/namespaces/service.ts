/**
 * io.containerd.grpc.v1.namespaces: containerd.services.namespaces.v1.Namespaces over the
 * metadata store — `ctr namespaces create/ls/label/rm`. Namespace calls need no namespace
 * header of their own; they publish /namespaces/create|update|delete events.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { Exchange } from "../../server/exchange.ts";
import { namespaceKey } from "../../server/interceptors.ts";
import { register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import {
  NamespaceCreateSchema,
  NamespaceDeleteSchema,
  NamespaceUpdateSchema,
} from "../../proto/gen/containerd/events/namespace_pb.ts";
import {
  CreateNamespaceResponseSchema,
  GetNamespaceResponseSchema,
  ListNamespacesResponseSchema,
  Namespaces,
  NamespaceSchema,
  UpdateNamespaceResponseSchema,
} from "../../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import type { NamespaceStore } from "../metadata/api.ts";
import { publishEvent } from "../metadata/events.ts";
import { GRPCPlugin, MetadataPlugin } from "../types.ts";

/** What the Namespaces service needs. */
export interface NamespacesServiceDeps {
  namespaces: NamespaceStore;
  events: Exchange;
}

/** The namespace an event about `name` is filed under: the caller's, else `name` itself. */
function eventNamespace(ctx: HandlerContext, name: string): string {
  const header = ctx.values.get(namespaceKey);
  return header !== undefined && header !== "" ? header : name;
}

/** The Namespaces service over a namespace store. */
export function namespacesService(deps: NamespacesServiceDeps): ServiceSpec {
  const { namespaces, events } = deps;
  return serviceSpec(Namespaces, {
    get(request) {
      // As containerd: a namespace that does not exist reads as one without labels.
      const labels = namespaces.labels(request.name);
      return create(GetNamespaceResponseSchema, {
        namespace: create(NamespaceSchema, { name: request.name, labels }),
      });
    },
    list() {
      return create(ListNamespacesResponseSchema, {
        namespaces: namespaces.list().map((ns) => create(NamespaceSchema, ns)),
      });
    },
    create(request, ctx) {
      const name = request.namespace?.name ?? "";
      const labels = request.namespace?.labels ?? {};
      const created = namespaces.create(name, labels);
      publishEvent(events, eventNamespace(ctx, name), "/namespaces/create", NamespaceCreateSchema, {
        name,
        labels,
      });
      return create(CreateNamespaceResponseSchema, {
        namespace: create(NamespaceSchema, created),
      });
    },
    update(request, ctx) {
      const name = request.namespace?.name ?? "";
      const labels = request.namespace?.labels ?? {};
      const updated = namespaces.update(name, labels, request.updateMask?.paths ?? []);
      publishEvent(events, eventNamespace(ctx, name), "/namespaces/update", NamespaceUpdateSchema, {
        name,
        labels,
      });
      return create(UpdateNamespaceResponseSchema, {
        namespace: create(NamespaceSchema, updated),
      });
    },
    delete(request) {
      namespaces.delete(request.name);
      publishEvent(events, request.name, "/namespaces/delete", NamespaceDeleteSchema, {
        name: request.name,
      });
      return create(EmptySchema);
    },
  });
}

register({
  type: GRPCPlugin,
  id: "namespaces",
  requires: [MetadataPlugin],
  init(ctx): RpcServices {
    const metadata = ctx.get(MetadataPlugin);
    return {
      services: [namespacesService({ namespaces: metadata.namespaces, events: ctx.events })],
    };
  },
});
