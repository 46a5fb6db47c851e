/**
 * The runtime v2 task manager: which tasks exist, each backed by its own shim process.
 *
 * Create makes the bundle, starts the shim and asks it to create the task (the shim mounts
 * the rootfs and runs runc); Delete asks the shim to delete the task, shuts the shim down and
 * removes the bundle. A shim whose connection drops while its task is still registered died:
 * the manager runs the shim's `delete` action (which cleans up what runc left), removes the
 * bundle and publishes /tasks/exit and /tasks/delete, as containerd does. On boot, bundles
 * left by a previous daemon are found again: live shims are reconnected, dead ones cleaned up.
 * When the daemon stops, shim connections are closed without touching the tasks.
 *
 * @module
 */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TaskDeleteSchema, TaskExitSchema } from "../../proto/gen/containerd/events/task_pb.ts";
import type { MountSchema } from "../../proto/gen/containerd/types/mount_pb.ts";
import { Task } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AlreadyExistsError, isNotFound, NotFoundError } from "../../server/errdefs.ts";
import type { Exchange } from "../../server/exchange.ts";
import type { Logger } from "../../server/log.ts";
import { TtrpcClient } from "../../server/ttrpc.ts";
import type { AnyValue, ContainerStore } from "../metadata/containers.ts";
import { publishEvent } from "../metadata/events.ts";
import {
  type Bundle,
  type BundleRoots,
  createBundle,
  deleteBundle,
  listBundles,
  orphanWorkDirs,
} from "./bundle.ts";
import {
  drainShimLog,
  type ExitInfo,
  readShimAddress,
  readShimBinary,
  resolveShimBinary,
  runShimDelete,
  runShimStart,
  ShimClient,
  type ShimCommand,
} from "./shim.ts";

/** Time allowed for the shim to answer while reconnecting or cleaning up. */
const SHIM_CALL_TIMEOUT_MS = 10_000;

/** What the manager needs from the daemon. */
export interface TaskManagerOptions {
  roots: BundleRoots;
  grpcAddress: string;
  ttrpcAddress: string;
  /** Passed to shims as `-publish-binary`. */
  publishBinary: string;
  /** Start shims with `-debug`. */
  debug: boolean;
  events: Exchange;
  /** Consulted for the runtime name of a bundle without `shim-binary-path`. */
  containers: ContainerStore;
  log: Logger;
}

/** Stdio of a process: FIFO paths (made by the client) and whether it has a tty. */
export interface TaskIO {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** What creating a task takes. */
export interface CreateTaskOptions {
  namespace: string;
  id: string;
  /** The OCI runtime spec bytes (config.json). */
  spec: Uint8Array;
  /** Runtime name (`io.containerd.runc.v2`) or an absolute shim path. */
  runtime: string;
  runtimeOptions?: AnyValue | undefined;
  taskOptions?: AnyValue | undefined;
  rootfs: MessageInitShape<typeof MountSchema>[];
  io: TaskIO;
}

/** A registered task: its bundle and the connection to its shim. */
export class RuntimeTask {
  /** Set once the task is deliberately deleted, so losing the shim is not a death. */
  deleting = false;

  constructor(
    readonly namespace: string,
    readonly id: string,
    readonly bundle: Bundle,
    readonly runtime: string,
    readonly shim: ShimClient,
    readonly closeLog: () => Promise<void>,
  ) {}
}

/** The tasks of every namespace and their shims. */
export class TaskManager {
  readonly #options: TaskManagerOptions;
  readonly #tasks = new Map<string, RuntimeTask>();
  readonly #reserved = new Set<string>();
  #stopping = false;

  constructor(options: TaskManagerOptions) {
    this.#options = options;
  }

  #command(bundle: Bundle, binary: string): ShimCommand {
    const o = this.#options;
    return {
      binary,
      bundle,
      grpcAddress: o.grpcAddress,
      ttrpcAddress: o.ttrpcAddress,
      publishBinary: o.publishBinary,
      debug: o.debug,
    };
  }

  /** The task `id` of `namespace`; NotFoundError when there is none. */
  get(namespace: string, id: string): RuntimeTask {
    const task = this.#tasks.get(key(namespace, id));
    if (!task) throw new NotFoundError(`task ${id} not found`);
    return task;
  }

  /** Whether `id` has a task (or one being created) in `namespace`. */
  has(namespace: string, id: string): boolean {
    const k = key(namespace, id);
    return this.#tasks.has(k) || this.#reserved.has(k);
  }

  /** Every task of every namespace (the Tasks service hands them to the monitor at boot). */
  all(): RuntimeTask[] {
    return [...this.#tasks.values()];
  }

  /** The tasks of `namespace`, by id. */
  list(namespace: string): RuntimeTask[] {
    return [...this.#tasks.values()].filter((t) => t.namespace === namespace)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * Start a shim and create the task in it. AlreadyExistsError when the id has a task; on any
   * failure the shim is shut down and the bundle removed, and the error names the step.
   */
  async create(options: CreateTaskOptions): Promise<{ task: RuntimeTask; pid: number }> {
    const k = key(options.namespace, options.id);
    if (this.has(options.namespace, options.id)) {
      throw new AlreadyExistsError(`task ${options.id}: already exists`);
    }
    this.#reserved.add(k);
    const log = this.#options.log.with({ namespace: options.namespace, id: options.id });
    let bundle: Bundle | undefined;
    let closeLog: () => Promise<void> = () => Promise.resolve();
    let shim: ShimClient | undefined;
    /** Set once a shim may have run: its `delete` action must then clean up after it. */
    let started: ShimCommand | undefined;
    try {
      const binary = resolveShimBinary(options.runtime);
      bundle = await createBundle(this.#options.roots, options, options.spec);
      closeLog = await drainShimLog(bundle, log);
      const command = this.#command(bundle, binary);
      const shimOptions = options.taskOptions ?? options.runtimeOptions;
      let address: string;
      started = command;
      try {
        address = await runShimStart(command, shimOptions);
      } catch (err) {
        throw wrap("failed to start shim", err);
      }
      shim = new ShimClient(await TtrpcClient.dial(address), options.namespace);
      let pid: number;
      try {
        const created = await shim.call(Task.method.create, {
          id: options.id,
          bundle: bundle.path,
          rootfs: options.rootfs,
          terminal: options.io.terminal,
          stdin: options.io.stdin,
          stdout: options.io.stdout,
          stderr: options.io.stderr,
          options: shimOptions,
        });
        pid = created.pid;
      } catch (err) {
        throw wrap("failed to create shim task", err);
      }
      const task = new RuntimeTask(
        options.namespace,
        options.id,
        bundle,
        binary,
        shim,
        closeLog,
      );
      this.#track(task, command);
      return { task, pid };
    } catch (err) {
      if (shim) await this.#shutdownShim(shim, options.id, true);
      // A shim that died half-way (or was shut down) may leave runc's container behind, which
      // would block the next create of this id: its delete action removes it, as containerd
      // runs it for every shim whose connection closes.
      if (started) await runShimDelete(started, log);
      await closeLog();
      if (bundle) await deleteBundle(bundle).catch(() => {});
      throw err;
    } finally {
      this.#reserved.delete(k);
    }
  }

  #track(task: RuntimeTask, command: ShimCommand): void {
    this.#tasks.set(key(task.namespace, task.id), task);
    void task.shim.closed.then(async () => {
      if (this.#stopping) return;
      if (task.deleting || this.#tasks.get(key(task.namespace, task.id)) !== task) {
        await task.closeLog();
        return;
      }
      await this.#cleanupDeadShim(task, command);
    });
  }

  async #cleanupDeadShim(task: RuntimeTask, command: ShimCommand): Promise<void> {
    const log = this.#options.log.with({ namespace: task.namespace, id: task.id });
    log.warn("cleaning up after shim disconnected");
    this.#tasks.delete(key(task.namespace, task.id));
    const exit = await runShimDelete(command, log);
    await task.closeLog();
    await deleteBundle(task.bundle).catch((err) =>
      log.warn("failed to remove bundle", { error: String(err) })
    );
    this.#publishExit(task.namespace, task.id, exit);
  }

  #publishExit(namespace: string, id: string, exit: ExitInfo | undefined): void {
    const pid = exit?.pid ?? 0;
    const exitStatus = exit?.exitStatus ?? 255;
    const exitedAt = timestampFromDate(exit?.exitedAt ?? new Date());
    const events = this.#options.events;
    publishEvent(events, namespace, "/tasks/exit", TaskExitSchema, {
      containerId: id,
      id,
      pid,
      exitStatus,
      exitedAt,
    });
    publishEvent(events, namespace, "/tasks/delete", TaskDeleteSchema, {
      containerId: id,
      pid,
      exitStatus,
      exitedAt,
    });
  }

  /** Shutdown (and, when `force`, close) a shim; errors are logged, never thrown. */
  async #shutdownShim(shim: ShimClient, id: string, force: boolean): Promise<void> {
    try {
      await shim.call(Task.method.shutdown, { id, now: force }, {
        timeoutMs: SHIM_CALL_TIMEOUT_MS,
      });
    } catch (err) {
      // A shim that exits on Shutdown often drops the connection before answering.
      if (!/closed/.test(String(err))) {
        this.#options.log.debug("shim shutdown", { id, error: String(err) });
      }
    }
    shim.close();
  }

  /**
   * Delete the task: the shim deletes it (unmounting its rootfs), then the shim is shut down
   * and the bundle removed. A shim error other than NotFound keeps the task registered.
   */
  async delete(namespace: string, id: string): Promise<ExitInfo> {
    const task = this.get(namespace, id);
    let response;
    let shimError: unknown;
    try {
      response = await task.shim.call(Task.method.delete, { id });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      shimError = err;
    }
    task.deleting = true;
    this.#tasks.delete(key(namespace, id));
    await this.#shutdownShim(task.shim, id, false);
    await task.closeLog();
    await deleteBundle(task.bundle);
    if (!response) throw shimError;
    return {
      pid: response.pid,
      exitStatus: response.exitStatus,
      exitedAt: response.exitedAt ? timestampDate(response.exitedAt) : new Date(),
    };
  }

  /**
   * Find the bundles of a previous daemon: reconnect live shims, clean up after dead ones,
   * and remove work dirs without a bundle.
   */
  async restore(): Promise<void> {
    const { roots, log } = this.#options;
    for (const bundle of await listBundles(roots)) {
      const taskLog = log.with({ namespace: bundle.namespace, id: bundle.id });
      let entries = 0;
      for await (const _ of Deno.readDir(bundle.path)) entries++;
      if (entries === 0) {
        await deleteBundle(bundle).catch(() => {});
        continue;
      }
      let binary = await readShimBinary(bundle);
      if (binary === undefined) {
        try {
          binary = resolveShimBinary(
            this.#options.containers.get(bundle.namespace, bundle.id).runtime.name,
          );
        } catch (err) {
          taskLog.error("cannot tell the shim of a bundle; removing it", { error: String(err) });
          await deleteBundle(bundle).catch(() => {});
          continue;
        }
      }
      const command = this.#command(bundle, binary);
      const closeLog = await drainShimLog(bundle, taskLog);
      let shim: ShimClient | undefined;
      try {
        shim = new ShimClient(
          await TtrpcClient.dial(await readShimAddress(bundle)),
          bundle.namespace,
        );
        await shim.call(Task.method.connect, { id: bundle.id }, {
          timeoutMs: SHIM_CALL_TIMEOUT_MS,
        });
      } catch (err) {
        taskLog.warn("shim of a previous daemon is gone; cleaning up", { error: String(err) });
        shim?.close();
        await runShimDelete(command, taskLog);
        await closeLog();
        await deleteBundle(bundle).catch(() => {});
        continue;
      }
      const task = new RuntimeTask(bundle.namespace, bundle.id, bundle, binary, shim, closeLog);
      this.#track(task, command);
      taskLog.info("reconnected to shim");
    }
    for (const dir of await orphanWorkDirs(roots)) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  /** Daemon stop: drop every shim connection, leaving the tasks running. */
  async close(): Promise<void> {
    this.#stopping = true;
    const tasks = [...this.#tasks.values()];
    for (const task of tasks) task.shim.close();
    await Promise.all(tasks.map((task) => task.closeLog()));
  }
}

function key(namespace: string, id: string): string {
  return `${namespace}/${id}`;
}

function wrap(prefix: string, err: unknown): Error {
  if (err instanceof Error) {
    err.message = `${prefix}: ${err.message}`;
    return err;
  }
  return new Error(`${prefix}: ${String(err)}`);
}
