/**
 * The task monitor contract (io.containerd.monitor.v1), as containerd's runtime.TaskMonitor:
 * the Tasks service hands each task to the monitor once it exists (`monitor`) and takes it
 * back before deleting it (`stop`); what the monitor does with it (metrics, OOM watching) is
 * its own business.
 *
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  StatsRequestSchema,
  StatsResponse,
  Task,
} from "../../proto/gen/containerd/task/v2/shim_pb.ts";

/** The part of a shim connection a monitor uses: Task.Stats, and knowing when it is gone. */
export interface StatsSource {
  call(
    method: typeof Task.method.stats,
    input: MessageInitShape<typeof StatsRequestSchema>,
    options?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<StatsResponse>;
  /** Resolves when the connection to the shim is gone. */
  readonly closed: Promise<void>;
}

/** A task as a monitor sees it; the runtime's tasks fit this shape. */
export interface MonitoredTask {
  readonly namespace: string;
  readonly id: string;
  readonly shim: StatsSource;
}

/** A task monitor: told when tasks start and stop being of interest. */
export interface TaskMonitor {
  /**
   * Watch `task`. `labels` are extra labels for what the monitor reports (the Tasks service
   * passes `{runtime: <name>}` on Create, none for tasks found again at boot). Watching a task
   * twice is a no-op.
   */
  monitor(task: MonitoredTask, labels?: Readonly<Record<string, string>>): void;
  /** Stop watching `task`; a task not watched is ignored. */
  stop(task: MonitoredTask): void;
}

/** A monitor that watches nothing: what the Tasks service uses when no monitor plugin loaded. */
export const noopMonitor: TaskMonitor = {
  monitor() {},
  stop() {},
};
