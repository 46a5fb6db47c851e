/**
 * io.containerd.grpc.v1.containers: containerd.services.containers.v1.Containers over the
 * metadata store's containers table — `ctr containers create/ls/info/label/rm` and the record
 * `ctr run` writes and removes. Create, Update and Delete publish /containers/create,
 * /containers/update and /containers/delete (`containerd.events.ContainerCreate|Update|
 * Delete`). ListStream answers one container per message, as containerd does; List answers
 * them all at once (ctr falls back to it on Unimplemented).
 *
 * Other plugins (tasks) read containers the same way: `new SqlContainerStore(ctx.get(
 * MetadataPlugin))` from plugins/metadata/containers.ts.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Any, AnySchema, EmptySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "../../server/errdefs.ts";
import type { Exchange } from "../../server/exchange.ts";
import { namespaceOf } from "../../server/interceptors.ts";
import { register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import {
  ContainerCreateSchema,
  ContainerDeleteSchema,
  ContainerUpdateSchema,
} from "../../proto/gen/containerd/events/container_pb.ts";
import {
  type Container as ContainerProto,
  Containers,
  ContainerSchema,
  CreateContainerResponseSchema,
  GetContainerResponseSchema,
  ListContainerMessageSchema,
  ListContainersResponseSchema,
  UpdateContainerResponseSchema,
} from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import {
  type AnyValue,
  type Container,
  type ContainerInput,
  type ContainerStore,
  SqlContainerStore,
} from "../metadata/containers.ts";
import { publishEvent } from "../metadata/events.ts";
import { GRPCPlugin, MetadataPlugin } from "../types.ts";

/** What the Containers service needs. */
export interface ContainersServiceDeps {
  containers: ContainerStore;
  events: Exchange;
}

function anyToProto(value: AnyValue): Any {
  return create(AnySchema, { typeUrl: value.typeUrl, value: value.value });
}

function anyFromProto(value: Any | undefined): AnyValue | undefined {
  return value === undefined ? undefined : { typeUrl: value.typeUrl, value: value.value };
}

/** A container as the API carries it. */
export function containerToProto(container: Container): ContainerProto {
  const extensions: Record<string, Any> = {};
  for (const [key, value] of Object.entries(container.extensions)) {
    extensions[key] = anyToProto(value);
  }
  const options = container.runtime.options;
  return create(ContainerSchema, {
    id: container.id,
    labels: container.labels,
    image: container.image,
    runtime: options === undefined
      ? { name: container.runtime.name }
      : { name: container.runtime.name, options: anyToProto(options) },
    spec: anyToProto(container.spec),
    snapshotter: container.snapshotter,
    snapshotKey: container.snapshotKey,
    createdAt: timestampFromDate(container.createdAt),
    updatedAt: timestampFromDate(container.updatedAt),
    extensions,
  });
}

/** An API container as the store takes it; times are the store's to set. */
export function containerFromProto(container: ContainerProto | undefined): ContainerInput {
  const extensions: Record<string, AnyValue> = {};
  for (const [key, value] of Object.entries(container?.extensions ?? {})) {
    extensions[key] = { typeUrl: value.typeUrl, value: value.value };
  }
  const options = anyFromProto(container?.runtime?.options);
  const name = container?.runtime?.name ?? "";
  return {
    id: container?.id ?? "",
    labels: container?.labels ?? {},
    image: container?.image ?? "",
    runtime: options === undefined ? { name } : { name, options },
    spec: anyFromProto(container?.spec),
    snapshotter: container?.snapshotter ?? "",
    snapshotKey: container?.snapshotKey ?? "",
    extensions,
  };
}

/** containerd.services.containers.v1.Containers over a container store. */
export function containersService(deps: ContainersServiceDeps): ServiceSpec {
  const { containers, events } = deps;
  return serviceSpec(Containers, {
    get(request, ctx) {
      const container = containers.get(namespaceOf(ctx), request.id);
      return create(GetContainerResponseSchema, { container: containerToProto(container) });
    },

    list(request, ctx) {
      const list = containers.list(namespaceOf(ctx), request.filters);
      return create(ListContainersResponseSchema, { containers: list.map(containerToProto) });
    },

    async *listStream(request, ctx) {
      const list = containers.list(namespaceOf(ctx), request.filters);
      for (const container of list) {
        if (ctx.signal.aborted) return;
        yield create(ListContainerMessageSchema, { container: containerToProto(container) });
      }
    },

    create(request, ctx) {
      const namespace = namespaceOf(ctx);
      const container = containers.create(namespace, containerFromProto(request.container));
      const options = container.runtime.options;
      publishEvent(events, namespace, "/containers/create", ContainerCreateSchema, {
        id: container.id,
        image: container.image,
        runtime: options === undefined
          ? { name: container.runtime.name }
          : { name: container.runtime.name, options: anyToProto(options) },
      });
      return create(CreateContainerResponseSchema, { container: containerToProto(container) });
    },

    update(request, ctx) {
      const namespace = namespaceOf(ctx);
      if (!request.container || request.container.id === "") {
        throw new InvalidArgumentError("Container.ID required");
      }
      const container = containers.update(
        namespace,
        containerFromProto(request.container),
        request.updateMask?.paths ?? [],
      );
      publishEvent(events, namespace, "/containers/update", ContainerUpdateSchema, {
        id: container.id,
        image: container.image,
        labels: container.labels,
        snapshotKey: container.snapshotKey,
      });
      return create(UpdateContainerResponseSchema, { container: containerToProto(container) });
    },

    delete(request, ctx) {
      const namespace = namespaceOf(ctx);
      containers.delete(namespace, request.id);
      publishEvent(events, namespace, "/containers/delete", ContainerDeleteSchema, {
        id: request.id,
      });
      return create(EmptySchema);
    },
  });
}

register({
  type: GRPCPlugin,
  id: "containers",
  requires: [MetadataPlugin],
  init(ctx): RpcServices {
    const containers = new SqlContainerStore(ctx.get(MetadataPlugin));
    return { services: [containersService({ containers, events: ctx.events })] };
  },
});
