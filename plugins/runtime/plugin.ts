/**
 * io.containerd.runtime.v2.task: the runtime v2 task manager (manager.ts), driving shims such
 * as Debian's `containerd-shim-runc-v2`.
 *
 * Bundles live under `<state>/io.containerd.runtime.v2.task/<ns>/<id>` and work dirs under
 * `<root>/io.containerd.runtime.v2.task/<ns>/<id>`. Boot reconnects the shims a previous
 * daemon left running (and cleans up after dead ones) before the Tasks service is served.
 * Shims publish events through the daemon's ttrpc socket; as `-publish-binary` they get this
 * daemon's own executable (the compiled binary, or bin/containerd-ts when run from source),
 * whose `publish` command forwards an event over gRPC.
 *
 * Config (`[plugins."io.containerd.runtime.v2.task"]`), as containerd 1.6: `platforms`
 * (reported through introspection; default this machine's) and `sched_core` (accepted; core
 * scheduling is not set up by this daemon).
 *
 * @module
 */
import * as path from "node:path";
import { register } from "../../server/plugin.ts";
import { configSchema, field, type SectionSchema } from "../../server/schema.ts";
import { SqlContainerStore } from "../metadata/containers.ts";
import { defaultPlatform } from "../snapshots/api.ts";
import { MetadataPlugin, RuntimePluginV2 } from "../types.ts";
import { TaskManager } from "./manager.ts";

/** The runtime plugin's config section. */
export const runtimeConfig: SectionSchema<{ platforms: string[]; sched_core: boolean }> =
  configSchema({
    platforms: field.stringArray([]),
    sched_core: field.boolean(false),
  });

/**
 * This daemon's executable as shims should run it for `publish`: the compiled binary itself,
 * else the launcher two levels above the code that runs, which is plugins/runtime/ in the
 * source tree and dist/bundle/ when bin/containerd-ts runs the bundle `deno task build` wrote.
 */
export function publishBinary(): string {
  const exec = Deno.execPath();
  if (path.basename(exec) !== "deno") return exec;
  // A file: URL's path, percent-decoded (node:url's fileURLToPath would load ~7 ms of node's
  // URL code at every boot for this one call).
  return decodeURIComponent(new URL("../../bin/containerd-ts", import.meta.url).pathname);
}

register({
  type: RuntimePluginV2,
  id: "task",
  requires: [MetadataPlugin],
  config: runtimeConfig,
  async init(ctx): Promise<TaskManager> {
    const platform = defaultPlatform();
    if (ctx.config.platforms.length === 0) ctx.meta.platforms.push(platform);
    for (const p of ctx.config.platforms) {
      const [os = "", architecture = "", variant = ""] = p.split("/");
      ctx.meta.platforms.push({ os, architecture, variant });
    }
    for (const dir of [ctx.state, ctx.root]) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
    }
    const manager = new TaskManager({
      roots: { state: ctx.state, root: ctx.root },
      grpcAddress: ctx.properties.grpcAddress,
      ttrpcAddress: ctx.properties.ttrpcAddress,
      publishBinary: publishBinary(),
      debug: ctx.log.enabled("debug"),
      events: ctx.events,
      containers: new SqlContainerStore(ctx.get(MetadataPlugin)),
      log: ctx.log,
    });
    await manager.restore();
    return manager;
  },
});
