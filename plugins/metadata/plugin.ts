/**
 * io.containerd.metadata.v1.sqlite: registers the metadata store. It needs the local content
 * store (io.containerd.content.v1) and keeps its database at `<root>/<this plugin>/meta.db`.
 *
 * Config (`[plugins."io.containerd.metadata.v1.sqlite"]`): `content_sharing_policy` =
 * "shared" (default: a blob on disk is linked into another namespace without rewriting it)
 * or "isolated" (every namespace must write the bytes itself), as containerd's bolt plugin.
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import { configSchema, field } from "../../server/schema.ts";
import { ContentPlugin, MetadataPlugin, SnapshotPlugin } from "../types.ts";
import type { MetadataStore } from "./api.ts";
import { SqliteMetadataStore } from "./store.ts";

/** The metadata plugin's config section. */
export const metadataConfig = configSchema({
  content_sharing_policy: field.oneOf(["shared", "isolated"], "shared"),
});

register({
  type: MetadataPlugin,
  id: "sqlite",
  requires: [ContentPlugin, SnapshotPlugin],
  config: metadataConfig,
  async init(ctx): Promise<MetadataStore> {
    const content = ctx.get(ContentPlugin);
    await Deno.mkdir(ctx.root, { recursive: true, mode: 0o711 });
    const store = SqliteMetadataStore.open({
      path: `${ctx.root}/meta.db`,
      content,
      log: ctx.log,
      sharedContent: ctx.config.content_sharing_policy === "shared",
    });
    ctx.meta.exports = { policy: ctx.config.content_sharing_policy };
    return store;
  },
});
