/**
 * `runContainer`: `ctr run --rm` through the typed client — a command in a fresh container of
 * an image already unpacked in the namespace, its output captured in a file, its exit status
 * returned, and everything it made (task, snapshot, container) removed afterwards, also on
 * failure or abort. {@link imageChainIDs} finds the snapshots an image was unpacked into.
 *
 * @example
 * ```ts
 * import { connect, runContainer } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const { exitStatus, output } = await runContainer(client, {
 *   id: "hello",
 *   image: "docker.io/library/testbox:latest",
 *   args: ["/bin/sh", "-c", "echo hello; exit 3"],
 * });
 * console.log(exitStatus, output); // 3 "hello\n"
 * ```
 * @module
 */
import type { Client } from "./client.ts";
import { defaultSpec, type OciSpec } from "./containers.ts";
import { CanceledError, isNotFound, NotFoundError } from "./errors.ts";
import { chainIDs } from "./import.ts";
import { defaultMatcher, type Platform, type PlatformMatcher } from "./platforms.ts";
import { DEFAULT_SNAPSHOTTER } from "./snapshots.ts";
import { fileURI } from "./tasks.ts";

const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

/** Options of {@link imageChainIDs}. */
export interface ImageChainOptions {
  /** Which manifest of an index to take; default the host's (`platforms.Default()`). */
  platform?: PlatformMatcher;
}

async function readJSON(client: Client, digest: string): Promise<Record<string, unknown>> {
  const parsed: unknown = await new Response(client.content.read(digest)).json();
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new NotFoundError(`blob ${digest}: not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * The chain IDs of an image's layers, bottom first: the names of the snapshots its layers
 * were unpacked into; the last is the parent of a container's snapshot. Reads the image
 * record, the manifest (of an index: the best one for the platform) and the config's
 * `rootfs.diff_ids`. NotFoundError for an unknown image or one without a matching manifest.
 *
 * @example
 * ```ts
 * import { connect, imageChainIDs } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const top = (await imageChainIDs(client, "docker.io/library/testbox:latest")).at(-1);
 * const mounts = await client.snapshots.prepare("c1", top);
 * ```
 */
export async function imageChainIDs(
  client: Client,
  name: string,
  options: ImageChainOptions = {},
): Promise<string[]> {
  const { target } = await client.images.get(name);
  let manifest = await readJSON(client, target.digest);
  if (INDEX_TYPES.has(target.mediaType) || Array.isArray(manifest.manifests)) {
    const matcher = options.platform ?? defaultMatcher();
    const entries = (manifest.manifests ?? []) as { digest: string; platform?: Platform }[];
    const chosen = entries.filter((m) => !m.platform || matcher.match(m.platform))
      .sort((a, b) => {
        if (!a.platform || !b.platform) return 0;
        if (matcher.less(a.platform, b.platform)) return -1;
        return matcher.less(b.platform, a.platform) ? 1 : 0;
      })[0];
    if (!chosen) throw new NotFoundError(`image ${name}: no manifest for this platform`);
    manifest = await readJSON(client, chosen.digest);
  }
  const config = manifest.config as { digest?: string } | undefined;
  if (typeof config?.digest !== "string") {
    throw new NotFoundError(`image ${name}: manifest has no config`);
  }
  const rootfs = (await readJSON(client, config.digest)).rootfs as
    | { diff_ids?: string[] }
    | undefined;
  const ids = chainIDs(rootfs?.diff_ids ?? []);
  if (ids.length === 0) throw new NotFoundError(`image ${name}: no layers`);
  return ids;
}

/** Options of {@link runContainer}. */
export interface RunContainerOptions {
  /** Container, task and snapshot id; must be free in the namespace. */
  id: string;
  /** An image of the namespace, unpacked on `snapshotter`. */
  image: string;
  /** The command and its arguments. */
  args: string[];
  /** Extra `KEY=value` environment entries. */
  env?: string[];
  /** Working directory; default "/". */
  cwd?: string;
  /** Default {@link DEFAULT_SNAPSHOTTER}. */
  snapshotter?: string;
  /**
   * Where the shim appends stdout and stderr; the file is kept. Default: a temporary file,
   * read into `output` and removed.
   */
  stdoutPath?: string;
  /** Change the default spec before it is stored (add mounts, env, a hostname, ...). */
  spec?: (spec: OciSpec) => OciSpec;
  /** Default `io.containerd.runc.v2`. */
  runtime?: string;
  /**
   * Abort the run: the task is killed (SIGKILL), everything is removed and the call rejects
   * with CanceledError.
   */
  signal?: AbortSignal;
}

/** What {@link runContainer} answers. */
export interface RunResult {
  exitStatus: number;
  exitedAt: Date;
  /** What the command wrote to stdout and stderr. */
  output: string;
}

/**
 * Run `args` in a new container of `image` and wait for it, as `ctr run --rm`: a snapshot
 * `id` on the image's top layer, a container with containerd's default spec, a task with
 * stdout and stderr appended to a file; then task, snapshot and container are removed —
 * whatever happened. Errors are the daemon's (NotFoundError for the image,
 * AlreadyExistsError for a taken id, `OCI runtime create failed` for a bad command).
 *
 * @example
 * ```ts
 * import { connect, runContainer } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const run = await runContainer(client, {
 *   id: "job-1",
 *   image: "docker.io/library/testbox:latest",
 *   args: ["/bin/sh", "-c", "uname -a"],
 *   signal: AbortSignal.timeout(60_000),
 * });
 * if (run.exitStatus !== 0) throw new Error(run.output);
 * ```
 */
export async function runContainer(
  client: Client,
  options: RunContainerOptions,
): Promise<RunResult> {
  const { id } = options;
  const snapshotter = options.snapshotter ?? DEFAULT_SNAPSHOTTER;
  options.signal?.throwIfAborted();
  const logPath = options.stdoutPath ??
    await Deno.makeTempFile({ prefix: `run-${id}-`, suffix: ".log" });
  const made = { snapshot: false, container: false, task: false };
  let failure: { error: unknown } | undefined;
  try {
    const top = (await imageChainIDs(client, options.image)).at(-1) as string;
    let rootfs;
    {
      // Under a lease until the container references the snapshot, so the garbage
      // collector cannot take the fresh active snapshot in between.
      await using lease = await client.leases.create();
      const leased = client.withLease(lease);
      rootfs = await leased.snapshots.prepare(id, top, { snapshotter });
      made.snapshot = true;
      const base = defaultSpec({
        namespace: client.namespace,
        id,
        args: options.args,
        ...(options.env ? { env: options.env } : {}),
        ...(options.cwd ? { cwd: options.cwd } : {}),
      });
      await leased.containers.create({
        id,
        image: options.image,
        spec: options.spec ? options.spec(base) : base,
        ...(options.runtime ? { runtime: options.runtime } : {}),
        snapshotter,
        snapshotKey: id,
      });
      made.container = true;
    }
    options.signal?.throwIfAborted();
    await client.tasks.create({ containerId: id, rootfs, stdout: fileURI(logPath) });
    made.task = true;
    const exited = client.tasks.wait(id, options.signal ? { signal: options.signal } : {});
    exited.catch(() => {}); // awaited below; start may fail first
    await client.tasks.start(id);
    const { exitStatus, exitedAt } = await exited;
    const output = await Deno.readTextFile(logPath);
    return { exitStatus, exitedAt, output };
  } catch (err) {
    failure = {
      error: options.signal?.aborted && !(err instanceof CanceledError)
        ? new CanceledError(`run of container ${id}: aborted`, { cause: err })
        : err,
    };
    throw failure.error;
  } finally {
    // Undo newest first; the snapshot before the record that references it. A cleanup
    // failure is thrown only when the run itself succeeded.
    const cleanupError = await cleanup(client, id, snapshotter, made);
    if (options.stdoutPath === undefined) await Deno.remove(logPath).catch(() => {});
    // deno-lint-ignore no-unsafe-finally
    if (cleanupError !== undefined && failure === undefined) throw cleanupError;
  }
}

async function cleanup(
  client: Client,
  id: string,
  snapshotter: string,
  made: { snapshot: boolean; container: boolean; task: boolean },
): Promise<unknown> {
  let first: unknown;
  const step = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      if (!isNotFound(err)) first ??= err;
    }
  };
  if (made.task) {
    await step(() => client.tasks.kill(id, "SIGKILL", { all: true })); // NotFound: exited
    await step(async () => {
      await client.tasks.wait(id, { timeoutMs: 10_000 });
      await client.tasks.delete(id);
    });
  }
  if (made.snapshot) await step(() => client.snapshots.remove(id, { snapshotter }));
  if (made.container) await step(() => client.containers.delete(id));
  return first;
}
