/**
 * Run a command in a container of an image imported earlier (say with import-image.ts),
 * step by step through the typed client — what `ctr run --rm IMAGE ID ARGS...` does:
 *
 * 1. find the chain ID of the image's top layer — the name of the snapshot it was unpacked
 *    into (`imageChainIDs`: image record → manifest for this platform → config's diff IDs);
 * 2. under a lease, prepare an active snapshot `<id>` on it (`client.snapshots.prepare`),
 *    build containerd's default Linux spec with the arguments (`defaultSpec`) and create the
 *    container record, which then keeps the snapshot from the garbage collector;
 * 3. create the task with rootfs = the snapshot's mounts and stdout = `file://<log>` (the
 *    runc shim appends stdout and stderr there);
 * 4. wait (before start, so the exit cannot be missed), start, and print the exit status
 *    and the captured output;
 * 5. delete the task, the snapshot and the container (also on failure or Ctrl-C).
 *
 * ```sh
 * deno run -A examples/run-container.ts --address /run/containerd-ts/containerd-ts.sock \
 *   docker.io/library/testbox:latest -- /bin/sh -c 'echo hello; exit 3'
 * ```
 * Options: `-n NS`, `--snapshotter SN` (default overlayfs; the image must be unpacked there),
 * `--id ID` (default run-<random>), `--log PATH` (kept; default a temp file, removed).
 * Output: `exit status <n>` then `output:` and the captured text. Exit status 1 on error.
 * Needs root (runc). `runContainer` from client/run.ts does all this in one call.
 * @module
 */
import { parseArgs } from "node:util";
import { connect, defaultSpec, fileURI, imageChainIDs, isNotFound } from "../client/mod.ts";

const { values, positionals } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    namespace: { type: "string", short: "n", default: "default" },
    snapshotter: { type: "string", default: "overlayfs" },
    id: { type: "string" },
    log: { type: "string" },
  },
  allowPositionals: true,
});

const [image, ...args] = positionals;
if (!image || args.length === 0) {
  console.error(
    "usage: run-container.ts [--address SOCK] [-n NS] [--snapshotter SN] [--id ID] " +
      "[--log PATH] IMAGE -- COMMAND [ARG...]",
  );
  Deno.exit(2);
}

const id = values.id ?? `run-${crypto.randomUUID().slice(0, 8)}`;
const snapshotter = values.snapshotter;
const logPath = values.log ?? await Deno.makeTempFile({ prefix: `${id}-`, suffix: ".log" });
const client = connect({ address: values.address, namespace: values.namespace });
const interrupted = new AbortController();
const onSignal = () => interrupted.abort();
Deno.addSignalListener("SIGINT", onSignal);
let made: { snapshot?: true; container?: true; task?: true } = {};
let failed = false;

/** Undo what was made, newest first; the snapshot goes before the record referencing it. */
async function cleanup(): Promise<void> {
  const steps: [string, () => Promise<unknown>][] = [];
  if (made.task) {
    steps.push(["task", async () => {
      try {
        await client.tasks.kill(id, "SIGKILL", { all: true });
      } catch (err) {
        if (!isNotFound(err)) throw err; // already exited
      }
      await client.tasks.wait(id, { timeoutMs: 10_000 });
      await client.tasks.delete(id);
    }]);
  }
  if (made.snapshot) steps.push(["snapshot", () => client.snapshots.remove(id, { snapshotter })]);
  if (made.container) steps.push(["container", () => client.containers.delete(id)]);
  for (const [what, step] of steps) {
    await step().catch((err) => {
      console.error(`run-container: remove ${what}: ${err instanceof Error ? err.message : err}`);
      failed = true;
    });
  }
  made = {};
}

try {
  // the image's layers were unpacked into snapshots named by their chain IDs (its
  // manifest for this platform → config → rootfs.diff_ids); the top one is the parent
  const parent = (await imageChainIDs(client, image)).at(-1) as string;
  let rootfs;
  {
    // Under a lease until the container record references the snapshot (as ctr does): an
    // active snapshot nothing references is the garbage collector's to take.
    await using lease = await client.leases.create();
    const leased = client.withLease(lease);
    rootfs = await leased.snapshots.prepare(id, parent, { snapshotter });
    made.snapshot = true;
    await leased.containers.create({
      id,
      image,
      spec: defaultSpec({ namespace: values.namespace, id, args }),
      snapshotter,
      snapshotKey: id,
    });
    made.container = true;
  }

  // stdout (and with it stderr) appended to the log file by the shim
  await client.tasks.create({ containerId: id, rootfs, stdout: fileURI(logPath) });
  made.task = true;

  const exited = client.tasks.wait(id, { signal: interrupted.signal });
  exited.catch(() => {}); // awaited below; start may fail first
  await client.tasks.start(id);
  const { exitStatus } = await exited;
  console.log(`exit status ${exitStatus}`);
  console.log("output:");
  await Deno.stdout.write(await Deno.readFile(logPath));
} catch (err) {
  console.error(`run-container: ${err instanceof Error ? err.message : err}`);
  failed = true;
} finally {
  await cleanup();
  if (values.log === undefined) await Deno.remove(logPath).catch(() => {});
  Deno.removeSignalListener("SIGINT", onSignal);
  await client.close();
}
if (failed) Deno.exit(1);
