/**
 * `containerd.services.tasks.v1.Tasks`: the running side of a container (`ctr tasks`) — create
 * a task from a container record and its rootfs mounts, start, wait, kill, exec, pause,
 * resume, inspect and delete it. Every call names the container; process calls take an
 * `execId` for an exec'd process (none: the task's init process).
 *
 * Standard I/O is given as URIs the runc shim opens itself: a FIFO path (what ctr uses),
 * `file:///abs/path` (stdout and stderr both appended to that file, created if missing), or
 * `binary:///path/to/logger?args` (a logging binary). All empty: no I/O.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const rootfs = await client.snapshots.mounts("c1");
 * await client.tasks.create({ containerId: "c1", rootfs, stdout: "file:///tmp/c1.log" });
 * const exited = client.tasks.wait("c1"); // before start, so the exit cannot be missed
 * await client.tasks.start("c1");
 * console.log((await exited).exitStatus);
 * await client.tasks.delete("c1");
 * ```
 * @module
 */
import { fromBinary } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { Tasks } from "../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { ProcessDetailsSchema } from "../proto/gen/containerd/runc/v1/options_pb.ts";
import { type Process, Status } from "../proto/gen/containerd/types/task/task_pb.ts";
import {
  type AnyValue,
  DEFAULT_PATH_ENV,
  jsonAny,
  OCI_PROCESS_TYPE_URL,
  OCI_RESOURCES_TYPE_URL,
  type OciProcess,
} from "./containers.ts";
import { InvalidArgumentError } from "./errors.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";
import type { MountInfo } from "./snapshots.ts";

/** A process's state, as containerd's `task.Status`. */
export type TaskStatus = "created" | "running" | "stopped" | "paused" | "pausing" | "unknown";

/** A task's (or exec'd process's) state. */
export interface ProcessState {
  /** The container. Set by `list` and `get`. */
  containerId: string;
  /** The container id for the init process, else the exec id. */
  id: string;
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** Meaningful once `status` is "stopped". */
  exitStatus: number;
  /** Set once the process exited. */
  exitedAt?: Date;
}

/** How a process ended. */
export interface ExitStatus {
  exitStatus: number;
  exitedAt: Date;
}

/** What `delete` / `deleteProcess` answer: the process's last pid and how it ended. */
export interface DeletedProcess extends ExitStatus {
  /** The exec id for a process, "" for the task. */
  id: string;
  pid: number;
}

/** Standard I/O of a task or exec: URIs the shim opens (see the module doc). */
export interface ProcessIO {
  /** FIFO path or "" (default: none). */
  stdin?: string;
  /** FIFO path, `file:///path`, `binary:///path` or "" (default: none). */
  stdout?: string;
  /**
   * As `stdout`. Default: the `stdout` URI when that is a `file:` or `binary:` URI (the runc
   * shim sends both streams there and needs both set), else none.
   */
  stderr?: string;
  /** Allocate a terminal (then stdout carries both streams); default false. */
  terminal?: boolean;
}

/** What {@link TasksClient.create} takes. */
export interface CreateTaskOptions extends ProcessIO, CallOptions {
  /** The container record to run. */
  containerId: string;
  /** The root filesystem mounts (`client.snapshots.mounts(key)`); none for a spec with a
   * host path as root. */
  rootfs?: MountInfo[];
  /** Task options for the runtime (for runc, a `containerd.runc.v1.Options`). */
  options?: AnyValue;
  /** A shim binary to use instead of the container's runtime. */
  runtimePath?: string;
}

/** Options of calls that may address an exec'd process. */
export interface ProcessOptions extends CallOptions {
  /** The exec id; default "" — the task's init process. */
  execId?: string;
}

/** Options of {@link TasksClient.kill}. */
export interface KillOptions extends ProcessOptions {
  /** Signal every process of the container, not just the one addressed. */
  all?: boolean;
}

/** Options of {@link TasksClient.exec}. */
export interface ExecOptions extends ProcessIO, CallOptions {
  /**
   * The process to run. Missing `cwd` defaults to "/", `env` to {@link DEFAULT_PATH_ENV},
   * `user` to root; `terminal` follows {@link ProcessIO.terminal}.
   */
  process: Partial<OciProcess> & { args: string[] };
}

/** Options of {@link TasksClient.resizePty}. */
export interface ResizeOptions extends ProcessOptions {
  width: number;
  height: number;
}

/** Options of {@link TasksClient.update}. */
export interface UpdateTaskOptions extends CallOptions {
  /** OCI `LinuxResources` (e.g. `{ memory: { limit: 1 << 28 } }`), sent as JSON. */
  resources?: Record<string, unknown>;
  annotations?: Record<string, string>;
}

/** A process of a task, from {@link TasksClient.listPids}. */
export interface PidInfo {
  pid: number;
  /** The exec id when the runc shim knows the process as an exec; "" otherwise. */
  execId: string;
  /** The runtime's details, opaque (runc: `containerd.runc.v1.ProcessDetails`). */
  info?: AnyValue;
}

/** A task's metrics, from {@link TasksClient.metrics}. */
export interface TaskMetric {
  /** The container id. */
  id: string;
  timestamp?: Date;
  /**
   * The runtime's statistics, opaque: for runc a cgroups `io.containerd.cgroups.v1.Metrics`
   * or `io.containerd.cgroups.v2.Metrics` protobuf.
   */
  data?: AnyValue;
}

const STATUS: Record<number, TaskStatus> = {
  [Status.CREATED]: "created",
  [Status.RUNNING]: "running",
  [Status.STOPPED]: "stopped",
  [Status.PAUSED]: "paused",
  [Status.PAUSING]: "pausing",
};

/** Linux signal numbers by name (as Go's `unix.SignalNum`). */
const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGIOT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPOLL: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/**
 * A signal number from a number, a numeric string, or a name with or without `SIG`, in any
 * case (`"SIGTERM"`, `"term"`, `"9"`, `"SIGRTMIN+3"`), as containerd's `ParseSignal` on Linux.
 *
 * @throws {InvalidArgumentError} for an unknown name or a number outside 1..64.
 *
 * @example
 * ```ts
 * import { parseSignal } from "./mod.ts";
 * console.log(parseSignal("SIGKILL"), parseSignal("hup"), parseSignal(15)); // 9 1 15
 * ```
 */
export function parseSignal(signal: number | string): number {
  let n: number | undefined;
  if (typeof signal === "number") n = signal;
  else if (/^\d+$/.test(signal.trim())) n = Number(signal.trim());
  else {
    let name = signal.trim().toUpperCase();
    if (!name.startsWith("SIG")) name = `SIG${name}`;
    const rt = /^SIGRT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
    if (rt) {
      const base = rt[1] === "MIN" ? SIGRTMIN : SIGRTMAX;
      const offset = Number(rt[3] ?? 0) * (rt[2] === "-" ? -1 : 1);
      n = base + offset;
      if (n < SIGRTMIN || n > SIGRTMAX) n = undefined;
    } else {
      n = SIGNALS[name];
    }
  }
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > SIGRTMAX) {
    throw new InvalidArgumentError(`unknown signal ${JSON.stringify(String(signal))}`);
  }
  return n;
}

/**
 * `file://` URI of an absolute path, for a task's stdout/stderr (the runc shim appends
 * both streams to the file).
 *
 * @throws {InvalidArgumentError} for a relative path.
 *
 * @example
 * ```ts
 * import { fileURI } from "./mod.ts";
 * console.log(fileURI("/tmp/my log.txt")); // file:///tmp/my%20log.txt
 * ```
 */
export function fileURI(path: string): string {
  if (!path.startsWith("/")) {
    throw new InvalidArgumentError(`log file ${JSON.stringify(path)}: path must be absolute`);
  }
  const url = new URL("file://");
  url.pathname = path;
  return url.href;
}

/** A date from a timestamp; undefined for none or the zero time (not exited). */
function exitDate(ts: Timestamp | undefined): Date | undefined {
  if (ts === undefined || (ts.seconds <= 0n && ts.nanos === 0)) return undefined;
  return timestampDate(ts);
}

function exitOf(exitStatus: number, ts: Timestamp | undefined): ExitStatus {
  return { exitStatus, exitedAt: ts === undefined ? new Date(0) : timestampDate(ts) };
}

function toState(p: Process | undefined, containerId: string): ProcessState {
  const out: ProcessState = {
    containerId: p?.containerId || containerId,
    id: p?.id ?? "",
    pid: p?.pid ?? 0,
    status: STATUS[p?.status ?? -1] ?? "unknown",
    stdin: p?.stdin ?? "",
    stdout: p?.stdout ?? "",
    stderr: p?.stderr ?? "",
    terminal: p?.terminal ?? false,
    exitStatus: p?.exitStatus ?? 0,
  };
  const exitedAt = exitDate(p?.exitedAt);
  if (exitedAt !== undefined) out.exitedAt = exitedAt;
  return out;
}

function ioOf(io: ProcessIO) {
  const stdout = io.stdout ?? "";
  // The runc shim writes both streams to a file or binary URI; given that URI for stdout
  // only, containerd 1.6's shim dies on the missing stderr pipe. Send it for both, as ctr's
  // --log-uri does.
  const logURI = /^(file|binary):/.test(stdout);
  return {
    stdin: io.stdin ?? "",
    stdout,
    stderr: io.stderr ?? (logURI ? stdout : ""),
    terminal: io.terminal ?? false,
  };
}

/** The runc shim's exec id from a ProcessDetails Any; "" for anything else. */
function execIdOf(info: AnyValue | undefined): string {
  if (info === undefined || !info.typeUrl.endsWith("containerd.runc.v1.ProcessDetails")) return "";
  try {
    return fromBinary(ProcessDetailsSchema, info.value).execId;
  } catch {
    return "";
  }
}

/**
 * The Tasks service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * for (const t of await client.tasks.list()) console.log(t.id, t.pid, t.status);
 * ```
 */
export class TasksClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.tasks`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Create the container's task: the shim starts and runc creates the init process (not yet
   * running). NotFoundError for a missing container, AlreadyExistsError when it has a task,
   * and the runtime's error (`OCI runtime create failed: ...`) when runc refuses the spec.
   *
   * @example
   * ```ts
   * import { connect, fileURI } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { pid } = await client.tasks.create({
   *   containerId: "c1",
   *   rootfs: await client.snapshots.mounts("c1"),
   *   stdout: fileURI("/tmp/c1.log"),
   * });
   * ```
   */
  async create(options: CreateTaskOptions): Promise<{ containerId: string; pid: number }> {
    const res = await this.#rpc.unary(Tasks.method.create, {
      containerId: options.containerId,
      rootfs: (options.rootfs ?? []).map((m) => ({
        type: m.type,
        source: m.source,
        target: m.target,
        options: [...m.options],
      })),
      ...ioOf(options),
      ...(options.options !== undefined ? { options: options.options } : {}),
      runtimePath: options.runtimePath ?? "",
    }, options);
    return { containerId: res.containerId, pid: res.pid };
  }

  /**
   * Start the task's init process, or an exec'd process (`execId`); answers its pid.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { pid } = await client.tasks.start("c1");
   * ```
   */
  async start(containerId: string, options: ProcessOptions = {}): Promise<{ pid: number }> {
    const res = await this.#rpc.unary(Tasks.method.start, {
      containerId,
      execId: options.execId ?? "",
    }, options);
    return { pid: res.pid };
  }

  /**
   * Resolve when the process exits (at once if it already has), with its status and time.
   * Call it before `start` to be sure to see a short-lived process end. `signal` aborts the
   * wait (CanceledError) without touching the process. A wait is a unary call, so a client
   * made with `timeoutMs` cuts it at that deadline unless `options.timeoutMs` says otherwise.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { exitStatus, exitedAt } = await client.tasks.wait("c1", {
   *   signal: AbortSignal.timeout(60_000),
   * });
   * ```
   */
  async wait(containerId: string, options: ProcessOptions = {}): Promise<ExitStatus> {
    const res = await this.#rpc.unary(Tasks.method.wait, {
      containerId,
      execId: options.execId ?? "",
    }, options);
    return exitOf(res.exitStatus, res.exitedAt);
  }

  /**
   * Send a signal (default SIGTERM) to the init process, an exec (`execId`), or with `all`
   * every process of the container. NotFoundError `process already finished` once it exited.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.kill("c1", "SIGKILL", { all: true });
   * ```
   */
  async kill(
    containerId: string,
    signal: number | string = "SIGTERM",
    options: KillOptions = {},
  ): Promise<void> {
    await this.#rpc.unary(Tasks.method.kill, {
      containerId,
      execId: options.execId ?? "",
      signal: parseSignal(signal),
      all: options.all ?? false,
    }, options);
  }

  /**
   * Delete a task that was created but not started, or whose init process has exited (the
   * runc shim refuses a running one: `cannot delete a running process`, code Unknown, as in
   * containerd): the shim is stopped and the rootfs unmounted. Answers how the process ended.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { exitStatus } = await client.tasks.delete("c1");
   * ```
   */
  async delete(containerId: string, options: CallOptions = {}): Promise<DeletedProcess> {
    const res = await this.#rpc.unary(Tasks.method.delete, { containerId }, options);
    return { id: res.id, pid: res.pid, ...exitOf(res.exitStatus, res.exitedAt) };
  }

  /**
   * Delete an exec'd process that has exited (or was never started).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.deleteProcess("c1", "e1");
   * ```
   */
  async deleteProcess(
    containerId: string,
    execId: string,
    options: CallOptions = {},
  ): Promise<DeletedProcess> {
    const res = await this.#rpc.unary(
      Tasks.method.deleteProcess,
      { containerId, execId },
      options,
    );
    return { id: res.id, pid: res.pid, ...exitOf(res.exitStatus, res.exitedAt) };
  }

  /**
   * The state of the init process or an exec; NotFoundError `task <id> not found` when the
   * container has no task.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { status, pid } = await client.tasks.get("c1");
   * ```
   */
  async get(containerId: string, options: ProcessOptions = {}): Promise<ProcessState> {
    const res = await this.#rpc.unary(Tasks.method.get, {
      containerId,
      execId: options.execId ?? "",
    }, options);
    return toState(res.process, containerId);
  }

  /**
   * The tasks of the namespace (their init processes).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const running = (await client.tasks.list()).filter((t) => t.status === "running");
   * ```
   */
  async list(options: CallOptions & { filter?: string } = {}): Promise<ProcessState[]> {
    const res = await this.#rpc.unary(Tasks.method.list, { filter: options.filter ?? "" }, options);
    return res.tasks.map((p) => toState(p, p.id));
  }

  /**
   * Add a process to a running task (then `start` it with the same `execId`, `wait` for
   * it, `deleteProcess` it). AlreadyExistsError when the exec id is taken.
   *
   * @example
   * ```ts
   * import { connect, fileURI } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.exec("c1", "e1", {
   *   process: { args: ["/bin/echo", "hi"] },
   *   stdout: fileURI("/tmp/e1.log"),
   * });
   * const done = client.tasks.wait("c1", { execId: "e1" });
   * await client.tasks.start("c1", { execId: "e1" });
   * console.log((await done).exitStatus);
   * await client.tasks.deleteProcess("c1", "e1");
   * ```
   */
  async exec(containerId: string, execId: string, options: ExecOptions): Promise<void> {
    const io = ioOf(options);
    const process: OciProcess = {
      user: { uid: 0, gid: 0 },
      env: [DEFAULT_PATH_ENV],
      ...options.process,
      cwd: options.process.cwd ?? "/",
      terminal: io.terminal,
    };
    await this.#rpc.unary(Tasks.method.exec, {
      containerId,
      execId,
      ...io,
      spec: jsonAny(OCI_PROCESS_TYPE_URL, process),
    }, options);
  }

  /**
   * Freeze every process of the task (status "paused").
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.pause("c1");
   * ```
   */
  async pause(containerId: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Tasks.method.pause, { containerId }, options);
  }

  /**
   * Thaw a paused task.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.resume("c1");
   * ```
   */
  async resume(containerId: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Tasks.method.resume, { containerId }, options);
  }

  /**
   * The processes in the task's cgroup, with the exec id of exec'd ones.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for (const p of await client.tasks.listPids("c1")) console.log(p.pid, p.execId);
   * ```
   */
  async listPids(containerId: string, options: CallOptions = {}): Promise<PidInfo[]> {
    const res = await this.#rpc.unary(Tasks.method.listPids, { containerId }, options);
    return res.processes.map((p) => {
      const out: PidInfo = { pid: p.pid, execId: "" };
      if (p.info !== undefined) {
        out.info = { typeUrl: p.info.typeUrl, value: p.info.value };
        out.execId = execIdOf(out.info);
      }
      return out;
    });
  }

  /**
   * Close the stdin of the init process or an exec, so a reader sees end of file.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.closeIO("c1");
   * ```
   */
  async closeIO(containerId: string, options: ProcessOptions = {}): Promise<void> {
    await this.#rpc.unary(Tasks.method.closeIO, {
      containerId,
      execId: options.execId ?? "",
      stdin: true,
    }, options);
  }

  /**
   * Resize the terminal of the init process or an exec (created with `terminal: true`).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.resizePty("c1", { width: 120, height: 40 });
   * ```
   */
  async resizePty(containerId: string, options: ResizeOptions): Promise<void> {
    await this.#rpc.unary(Tasks.method.resizePty, {
      containerId,
      execId: options.execId ?? "",
      width: options.width,
      height: options.height,
    }, options);
  }

  /**
   * Change the resources (cgroup limits) or annotations of a running task.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.tasks.update("c1", { resources: { pids: { limit: 64 } } });
   * ```
   */
  async update(containerId: string, options: UpdateTaskOptions = {}): Promise<void> {
    await this.#rpc.unary(Tasks.method.update, {
      containerId,
      ...(options.resources !== undefined
        ? { resources: jsonAny(OCI_RESOURCES_TYPE_URL, options.resources) }
        : {}),
      annotations: { ...options.annotations },
    }, options);
  }

  /**
   * Statistics of the tasks matching any of `filters` (fields `id`, `namespace`, `runtime`);
   * every task of the namespace without filters.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const [m] = await client.tasks.metrics({ filters: ["id==c1"] });
   * console.log(m?.data?.typeUrl); // io.containerd.cgroups.v2.Metrics
   * ```
   */
  async metrics(options: CallOptions & { filters?: string[] } = {}): Promise<TaskMetric[]> {
    const res = await this.#rpc.unary(
      Tasks.method.metrics,
      { filters: options.filters ?? [] },
      options,
    );
    return res.metrics.map((m) => {
      const out: TaskMetric = { id: m.id };
      if (m.timestamp !== undefined) out.timestamp = timestampDate(m.timestamp);
      if (m.data !== undefined) out.data = { typeUrl: m.data.typeUrl, value: m.data.value };
      return out;
    });
  }
}

/**
 * The definition `client.use()` builds {@link TasksClient} from.
 *
 * @example
 * ```ts
 * import { connect, tasksService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const tasks = client.use(tasksService); // same as client.tasks
 * ```
 */
export const tasksService: ServiceDef<TasksClient> = defineService(
  "tasks",
  (rpc) => new TasksClient(rpc),
);
