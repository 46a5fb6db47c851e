/**
 * io.containerd.grpc.v1.tasks: containerd.services.tasks.v1.Tasks over the runtime v2 task
 * manager — what `ctr run`, `ctr tasks ...` and `ctr events` (/tasks/*) rely on.
 *
 * As in containerd 1.6, every call first looks up the container (NotFound `container "x" in
 * namespace "ns": not found`), then its task (NotFound `task x not found`). Process calls go
 * to the task's shim over ttrpc, for the init process (no exec id) or an exec; the shim's
 * errors keep their code (a kill after exit is NotFound `process already finished`). The
 * shim publishes the /tasks/* events itself (create, start, exit, exec-added, exec-started,
 * oom, paused, resumed, delete) through the daemon's ttrpc socket; the manager publishes exit
 * and delete for a shim that died. Wait is a long call to the shim that ends when the process
 * exits or the client goes away; it may come before Start. Checkpoint answers Unimplemented.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Any, EmptySchema, type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CreateTaskResponseSchema,
  DeleteResponseSchema,
  GetResponseSchema,
  ListPidsResponseSchema,
  ListTasksResponseSchema,
  MetricsResponseSchema,
  StartResponseSchema,
  Tasks,
  WaitResponseSchema,
} from "../../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Task } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import { type Process, ProcessSchema } from "../../proto/gen/containerd/types/task/task_pb.ts";
import { InvalidArgumentError, isNotFound, NotImplementedError } from "../../server/errdefs.ts";
import { adaptRecord, parseAll } from "../../server/filters.ts";
import { namespaceOf } from "../../server/interceptors.ts";
import type { Logger } from "../../server/log.ts";
import { type InitContext, PluginNotFoundError, register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import { type AnyValue, type ContainerStore, SqlContainerStore } from "../metadata/containers.ts";
import type { RuntimeTask, TaskManager } from "../runtime/manager.ts";
import { noopMonitor, type TaskMonitor } from "../monitor/api.ts";
import { GRPCPlugin, MetadataPlugin, RuntimePluginV2, TaskMonitorPlugin } from "../types.ts";

/** What the Tasks service needs. */
export interface TasksServiceDeps {
  containers: ContainerStore;
  tasks: TaskManager;
  log: Logger;
  /** Told about each task after Create and before Delete. Default: watches nothing. */
  monitor?: TaskMonitor;
}

function anyValue(value: Any | undefined): AnyValue | undefined {
  return value === undefined || value.typeUrl === ""
    ? undefined
    : { typeUrl: value.typeUrl, value: value.value };
}

const ZERO_TIME: Timestamp = timestampFromDate(new Date(0));

/** containerd.services.tasks.v1.Tasks over a task manager and the containers store. */
export function tasksService(deps: TasksServiceDeps): ServiceSpec {
  const { containers, tasks } = deps;
  const monitor = deps.monitor ?? noopMonitor;

  /** The container's task; the container must exist first, as containerd checks. */
  const taskOf = (namespace: string, containerId: string): RuntimeTask => {
    containers.get(namespace, containerId);
    return tasks.get(namespace, containerId);
  };

  /** A process's state as the Tasks API carries it. */
  const processState = async (
    task: RuntimeTask,
    execId: string,
    signal?: AbortSignal,
  ): Promise<Process> => {
    const state = await task.shim.call(
      Task.method.state,
      { id: task.id, execId },
      signal ? { signal } : {},
    );
    return create(ProcessSchema, {
      id: execId || task.id,
      pid: state.pid,
      status: state.status,
      stdin: state.stdin,
      stdout: state.stdout,
      stderr: state.stderr,
      terminal: state.terminal,
      exitStatus: state.exitStatus,
      exitedAt: state.exitedAt ?? ZERO_TIME,
    });
  };

  return serviceSpec(Tasks, {
    async create(request, ctx) {
      const namespace = namespaceOf(ctx);
      const container = containers.get(namespace, request.containerId);
      if (request.checkpoint !== undefined && request.checkpoint.digest !== "") {
        throw new NotImplementedError(
          `task ${request.containerId}: restoring from a checkpoint is not supported by containerd-ts`,
        );
      }
      const { task, pid } = await tasks.create({
        namespace,
        id: container.id,
        spec: container.spec.value,
        runtime: request.runtimePath || container.runtime.name,
        runtimeOptions: container.runtime.options,
        taskOptions: anyValue(request.options),
        rootfs: request.rootfs.map((m) => ({
          type: m.type,
          source: m.source,
          target: m.target,
          options: m.options,
        })),
        io: {
          stdin: request.stdin,
          stdout: request.stdout,
          stderr: request.stderr,
          terminal: request.terminal,
        },
      });
      // As containerd: the monitor labels the task's metrics with its runtime.
      monitor.monitor(task, { runtime: container.runtime.name });
      return create(CreateTaskResponseSchema, { containerId: container.id, pid });
    },

    async start(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      const started = await task.shim.call(Task.method.start, {
        id: task.id,
        execId: request.execId,
      });
      return create(StartResponseSchema, { pid: started.pid });
    },

    async delete(request, ctx) {
      const namespace = namespaceOf(ctx);
      monitor.stop(taskOf(namespace, request.containerId));
      const exit = await tasks.delete(namespace, request.containerId);
      return create(DeleteResponseSchema, {
        pid: exit.pid,
        exitStatus: exit.exitStatus,
        exitedAt: timestampFromDate(exit.exitedAt),
      });
    },

    async deleteProcess(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      if (request.execId === "") {
        throw new InvalidArgumentError(
          "exec id is required to delete a process; use Delete for the task",
        );
      }
      const deleted = await task.shim.call(Task.method.delete, {
        id: task.id,
        execId: request.execId,
      });
      return create(DeleteResponseSchema, {
        id: request.execId,
        pid: deleted.pid,
        exitStatus: deleted.exitStatus,
        exitedAt: deleted.exitedAt ?? ZERO_TIME,
      });
    },

    async get(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      const process = await processState(task, request.execId, ctx.signal);
      return create(GetResponseSchema, { process });
    },

    async list(_request, ctx) {
      const namespace = namespaceOf(ctx);
      const processes: Process[] = [];
      for (const task of tasks.list(namespace)) {
        try {
          processes.push(await processState(task, "", ctx.signal));
        } catch (err) {
          if (!isNotFound(err)) {
            deps.log.warn("cannot read task state", { id: task.id, error: String(err) });
          }
        }
      }
      return create(ListTasksResponseSchema, { tasks: processes });
    },

    async kill(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.kill, {
        id: task.id,
        execId: request.execId,
        signal: request.signal,
        all: request.all,
      });
      return create(EmptySchema);
    },

    async exec(request, ctx) {
      if (request.execId === "") throw new InvalidArgumentError("exec id cannot be empty");
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.exec, {
        id: task.id,
        execId: request.execId,
        terminal: request.terminal,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
        spec: request.spec,
      });
      return create(EmptySchema);
    },

    async resizePty(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.resizePty, {
        id: task.id,
        execId: request.execId,
        width: request.width,
        height: request.height,
      });
      return create(EmptySchema);
    },

    async closeIO(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      if (request.stdin) {
        await task.shim.call(Task.method.closeIO, {
          id: task.id,
          execId: request.execId,
          stdin: true,
        });
      }
      return create(EmptySchema);
    },

    async pause(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.pause, { id: task.id });
      return create(EmptySchema);
    },

    async resume(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.resume, { id: task.id });
      return create(EmptySchema);
    },

    async listPids(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      const pids = await task.shim.call(Task.method.pids, { id: task.id });
      return create(ListPidsResponseSchema, { processes: pids.processes });
    },

    checkpoint(request) {
      throw new NotImplementedError(
        `checkpoint of task ${request.containerId}: checkpoints are not supported by containerd-ts`,
      );
    },

    async update(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      await task.shim.call(Task.method.update, {
        id: task.id,
        resources: request.resources,
        annotations: request.annotations,
      });
      return create(EmptySchema);
    },

    async metrics(request, ctx) {
      const namespace = namespaceOf(ctx);
      const filter = parseAll(request.filters);
      const metrics = [];
      for (const task of tasks.list(namespace)) {
        if (!filter.match(adaptRecord({ id: task.id, namespace, runtime: task.runtime }))) {
          continue;
        }
        const collected = timestampFromDate(new Date());
        try {
          const stats = await task.shim.call(Task.method.stats, { id: task.id });
          metrics.push({ timestamp: collected, id: task.id, data: stats.stats });
        } catch (err) {
          if (!isNotFound(err)) {
            deps.log.warn("collecting metrics failed", { id: task.id, error: String(err) });
          }
        }
      }
      return create(MetricsResponseSchema, { metrics });
    },

    async wait(request, ctx) {
      const task = taskOf(namespaceOf(ctx), request.containerId);
      const waited = await task.shim.call(
        Task.method.wait,
        { id: task.id, execId: request.execId },
        { signal: ctx.signal },
      );
      return create(WaitResponseSchema, {
        exitStatus: waited.exitStatus,
        exitedAt: waited.exitedAt ?? ZERO_TIME,
      });
    },
  });
}

register({
  type: GRPCPlugin,
  id: "tasks",
  requires: [RuntimePluginV2, MetadataPlugin, TaskMonitorPlugin],
  init(ctx): RpcServices {
    const containers = new SqlContainerStore(ctx.get(MetadataPlugin));
    const tasks = ctx.get(RuntimePluginV2);
    const monitor = taskMonitorOf(ctx);
    // Tasks reconnected at boot are watched again (without labels, as containerd does).
    for (const task of tasks.all()) monitor.monitor(task);
    return { services: [tasksService({ containers, tasks, log: ctx.log, monitor })] };
  },
});

/** The task monitor plugin, or one that watches nothing when none loaded (as containerd). */
function taskMonitorOf(ctx: InitContext<unknown>): TaskMonitor {
  try {
    return ctx.get(TaskMonitorPlugin);
  } catch (err) {
    if (!(err instanceof PluginNotFoundError)) throw err;
    ctx.log.debug("no task monitor; task metrics are off", { reason: err.message });
    return noopMonitor;
  }
}
