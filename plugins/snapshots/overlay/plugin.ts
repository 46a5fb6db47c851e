/**
 * io.containerd.snapshotter.v1.overlayfs: registers the overlayfs snapshotter (overlay.ts)
 * after checking, with a real mount in its root, that the kernel can do overlay there; when it
 * cannot, the plugin is skipped with the reason (`ctr plugins ls` shows `skip`).
 *
 * Config (`[plugins."io.containerd.snapshotter.v1.overlayfs"]`): `root_path` = "" (the plugin
 * dir), `upperdir_label` = false (report each snapshot's upper dir as the label
 * `containerd.io/snapshot/overlay.upperdir`), `sync_remove` = false (delete a removed
 * snapshot's directory at once instead of at the next cleanup). Exports `root`.
 *
 * @module
 */
import { register, SkipPluginError } from "../../../server/plugin.ts";
import { configSchema, field, type SectionSchema } from "../../../server/schema.ts";
import { SnapshotPlugin } from "../../types.ts";
import { defaultPlatform, type Snapshotter } from "../api.ts";
import { OverlaySnapshotter, overlaySupport } from "./overlay.ts";

/** The overlayfs snapshotter's config section. */
export const overlayConfig: SectionSchema<{
  root_path: string;
  upperdir_label: boolean;
  sync_remove: boolean;
}> = configSchema({
  root_path: field.string(""),
  upperdir_label: field.boolean(false),
  sync_remove: field.boolean(false),
});

register({
  type: SnapshotPlugin,
  id: "overlayfs",
  config: overlayConfig,
  async init(ctx): Promise<Snapshotter> {
    ctx.meta.platforms.push(defaultPlatform());
    const root = ctx.config.root_path || ctx.root;
    ctx.meta.exports = { ...ctx.meta.exports, root };
    const unsupported = await overlaySupport(root);
    if (unsupported !== undefined) {
      throw new SkipPluginError(`overlayfs snapshotter cannot be used: ${unsupported}`);
    }
    return await OverlaySnapshotter.open(root, {
      upperdirLabel: ctx.config.upperdir_label,
      syncRemove: ctx.config.sync_remove,
      log: ctx.log,
    });
  },
});
