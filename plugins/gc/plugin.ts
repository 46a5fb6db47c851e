/**
 * io.containerd.gc.v1.scheduler: schedules the metadata store's garbage collection with
 * containerd's knobs (`[plugins."io.containerd.gc.v1.scheduler"]`): pause_threshold 0.02,
 * deletion_threshold 0, mutation_threshold 100, schedule_delay "0s", startup_delay "100ms".
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import { configSchema, field, parseDuration } from "../../server/schema.ts";
import { GCPlugin, MetadataPlugin } from "../types.ts";
import type { GarbageCollector } from "./api.ts";
import { GCScheduler } from "./scheduler.ts";

/** The scheduler's config section, with containerd's defaults. */
export const schedulerConfig = configSchema({
  pause_threshold: field.number(0.02, { min: 0 }),
  deletion_threshold: field.integer(0, { min: 0 }),
  mutation_threshold: field.integer(100, { min: 0 }),
  schedule_delay: field.duration("0s"),
  startup_delay: field.duration("100ms"),
});

register({
  type: GCPlugin,
  id: "scheduler",
  requires: [MetadataPlugin],
  config: schedulerConfig,
  init(ctx): GarbageCollector & { close(): void } {
    const metadata = ctx.get(MetadataPlugin);
    const config = ctx.config;
    const scheduler = new GCScheduler(metadata, {
      pauseThreshold: config.pause_threshold,
      deletionThreshold: config.deletion_threshold,
      mutationThreshold: config.mutation_threshold,
      scheduleDelayMs: parseDuration(config.schedule_delay),
      startupDelayMs: parseDuration(config.startup_delay),
      log: ctx.log,
    });
    ctx.signal.addEventListener("abort", () => scheduler.close(), { once: true });
    ctx.meta.exports = {
      PauseThreshold: String(Math.min(Math.max(config.pause_threshold, 0), 0.5)),
      DeletionThreshold: String(config.deletion_threshold),
      MutationThreshold: String(config.mutation_threshold),
      ScheduleDelay: config.schedule_delay,
    };
    return scheduler;
  },
});
