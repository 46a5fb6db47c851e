/**
 * io.containerd.differ.v1.walking: registers the walking differ (differ.ts) over the metadata
 * store's content. Its temp mounts go to `<root>/tmpmounts`, which the server clears of
 * leftovers at boot.
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import { DiffPlugin, MetadataPlugin } from "../types.ts";
import { defaultPlatform } from "../snapshots/api.ts";
import { type Differ, WalkingDiffer } from "./differ.ts";

register({
  type: DiffPlugin,
  id: "walking",
  requires: [MetadataPlugin],
  init(ctx): Differ {
    ctx.meta.platforms.push(defaultPlatform());
    return new WalkingDiffer({
      metadata: ctx.get(MetadataPlugin),
      root: ctx.properties.rootDir,
      log: ctx.log,
    });
  },
});
