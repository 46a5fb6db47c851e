/**
 * io.containerd.snapshotter.v1.native: registers the native snapshotter (native.ts). Its
 * root is the plugin's dir, `<root>/io.containerd.snapshotter.v1.native`, unless the config
 * names another.
 *
 * Config (`[plugins."io.containerd.snapshotter.v1.native"]`): `root_path` = "" (the plugin
 * dir), as containerd's native plugin.
 *
 * @module
 */
import { register } from "../../../server/plugin.ts";
import { configSchema, field, type SectionSchema } from "../../../server/schema.ts";
import { SnapshotPlugin } from "../../types.ts";
import { defaultPlatform, type Snapshotter } from "../api.ts";
import { NativeSnapshotter } from "./native.ts";

/** The native snapshotter's config section. */
export const nativeConfig: SectionSchema<{ root_path: string }> = configSchema({
  root_path: field.string(""),
});

register({
  type: SnapshotPlugin,
  id: "native",
  config: nativeConfig,
  async init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    const root = ctx.config.root_path || ctx.root;
    return await NativeSnapshotter.open(root, { log: ctx.log });
  },
});
