/**
 * io.containerd.content.v1.content: registers the local content store on the plugin's own root
 * (`<root>/io.containerd.content.v1.content`, holding blobs/ and ingest/), as containerd does.
 * It takes no config. The bytes it moves are noted to the daemon's heap trimmer, so freed
 * memory goes back to the OS after bursts (server/heap_trim.ts). The metadata plugin and the content service reach it through the plugin
 * set (`ctx.get(ContentPlugin)`), never by importing local.ts.
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import { ContentPlugin } from "../types.ts";
import type { ContentStore } from "./api.ts";
import { LocalContentStore } from "./local.ts";

register({
  type: ContentPlugin,
  id: "content",
  async init(ctx): Promise<ContentStore> {
    const store = await LocalContentStore.open(ctx.root, {
      log: ctx.log,
      heapTrimmer: ctx.heapTrimmer,
    });
    // Reported by `ctr plugins ls -d`, as containerd's content plugin does.
    ctx.meta.exports = { ...ctx.meta.exports, root: ctx.root };
    return store;
  },
});
