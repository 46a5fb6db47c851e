/**
 * The Snapshots service, in two plugins as containerd has them:
 *
 * - io.containerd.service.v1.snapshots-service: every loaded snapshotter wrapped in a
 *   {@link MetadataSnapshotter} (namespaces, labels, leases, GC), by name. Each one is
 *   registered as the metadata store's backend cleanup for `snapshotter/<name>`, so a garbage
 *   collection that removed snapshot rows also removes the backend snapshots; one such sweep
 *   also runs at boot, for backend snapshots a crash left without a row.
 * - io.containerd.grpc.v1.snapshots: containerd.services.snapshots.v1.Snapshots over those —
 *   `ctr snapshots prepare/view/mounts/commit/rm/info/label/ls/usage`, and the unpack steps of
 *   `ctr images import`. The snapshotter is named by field 1 of every request (""
 *   → InvalidArgument `snapshotter argument missing`, unknown → `snapshotter not loaded: X`).
 *   Prepare, Commit and Remove publish /snapshot/prepare, /snapshot/commit, /snapshot/remove.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { EmptySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { InvalidArgumentError } from "../../server/errdefs.ts";
import type { Exchange } from "../../server/exchange.ts";
import { leaseOf, namespaceOf } from "../../server/interceptors.ts";
import type { Logger } from "../../server/log.ts";
import { type PluginType, pluginType, register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import {
  SnapshotCommitSchema,
  SnapshotPrepareSchema,
  SnapshotRemoveSchema,
} from "../../proto/gen/containerd/events/snapshot_pb.ts";
import {
  type Info,
  InfoSchema,
  Kind as KindProto,
  ListSnapshotsResponseSchema,
  MountsResponseSchema,
  PrepareSnapshotResponseSchema,
  Snapshots,
  StatSnapshotResponseSchema,
  UpdateSnapshotResponseSchema,
  UsageResponseSchema,
  ViewSnapshotResponseSchema,
} from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import {
  type Mount as MountProto,
  MountSchema,
} from "../../proto/gen/containerd/types/mount_pb.ts";
import type { MetadataStore, Scope } from "../metadata/api.ts";
import { publishEvent } from "../metadata/events.ts";
import { MetadataSnapshotter } from "../metadata/snapshots.ts";
import { GRPCPlugin, MetadataPlugin, ServicePlugin, SnapshotPlugin } from "../types.ts";
import { Kind, type Mount, type SnapshotInfo, type Snapshotter } from "./api.ts";

/** Infos per List response message (containerd sends blocks of 100). */
export const LIST_BLOCK = 100;

/** The snapshots-service instance: the namespaced snapshotters by name. */
export interface SnapshotsService {
  /** Every loaded snapshotter, wrapped, by its name (`native`, `overlayfs`, …). */
  readonly snapshotters: ReadonlyMap<string, MetadataSnapshotter>;
  /** Wait for the boot-time sweep; later calls do nothing. */
  close(): Promise<void>;
}

/** Typed token of io.containerd.service.v1 for `ctx.get(SnapshotsServicePlugin, "snapshots-service")`. */
export const SnapshotsServicePlugin: PluginType<SnapshotsService> = pluginType(ServicePlugin.name);

/** The id of the snapshots-service plugin. */
export const SNAPSHOTS_SERVICE_ID = "snapshots-service";

/**
 * Wrap every backend snapshotter and hook each into the metadata store's GC. When `sweep` is
 * set, one backend sweep per snapshotter starts now (boot), in the background.
 */
export function snapshotsService(
  metadata: MetadataStore,
  backends: ReadonlyMap<string, Snapshotter>,
  options: { log: Logger; sweep?: boolean },
): SnapshotsService {
  const snapshotters = new Map<string, MetadataSnapshotter>();
  for (const [name, backend] of backends) {
    const sn = new MetadataSnapshotter(metadata, name, backend, { log: options.log });
    metadata.registerBackendCleanup(sn.store, async () => {
      await sn.collect();
    });
    snapshotters.set(name, sn);
  }
  const sweeps = options.sweep
    ? [...snapshotters.values()].map((sn) =>
      sn.collect().then(
        (removed) => {
          if (removed > 0) {
            options.log.info("removed snapshots left without metadata", {
              snapshotter: sn.name,
              removed,
            });
          }
        },
        (err) =>
          options.log.warn("boot snapshot sweep failed", { snapshotter: sn.name, error: err }),
      )
    )
    : [];
  return {
    snapshotters,
    async close() {
      await Promise.all(sweeps);
    },
  };
}

function scopeOf(ctx: HandlerContext): Scope {
  return { namespace: namespaceOf(ctx), lease: leaseOf(ctx) };
}

function kindToProto(kind: Kind): KindProto {
  switch (kind) {
    case Kind.ACTIVE:
      return KindProto.ACTIVE;
    case Kind.VIEW:
      return KindProto.VIEW;
    default:
      // containerd's fromKind: anything else is reported as committed.
      return KindProto.COMMITTED;
  }
}

/** A snapshot info as the API carries it. */
export function infoToProto(info: SnapshotInfo): Info {
  return create(InfoSchema, {
    name: info.name,
    parent: info.parent,
    kind: kindToProto(info.kind),
    createdAt: timestampFromDate(info.created),
    updatedAt: timestampFromDate(info.updated),
    labels: info.labels,
  });
}

/** Mounts as the API carries them (no target: the client picks it). */
export function mountsToProto(mounts: readonly Mount[]): MountProto[] {
  return mounts.map((m) =>
    create(MountSchema, { type: m.type, source: m.source, options: [...m.options] })
  );
}

/** What the Snapshots gRPC service needs. */
export interface SnapshotsGrpcDeps {
  service: SnapshotsService;
  events: Exchange;
}

/** containerd.services.snapshots.v1.Snapshots over the namespaced snapshotters. */
export function snapshotsGrpcService(deps: SnapshotsGrpcDeps): ServiceSpec {
  const { service, events } = deps;
  const get = (name: string): MetadataSnapshotter => {
    if (name === "") throw new InvalidArgumentError("snapshotter argument missing");
    const sn = service.snapshotters.get(name);
    if (!sn) throw new InvalidArgumentError(`snapshotter not loaded: ${name}`);
    return sn;
  };
  return serviceSpec(Snapshots, {
    async prepare(request, ctx) {
      const sn = get(request.snapshotter);
      const scope = scopeOf(ctx);
      const mounts = await sn.prepare(scope, request.key, request.parent, request.labels);
      publishEvent(events, scope.namespace, "/snapshot/prepare", SnapshotPrepareSchema, {
        key: request.key,
        parent: request.parent,
      });
      return create(PrepareSnapshotResponseSchema, { mounts: mountsToProto(mounts) });
    },

    async view(request, ctx) {
      const sn = get(request.snapshotter);
      const mounts = await sn.view(scopeOf(ctx), request.key, request.parent, request.labels);
      return create(ViewSnapshotResponseSchema, { mounts: mountsToProto(mounts) });
    },

    async mounts(request, ctx) {
      const sn = get(request.snapshotter);
      const mounts = await sn.mounts(scopeOf(ctx), request.key);
      return create(MountsResponseSchema, { mounts: mountsToProto(mounts) });
    },

    async commit(request, ctx) {
      const sn = get(request.snapshotter);
      const scope = scopeOf(ctx);
      await sn.commit(scope, request.name, request.key, request.labels);
      publishEvent(events, scope.namespace, "/snapshot/commit", SnapshotCommitSchema, {
        key: request.key,
        name: request.name,
      });
      return create(EmptySchema);
    },

    async remove(request, ctx) {
      const sn = get(request.snapshotter);
      const scope = scopeOf(ctx);
      await sn.remove(scope, request.key);
      publishEvent(events, scope.namespace, "/snapshot/remove", SnapshotRemoveSchema, {
        key: request.key,
      });
      return create(EmptySchema);
    },

    async stat(request, ctx) {
      const sn = get(request.snapshotter);
      const info = await sn.stat(scopeOf(ctx), request.key);
      return create(StatSnapshotResponseSchema, { info: infoToProto(info) });
    },

    async update(request, ctx) {
      const sn = get(request.snapshotter);
      const info = await sn.update(
        scopeOf(ctx),
        { name: request.info?.name ?? "", labels: request.info?.labels ?? {} },
        request.updateMask?.paths ?? [],
      );
      return create(UpdateSnapshotResponseSchema, { info: infoToProto(info) });
    },

    async *list(request, ctx) {
      const sn = get(request.snapshotter);
      const infos: Info[] = [];
      await sn.walk(scopeOf(ctx), (info) => {
        infos.push(infoToProto(info));
      }, request.filters);
      for (let at = 0; at < infos.length; at += LIST_BLOCK) {
        yield create(ListSnapshotsResponseSchema, { info: infos.slice(at, at + LIST_BLOCK) });
      }
    },

    async usage(request, ctx) {
      const sn = get(request.snapshotter);
      const usage = await sn.usage(scopeOf(ctx), request.key);
      return create(UsageResponseSchema, {
        size: BigInt(Math.trunc(usage.size)),
        inodes: BigInt(Math.trunc(usage.inodes)),
      });
    },

    async cleanup(request, ctx) {
      const sn = get(request.snapshotter);
      namespaceOf(ctx);
      await sn.cleanup();
      return create(EmptySchema);
    },
  });
}

register({
  type: SnapshotsServicePlugin,
  id: SNAPSHOTS_SERVICE_ID,
  requires: [MetadataPlugin, SnapshotPlugin],
  init(ctx): SnapshotsService {
    const metadata = ctx.get(MetadataPlugin);
    return snapshotsService(metadata, ctx.getAll(SnapshotPlugin), { log: ctx.log, sweep: true });
  },
});

register({
  type: GRPCPlugin,
  id: "snapshots",
  requires: [SnapshotsServicePlugin],
  init(ctx): RpcServices {
    const service = ctx.get(SnapshotsServicePlugin, SNAPSHOTS_SERVICE_ID);
    return { services: [snapshotsGrpcService({ service, events: ctx.events })] };
  },
});
