/**
 * io.containerd.grpc.v1.introspection: what loaded and who this daemon is.
 *
 * Plugins lists every plugin record (ok, skip and error alike, in init order) so `ctr plugins
 * ls` shows at once why something is missing; Server answers a UUID kept under this plugin's
 * root, so a client can tell one daemon's data from another's across restarts.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { ALL, type PluginRecord, type PluginSet, register } from "../../server/plugin.ts";
import { type RpcServices, serviceSpec } from "../../server/rpc.ts";
import { adaptRecord, parseAll } from "../../server/filters.ts";
import { Code, codeOf } from "../../server/errdefs.ts";
import {
  Introspection,
  type Plugin,
  PluginSchema,
  PluginsResponseSchema,
  type ServerResponse,
  ServerResponseSchema,
} from "../../proto/gen/containerd/services/introspection/v1/introspection_pb.ts";
import { PlatformSchema } from "../../proto/gen/containerd/types/platform_pb.ts";
import { StatusSchema } from "../../proto/gen/google/rpc/status_pb.ts";
import { GRPCPlugin } from "../types.ts";

/** The protobuf form of one plugin record. */
export function pluginInfo(record: PluginRecord): Plugin {
  const reg = record.registration;
  return create(PluginSchema, {
    type: reg.type.name,
    id: reg.id,
    requires: (reg.requires ?? []).map((r) => (r === ALL ? ALL : r.name)),
    platforms: record.meta.platforms.map((p) =>
      create(PlatformSchema, { os: p.os, architecture: p.architecture, variant: p.variant ?? "" })
    ),
    exports: record.meta.exports,
    capabilities: record.meta.capabilities,
    ...(record.error
      ? {
        initErr: create(StatusSchema, {
          // A skip is reported as Unknown, as containerd does; clients key off "skip plugin".
          code: record.status === "skip" ? Code.Unknown : codeOf(record.error),
          message: record.error.message,
        }),
      }
      : {}),
  });
}

/** Plugins matching containerd filters on `type` and `id` (no filters: all). */
export function filterPlugins(plugins: PluginSet, filters: readonly string[]): Plugin[] {
  const filter = parseAll(filters);
  return plugins.records()
    .filter((r) =>
      filter.match(adaptRecord({ type: r.registration.type.name, id: r.registration.id }))
    )
    .map(pluginInfo);
}

/**
 * Read the daemon's UUID from `dir/uuid`, creating it (crash-safe) the first time it is
 * asked for.
 */
export async function loadOrCreateUuid(dir: string): Promise<string> {
  const path = `${dir}/uuid`;
  try {
    const text = (await Deno.readTextFile(path)).trim();
    if (/^[0-9a-f-]{36}$/.test(text)) return text;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
  const uuid = crypto.randomUUID();
  const temp = `${path}.tmp-${Deno.pid}`;
  const file = await Deno.open(temp, { write: true, create: true, truncate: true, mode: 0o644 });
  try {
    await file.write(new TextEncoder().encode(uuid));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temp, path);
  return uuid;
}

async function pidNamespace(): Promise<bigint> {
  try {
    return BigInt((await Deno.stat("/proc/self/ns/pid")).ino ?? 0);
  } catch {
    return 0n;
  }
}

register({
  type: GRPCPlugin,
  id: "introspection",
  requires: [ALL],
  init(ctx): RpcServices {
    // Made on the first Server call, as containerd's getUUID does: a first boot would
    // otherwise wait for the file's create, fsync and rename (~2-3 ms here). Concurrent
    // first calls share one load; a failed one is retried by the next call.
    let server: Promise<ServerResponse> | undefined;
    const load = async () =>
      create(ServerResponseSchema, {
        uuid: await loadOrCreateUuid(ctx.root),
        pid: BigInt(Deno.pid),
        pidns: await pidNamespace(),
      });
    return {
      services: [serviceSpec(Introspection, {
        plugins: (request) =>
          create(PluginsResponseSchema, { plugins: filterPlugins(ctx.plugins, request.filters) }),
        server: () => {
          server ??= load().catch((err) => {
            server = undefined;
            throw err;
          });
          return server;
        },
      })],
    };
  },
});
