/**
 * io.containerd.grpc.v1.diff: containerd.services.diff.v1.Diff over the differs, tried in the
 * configured order (`[plugins."io.containerd.grpc.v1.diff"] default = ["walking"]`, as
 * containerd): the first differ that does not answer NotImplemented wins. Apply is what
 * `ctr images import` and pull call to unpack each layer; Diff is what `ctr snapshots diff`
 * calls to turn a snapshot into a layer.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { Code, codeOf, NotImplementedError } from "../../server/errdefs.ts";
import { leaseOf, namespaceOf } from "../../server/interceptors.ts";
import type { MountSpec } from "../../server/mount.ts";
import { register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import { configSchema, field } from "../../server/schema.ts";
import {
  ApplyResponseSchema,
  Diff,
  DiffResponseSchema,
} from "../../proto/gen/containerd/services/diff/v1/diff_pb.ts";
import {
  type Descriptor as DescriptorProto,
  DescriptorSchema,
} from "../../proto/gen/containerd/types/descriptor_pb.ts";
import type { Mount as MountProto } from "../../proto/gen/containerd/types/mount_pb.ts";
import type { Scope } from "../metadata/api.ts";
import { DiffPlugin, GRPCPlugin } from "../types.ts";
import type { Descriptor, Differ } from "./differ.ts";

/** The diff service's config section (containerd's `default` order of differs). */
export const diffServiceConfig = configSchema({
  default: field.stringArray(["walking"]),
});

function scopeOf(ctx: HandlerContext): Scope {
  return { namespace: namespaceOf(ctx), lease: leaseOf(ctx) };
}

function mountsFromProto(mounts: readonly MountProto[]): MountSpec[] {
  return mounts.map((m) => ({ type: m.type, source: m.source, options: [...m.options] }));
}

function descriptorFromProto(desc: DescriptorProto | undefined): Descriptor {
  return {
    mediaType: desc?.mediaType ?? "",
    digest: desc?.digest ?? "",
    size: Number(desc?.size ?? 0n),
    annotations: desc?.annotations ?? {},
  };
}

function descriptorToProto(desc: Descriptor): DescriptorProto {
  return create(DescriptorSchema, {
    mediaType: desc.mediaType,
    digest: desc.digest,
    size: BigInt(desc.size),
    annotations: desc.annotations ?? {},
  });
}

/** Call `fn` on each differ in order until one does not answer NotImplemented. */
async function firstImplemented<T>(
  differs: readonly Differ[],
  what: string,
  fn: (differ: Differ) => Promise<T>,
): Promise<T> {
  let last: unknown;
  for (const differ of differs) {
    try {
      return await fn(differ);
    } catch (err) {
      if (codeOf(err) !== Code.Unimplemented) throw err;
      last = err;
    }
  }
  throw last ?? new NotImplementedError(`no differ is loaded to ${what}`);
}

/** containerd.services.diff.v1.Diff over `differs`, tried in order. */
export function diffService(differs: readonly Differ[]): ServiceSpec {
  return serviceSpec(Diff, {
    async apply(request, ctx) {
      const scope = scopeOf(ctx);
      const desc = descriptorFromProto(request.diff);
      const mounts = mountsFromProto(request.mounts);
      const applied = await firstImplemented(
        differs,
        "apply a layer",
        (d) => d.apply(scope, desc, mounts, { signal: ctx.signal }),
      );
      return create(ApplyResponseSchema, { applied: descriptorToProto(applied) });
    },

    async diff(request, ctx) {
      const scope = scopeOf(ctx);
      const lower = mountsFromProto(request.left);
      const upper = mountsFromProto(request.right);
      const desc = await firstImplemented(
        differs,
        "compute a diff",
        (d) =>
          d.compare(scope, lower, upper, {
            mediaType: request.mediaType,
            ref: request.ref,
            labels: request.labels,
            signal: ctx.signal,
          }),
      );
      return create(DiffResponseSchema, { diff: descriptorToProto(desc) });
    },
  });
}

register({
  type: GRPCPlugin,
  id: "diff",
  requires: [DiffPlugin],
  config: diffServiceConfig,
  init(ctx): RpcServices {
    const loaded = ctx.getAll(DiffPlugin);
    const differs: Differ[] = [];
    for (const id of ctx.config.default) {
      const differ = loaded.get(id);
      if (!differ) throw new Error(`diff service: differ ${JSON.stringify(id)} is not loaded`);
      differs.push(differ);
    }
    return { services: [diffService(differs)] };
  },
});
