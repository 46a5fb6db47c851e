/**
 * io.containerd.lease.v1.manager: registers the lease manager over the metadata store, with
 * the GC scheduler for `sync` deletes (or a direct collection when the scheduler is
 * disabled).
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import { GCPlugin, LeasePlugin, MetadataPlugin } from "../types.ts";
import type { LeaseManager } from "./api.ts";
import { MetadataLeaseManager, type SyncCollect } from "./manager.ts";

register({
  type: LeasePlugin,
  id: "manager",
  requires: [MetadataPlugin, GCPlugin],
  init(ctx): LeaseManager {
    const metadata = ctx.get(MetadataPlugin);
    let collect: SyncCollect;
    try {
      const gc = ctx.get(GCPlugin);
      collect = (signal) => gc.scheduleAndWait(signal);
    } catch {
      // No scheduler (disabled): a sync delete collects directly.
      ctx.log.warn("no gc scheduler loaded; sync lease deletes collect directly");
      collect = () => metadata.garbageCollect();
    }
    return new MetadataLeaseManager(metadata.leases, collect);
  },
});
