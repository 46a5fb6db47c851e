/**
 * One runtime v2 shim process as the daemon sees it: started with the shim's `start` action,
 * driven over ttrpc (containerd.task.v2.Task), cleaned up with its `delete` action.
 *
 * The command lines, environment and files follow containerd 1.6 so Debian's
 * `containerd-shim-runc-v2` behaves as under containerd: `<shim> -namespace NS -address
 * <gRPC socket> -publish-binary <this daemon> -id ID [-debug] start`, run in the bundle, with
 * `TTRPC_ADDRESS` (where the shim forwards events) and `GOMAXPROCS=2` added to the
 * environment and the runtime options (a protobuf Any) on stdin. The shim prints its ttrpc
 * address and exits; the daemon then connects, remembers the shim binary in
 * `shim-binary-path` (for reconnecting after a restart, when the address is read back from
 * the `address` file the shim wrote) and drains the `log` FIFO into its own log.
 *
 * @module
 */
import * as path from "node:path";
import { lookPath } from "../../server/look_path.ts";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { AnySchema, timestampDate } from "@bufbuild/protobuf/wkt";
import { DeleteResponseSchema } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import type { Logger } from "../../server/log.ts";
import { closeOnExecAll } from "../../server/cloexec.ts";
import type { TtrpcClient } from "../../server/ttrpc.ts";
import { FailedPreconditionError, NotFoundError } from "../../server/errdefs.ts";
import type { AnyValue } from "../metadata/containers.ts";
import type { Bundle } from "./bundle.ts";

/** How to run a shim binary for one bundle. */
export interface ShimCommand {
  /** Resolved path of the shim binary, e.g. /usr/bin/containerd-shim-runc-v2. */
  binary: string;
  bundle: Bundle;
  /** The daemon's gRPC socket (`-address`). */
  grpcAddress: string;
  /** The daemon's ttrpc socket (`TTRPC_ADDRESS`). */
  ttrpcAddress: string;
  /** What the shim runs to publish events when it has no ttrpc address (`-publish-binary`). */
  publishBinary: string;
  /** Pass `-debug` to the shim. */
  debug: boolean;
}

/** How an exited process ended, as the shim reports it. */
export interface ExitInfo {
  pid: number;
  exitStatus: number;
  exitedAt: Date;
}

/** The file in the bundle that names the shim binary, read when reconnecting. */
export const SHIM_BINARY_FILE = "shim-binary-path";

/**
 * The binary of a runtime name, as containerd resolves it: `io.containerd.runc.v2` →
 * `containerd-shim-runc-v2`, looked up on PATH. An absolute path is taken as is.
 */
export function resolveShimBinary(runtime: string): string {
  let name = runtime;
  if (!runtime.includes("/")) {
    const parts = runtime.split(".");
    if (parts.length < 2 || parts.some((p) => p === "")) {
      throw new NotFoundError(`runtime ${JSON.stringify(runtime)} is not a valid runtime name`);
    }
    name = `containerd-shim-${parts.at(-2)}-${parts.at(-1)}`;
  }
  const found = lookPath(name, Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin");
  if (found !== undefined) return found;
  throw new NotFoundError(
    `runtime ${JSON.stringify(runtime)} binary not installed ${JSON.stringify(name)}`,
  );
}

function shimArgs(command: ShimCommand, action: string[]): string[] {
  return [
    "-namespace",
    command.bundle.namespace,
    "-address",
    command.grpcAddress,
    "-publish-binary",
    command.publishBinary,
    "-id",
    command.bundle.id,
    ...action,
  ];
}

function shimEnv(command: ShimCommand): Record<string, string> {
  return { GOMAXPROCS: "2", TTRPC_ADDRESS: command.ttrpcAddress };
}

const decoder = new TextDecoder();

/**
 * Copy the shim's `log` FIFO to the daemon's stderr until the returned function is called, as
 * containerd does (the shim's lines are already formatted log lines). The FIFO is opened
 * read-write so the open never waits for the shim and the read side never sees EOF between
 * two shim writers (the start action and the shim daemon).
 *
 * Stopping never closes the reader while a read is pending: Deno 2.9.3 then frees the
 * descriptor at once, and the blocked read, woken later by a shim log line, closes that number
 * a second time — by then often a directory being removed, which aborts the whole process
 * ("unexpected error during closedir"). Instead a byte written through a second handle wakes
 * the read, the loop ends, and only then is the reader closed.
 */
export async function drainShimLog(bundle: Bundle, log: Logger): Promise<() => Promise<void>> {
  const fifo = path.join(bundle.path, "log");
  let reader: Deno.FsFile;
  let waker: Deno.FsFile;
  try {
    reader = await Deno.open(fifo, { read: true, write: true });
  } catch (err) {
    log.warn("cannot open shim log", { error: String(err) });
    return () => Promise.resolve();
  }
  try {
    waker = await Deno.open(fifo, { write: true });
  } catch (err) {
    reader.close();
    log.warn("cannot open shim log", { error: String(err) });
    return () => Promise.resolve();
  }
  let stopping = false;
  const done = (async () => {
    const buf = new Uint8Array(16 * 1024);
    try {
      while (!stopping) {
        const n = await reader.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        if (stopping && chunk.at(-1) === 0) chunk = chunk.subarray(0, -1);
        while (chunk.byteLength > 0) chunk = chunk.subarray(await Deno.stderr.write(chunk));
      }
    } catch {
      // The FIFO went away under us.
    } finally {
      reader.close();
    }
  })();
  let stopped: Promise<void> | undefined;
  return () => {
    stopped ??= (async () => {
      stopping = true;
      try {
        await waker.write(new Uint8Array([0]));
      } finally {
        waker.close();
      }
      await done;
    })();
    return stopped;
  };
}

/** Run the shim's `start` action; returns the ttrpc address it printed. */
export async function runShimStart(
  command: ShimCommand,
  runtimeOptions: AnyValue | undefined,
): Promise<string> {
  const args = shimArgs(command, command.debug ? ["-debug", "start"] : ["start"]);
  // The shim outlives this call: it must not inherit the daemon's sockets.
  closeOnExecAll();
  const child = new Deno.Command(command.binary, {
    args,
    cwd: command.bundle.path,
    env: shimEnv(command),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    // Not `detached`: Deno then forks the whole daemon (4 ms of blocked event loop per task
    // here) instead of using posix_spawn (0.3 ms). containerd puts the start process in its
    // own group only so a terminal's Ctrl-C cannot hit it; the shim daemon it leaves behind
    // makes its own process group either way.
  }).spawn();
  const writer = child.stdin.getWriter();
  try {
    if (runtimeOptions !== undefined) {
      await writer.write(
        toBinary(AnySchema, create(AnySchema, runtimeOptions)),
      );
    }
  } finally {
    await writer.close().catch(() => {});
  }
  const result = await child.output();
  const out = decoder.decode(result.stdout).trim();
  const errText = decoder.decode(result.stderr).trim();
  if (!result.success) {
    throw new FailedPreconditionError(
      `start shim ${command.binary} for task ${command.bundle.id}: ${
        [out, errText].filter((s) => s).join(" ") || "no output"
      }: exit status ${result.code}`,
    );
  }
  if (out === "") {
    throw new FailedPreconditionError(
      `start shim ${command.binary} for task ${command.bundle.id}: it printed no address`,
    );
  }
  await Deno.writeTextFile(path.join(command.bundle.path, SHIM_BINARY_FILE), command.binary, {
    mode: 0o600,
  });
  return out;
}

/**
 * Run the shim's `delete` action for a bundle whose shim is gone: it kills and removes what
 * runc left and prints a DeleteResponse. Returns how the task ended, or undefined when the
 * shim could not tell.
 */
export async function runShimDelete(command: ShimCommand, log: Logger): Promise<
  ExitInfo | undefined
> {
  const args = shimArgs(command, ["-bundle", command.bundle.path, "delete"]);
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command.binary, {
      args,
      cwd: command.bundle.path,
      env: shimEnv(command),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    log.warn("failed to run shim delete", { id: command.bundle.id, error: String(err) });
    return undefined;
  }
  const warnings = decoder.decode(result.stderr).trim();
  if (!result.success) {
    log.warn("failed to clean up after shim", {
      id: command.bundle.id,
      error: warnings || `exit status ${result.code}`,
    });
    return undefined;
  }
  if (warnings !== "") log.warn("shim cleanup warnings", { id: command.bundle.id, warnings });
  try {
    const response = fromBinary(DeleteResponseSchema, result.stdout);
    return {
      pid: response.pid,
      exitStatus: response.exitStatus,
      exitedAt: response.exitedAt ? timestampDate(response.exitedAt) : new Date(),
    };
  } catch (err) {
    log.warn("undecodable shim delete answer", { id: command.bundle.id, error: String(err) });
    return undefined;
  }
}

/** The ttrpc address a running shim wrote into its bundle. */
export async function readShimAddress(bundle: Bundle): Promise<string> {
  return (await Deno.readTextFile(path.join(bundle.path, "address"))).trim();
}

/** The shim binary recorded in the bundle, if any. */
export async function readShimBinary(bundle: Bundle): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path.join(bundle.path, SHIM_BINARY_FILE))).trim() ||
      undefined;
  } catch {
    return undefined;
  }
}

/** A ttrpc connection to a shim, with the namespace metadata every call needs. */
export class ShimClient {
  readonly #client: TtrpcClient;
  readonly #metadata: Record<string, string>;

  constructor(client: TtrpcClient, namespace: string) {
    this.#client = client;
    this.#metadata = { "containerd-namespace-ttrpc": namespace };
  }

  /** Resolves when the connection to the shim is gone (the shim exited or was killed). */
  get closed(): Promise<void> {
    return this.#client.closed;
  }

  /** Call one `Task.method.*`; typed errors carry the shim's message. */
  call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    input: MessageInitShape<I>,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MessageShape<O>> {
    return this.#client.call(method, input, { ...options, metadata: this.#metadata });
  }

  /** Drop the connection. */
  close(): void {
    this.#client.close();
  }
}
