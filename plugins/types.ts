/**
 * The plugin types of containerd, as typed tokens: `ctx.get(GRPCPlugin)` yields an
 * `RpcServices` without a cast. Types whose instance interface arrives with a later capability
 * start as `unknown` and gain their interface when that capability lands.
 *
 * @module
 */
import { type PluginType, pluginType } from "../server/plugin.ts";
import type { RpcServices } from "../server/rpc.ts";
import type { Exchange } from "../server/exchange.ts";
import type { ContentStore } from "./content/api.ts";
import type { MetadataStore } from "./metadata/api.ts";
import type { GarbageCollector } from "./gc/api.ts";
import type { LeaseManager } from "./leases/api.ts";
import type { Snapshotter } from "./snapshots/api.ts";
import type { Differ } from "./diff/differ.ts";
import type { TaskManager } from "./runtime/manager.ts";
import type { TaskMonitor } from "./monitor/api.ts";

/** Internal daemon helpers (io.containerd.internal.v1). */
export const InternalPlugin: PluginType<unknown> = pluginType("io.containerd.internal.v1");
/** Task runtimes (io.containerd.runtime.v2). */
export const RuntimePluginV2: PluginType<TaskManager> = pluginType("io.containerd.runtime.v2");
/** In-process services that gRPC services wrap (io.containerd.service.v1). */
export const ServicePlugin: PluginType<unknown> = pluginType("io.containerd.service.v1");
/** gRPC services mounted on the daemon's socket (io.containerd.grpc.v1). */
export const GRPCPlugin: PluginType<RpcServices> = pluginType("io.containerd.grpc.v1");
/** ttrpc services on the ttrpc socket (io.containerd.ttrpc.v1). */
export const TTRPCPlugin: PluginType<unknown> = pluginType("io.containerd.ttrpc.v1");
/** Snapshotters (io.containerd.snapshotter.v1). */
export const SnapshotPlugin: PluginType<Snapshotter> = pluginType("io.containerd.snapshotter.v1");
/** Task monitors (io.containerd.monitor.v1). */
export const TaskMonitorPlugin: PluginType<TaskMonitor> = pluginType("io.containerd.monitor.v1");
/** Layer appliers and differs (io.containerd.differ.v1). */
export const DiffPlugin: PluginType<Differ> = pluginType("io.containerd.differ.v1");
/** The metadata store (io.containerd.metadata.v1). */
export const MetadataPlugin: PluginType<MetadataStore> = pluginType("io.containerd.metadata.v1");
/** The local content store (io.containerd.content.v1). */
export const ContentPlugin: PluginType<ContentStore> = pluginType("io.containerd.content.v1");
/** Garbage collection schedulers (io.containerd.gc.v1). */
export const GCPlugin: PluginType<GarbageCollector> = pluginType("io.containerd.gc.v1");
/** The event exchange (io.containerd.event.v1). */
export const EventPlugin: PluginType<Exchange> = pluginType("io.containerd.event.v1");
/** Lease managers (io.containerd.lease.v1). */
export const LeasePlugin: PluginType<LeaseManager> = pluginType("io.containerd.lease.v1");
/** Transfer services (io.containerd.transfer.v1). */
export const TransferPlugin: PluginType<unknown> = pluginType("io.containerd.transfer.v1");
