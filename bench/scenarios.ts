/**
 * The bench's data-path scenarios, run against one long-lived daemon of each kind (both
 * running side by side on their own temp roots, repeats alternating which goes first):
 *
 * - content: `ctr content ingest --expected-size --expected-digest` of pre-generated random
 *   blobs (stdin redirected from a file on the same disk), MB/s, beside this machine's limits
 *   measured in the same run — sequential write of the same size with fdatasync (`dd
 *   conv=fdatasync`) and sha256 over the file (node:crypto) — and ingest as % of the lower
 *   limit; each repeat is a real ingest (`ctr content rm` between). Then `ctr content get` of
 *   the first size to /dev/null.
 * - images: `ctr images import` (unpacking) of a make-test-image image with `--snapshotter
 *   native` and `overlayfs`, seconds; `ctr images rm --sync` and a wait until content and
 *   snapshots are gone between repeats.
 * - containers: `ctr run --rm <img> <id> /bin/true`, only where `ctr plugins ls` lists
 *   io.containerd.grpc.v1 tasks as ok.
 * - scale: namespaces List and images List latency with the small and large object counts
 *   (created with the project's TS client, client/mod.ts: namespaces, then image records with
 *   two labels and a manifest target in one namespace), growth factor large/small.
 * - memory: daemon RSS idle, and {@link SETTLE_MS} after each load scenario and after the large
 *   object counts (RSS at rest, the same wait for both daemons).
 *
 * @example
 * ```ts
 * import { runScenarios, FULL_SIZES } from "./scenarios.ts";
 * const rows = await runScenarios({ ...FULL_SIZES, scenarios: new Set(["content"]) }, new Map());
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { connect } from "../client/mod.ts";
import { ctr, pluginOk, waitUntil } from "./ctr.ts";
import { type DaemonKind, REPO, type RunningDaemon, startDaemon } from "./daemon.ts";
import {
  type Cell,
  cellMedian,
  log,
  median,
  messageOf,
  rangeText,
  ratioText,
  type Row,
} from "./report.ts";

/** Scenarios of this module. */
export type DataScenario = "content" | "images" | "containers" | "scale" | "memory";

/** Every scenario of this module, in run order. */
export const DATA_SCENARIOS: readonly DataScenario[] = [
  "content",
  "images",
  "containers",
  "scale",
  "memory",
];

/** Sizes and counts of the data scenarios. */
export interface DataSizes {
  /** Blob sizes to ingest, MiB; `ctr content get` uses the first. */
  contentMiB: readonly number[];
  /** Size of the random file in the image's last layer, MiB. */
  imageMiB: number;
  /** Layers of the imported image. */
  imageLayers: number;
  /** Repeats of ingest, get, disk write, sha256 and import. */
  repeats: number;
  /** Object counts of the scale scenario: [small, large]. */
  scaleCounts: readonly [number, number];
  /** List calls measured at each count. */
  listCalls: number;
  /** `ctr run` runs. */
  runs: number;
}

/** The full run's sizes. */
export const FULL_SIZES: Readonly<DataSizes> = Object.freeze<DataSizes>({
  contentMiB: [256, 1024],
  imageMiB: 256,
  imageLayers: 4,
  repeats: 3,
  scaleCounts: [1000, 10_000],
  listCalls: 10,
  runs: 10,
});

/** `--quick`: a smoke run of every scenario in a minute or two. */
export const QUICK_SIZES: Readonly<DataSizes> = Object.freeze<DataSizes>({
  contentMiB: [16, 64],
  imageMiB: 16,
  imageLayers: 4,
  repeats: 3,
  scaleCounts: [100, 1000],
  listCalls: 10,
  runs: 5,
});

/** Options of {@link runScenarios}. */
export interface DataOptions extends DataSizes {
  /** Which scenarios to run. */
  scenarios: ReadonlySet<string>;
}

const DAEMONS: readonly DaemonKind[] = ["containerd", "containerd-ts"];
const MiB = 1 << 20;
const IMAGES_NS = "bench-images";
const RUN_NS = "bench-run";

/** The running daemons of one session and why the others are missing. */
interface Session {
  readonly daemons: Map<DaemonKind, RunningDaemon>;
  readonly down: Map<DaemonKind, string>;
  readonly work: string;
  /** RSS checkpoints per daemon, in order: label → KiB. */
  readonly rss: Map<DaemonKind, Map<string, number>>;
}

/** Order of the daemons in repeat `i`: alternating which goes first. */
function orderOf(i: number): readonly DaemonKind[] {
  return i % 2 === 0 ? DAEMONS : [...DAEMONS].reverse();
}

/**
 * Run `measure` `repeats` times on every daemon of the session, alternating the order; the
 * first failure of a daemon ends its series with that reason.
 */
async function alternate(
  session: Session,
  repeats: number,
  what: string,
  measure: (kind: DaemonKind, daemon: RunningDaemon, i: number) => Promise<number>,
): Promise<Map<DaemonKind, Cell>> {
  const values = new Map<DaemonKind, number[]>(DAEMONS.map((d) => [d, []]));
  const failed = new Map<DaemonKind, string>(session.down);
  for (let i = 0; i < repeats; i++) {
    for (const kind of orderOf(i)) {
      const daemon = session.daemons.get(kind);
      if (failed.has(kind) || !daemon) continue;
      try {
        const v = await measure(kind, daemon, i);
        values.get(kind)!.push(v);
        log(`${what} ${i + 1}/${repeats} ${kind}: ${v.toFixed(2)}`);
      } catch (err) {
        failed.set(kind, messageOf(err));
        log(`${what} ${kind}: ${messageOf(err)}`);
      }
    }
  }
  return new Map(DAEMONS.map((d) => {
    const v = values.get(d)!;
    const cell: Cell = failed.has(d)
      ? { ok: false, reason: failed.get(d)! }
      : v.length > 0
      ? { ok: true, values: v }
      : { ok: false, reason: "no samples" };
    return [d, cell];
  }));
}

/** A row comparing the two daemons' cells of one series. */
function pairRow(
  scenario: string,
  cells: Map<DaemonKind, Cell>,
  unit: string,
  digits: number,
  reference = "—",
  extra: (cell: Cell | undefined) => string = () => "",
): Row {
  const text = (d: DaemonKind) => {
    const cell = cells.get(d);
    return rangeText(cell, unit, digits) + (cell?.ok ? extra(cell) : "");
  };
  return {
    scenario,
    containerd: text("containerd"),
    ours: text("containerd-ts"),
    ratio: ratioText(cellMedian(cells.get("containerd-ts")), cellMedian(cells.get("containerd"))),
    reference,
    handler: "—",
  };
}

/** A row with the same reason on both sides. */
function naRow(scenario: string, reason: string): Row {
  return {
    scenario,
    containerd: `n/a: ${reason}`,
    ours: `n/a: ${reason}`,
    ratio: "—",
    reference: "—",
    handler: "—",
  };
}

/** Run a helper program; rejects with its last stderr line. */
async function run(cmd: string, args: string[], timeoutMs = 600_000): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  if (!out.success) {
    const last = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    throw new Error(`${cmd}: ${last || `exit ${out.code}`}`);
  }
  return performance.now() - started;
}

/** MB/s (10^6 bytes per second) of `bytes` in `ms`. */
function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** sha256 of a file with node:crypto: hex digest and wall time. */
async function sha256File(path: string): Promise<{ hex: string; ms: number }> {
  const started = performance.now();
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buf = new Uint8Array(MiB);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return { hex: hash.digest("hex"), ms: performance.now() - started };
}

/**
 * `ctr content rm`, tolerating a blob already gone, then wait until the daemon's garbage
 * collector removed the file (`<root>/io.containerd.content.v1.content/blobs/sha256/<hex>`,
 * the root being beside the socket for both daemons): until then a new ingest of the same
 * digest would find the blob and not be a real ingest.
 */
async function contentRm(socket: string, digest: string): Promise<void> {
  try {
    await ctr(socket, ["content", "rm", digest], { timeoutMs: 60_000 });
  } catch (err) {
    if (!/not found/i.test(messageOf(err))) throw err;
  }
  const blob = `${
    socket.slice(0, socket.lastIndexOf("/"))
  }/root/io.containerd.content.v1.content/blobs/sha256/${digest.slice("sha256:".length)}`;
  const gone = await waitUntil(async () => {
    try {
      await Deno.lstat(blob);
      return false;
    } catch {
      return true;
    }
  }, 60_000);
  if (!gone) throw new Error("blob file still on disk 60 s after ctr content rm");
}

/** Series of a machine limit (no daemon involved). */
async function series(repeats: number, what: string, f: () => Promise<number>): Promise<Cell> {
  const values: number[] = [];
  try {
    for (let i = 0; i < repeats; i++) {
      values.push(await f());
      log(`${what} ${i + 1}/${repeats}: ${values.at(-1)!.toFixed(2)}`);
    }
    return { ok: true, values };
  } catch (err) {
    return { ok: false, reason: messageOf(err) };
  }
}

// ----------------------------------------------------------------------------------------------
// content

async function contentScenario(session: Session, options: DataOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [index, sizeMiB] of options.contentMiB.entries()) {
    const bytes = sizeMiB * MiB;
    const src = `${session.work}/blob-${sizeMiB}`;
    const dst = `${session.work}/dd-out`;
    const label = sizeMiB >= 1024 ? `${sizeMiB / 1024} GiB` : `${sizeMiB} MiB`;
    try {
      await run("dd", [
        "if=/dev/urandom",
        `of=${src}`,
        "bs=1M",
        `count=${sizeMiB}`,
        "iflag=fullblock",
        "status=none",
      ]);
      const digest = `sha256:${(await sha256File(src)).hex}`;
      const disk = await series(options.repeats, `disk write ${label} MB/s`, async () => {
        await Deno.remove(dst).catch(() => {});
        const ms = await run("dd", [
          `if=${src}`,
          `of=${dst}`,
          "bs=1M",
          "conv=fdatasync",
          "status=none",
        ]);
        await Deno.remove(dst);
        return mbps(bytes, ms);
      });
      const sha = await series(
        options.repeats,
        `sha256 ${label} MB/s`,
        async () => mbps(bytes, (await sha256File(src)).ms),
      );
      const ingest = await alternate(
        session,
        options.repeats,
        `ingest ${label} MB/s`,
        async (_kind, daemon, i) => {
          const { ms } = await ctr(daemon.socket, [
            "content",
            "ingest",
            "--expected-size",
            String(bytes),
            "--expected-digest",
            digest,
            `bench-ingest-${sizeMiB}-${i}`,
          ], { stdinFile: src, timeoutMs: 600_000 });
          await contentRm(daemon.socket, digest);
          return mbps(bytes, ms);
        },
      );
      const medians = [cellMedian(disk), cellMedian(sha)].filter((x) => x !== undefined);
      const limit = medians.length === 2 ? Math.min(...medians) : undefined;
      const pct = (cell: Cell | undefined) => {
        const m = cellMedian(cell);
        return limit && m !== undefined
          ? ` (median ${(100 * m / limit).toFixed(0)}% of limit)`
          : "";
      };
      rows.push(
        pairRow(
          `content ingest ${label} via ctr, stdin from file, rm + GC between (min / median / max, ${options.repeats} repeats)`,
          ingest,
          "MB/s",
          0,
          `disk write + fdatasync (dd) ${rangeText(disk, "MB/s", 0)}; sha256 (node:crypto) ${
            rangeText(sha, "MB/s", 0)
          }; limit = lower median${limit ? ` = ${limit.toFixed(0)} MB/s` : ": n/a"}`,
          pct,
        ),
      );
      if (index === 0) {
        const get = await alternate(
          session,
          options.repeats,
          `get ${label} MB/s`,
          async (_kind, daemon) => {
            // Written with a gc.root label through the TS client: a blob ingested by ctr is
            // collectable as soon as ctr's lease ends, before `content get` could read it.
            await using client = connect({ address: daemon.socket, timeoutMs: 600_000 });
            await client.content.writeFile(`bench-get-${sizeMiB}`, src, {
              expected: digest,
              labels: { "containerd.io/gc.root": "bench" },
            });
            try {
              const { ms } = await ctr(daemon.socket, ["content", "get", digest], {
                discardStdout: true,
                timeoutMs: 600_000,
              });
              return mbps(bytes, ms);
            } finally {
              await contentRm(daemon.socket, digest);
            }
          },
        );
        rows.push(
          pairRow(
            `content get ${label} via ctr to /dev/null (blob written by the TS client with a gc.root label; min / median / max, ${options.repeats} repeats)`,
            get,
            "MB/s",
            0,
          ),
        );
      }
    } catch (err) {
      rows.push(naRow(`content ${label}`, `setup failed: ${messageOf(err)}`));
    } finally {
      await Deno.remove(src).catch(() => {});
      await Deno.remove(dst).catch(() => {});
    }
  }
  return rows;
}

// ----------------------------------------------------------------------------------------------
// images and containers

/** make-test-image beside the repository (as CI lays it out) or under /work/shared. */
async function makeTestImageTool(): Promise<string | undefined> {
  for (
    const path of [`${REPO}/../shared/tools/make-test-image`, "/work/shared/tools/make-test-image"]
  ) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch { /* next */ }
  }
  return undefined;
}

/** Lines of `ctr` output beyond the header. */
function bodyLines(stdout: string, header: boolean): number {
  const lines = stdout.split("\n").filter((l) => l.trim() !== "");
  return header ? Math.max(0, lines.length - 1) : lines.length;
}

async function imagesScenario(session: Session, options: DataOptions): Promise<Row[]> {
  const what = `${options.imageLayers} layers + ${options.imageMiB} MiB random`;
  const tool = await makeTestImageTool();
  const snapshotters = ["native", "overlayfs"];
  if (!tool) {
    return snapshotters.map((s) => naRow(`images import ${s}`, "make-test-image not found"));
  }
  const tar = `${session.work}/image.tar`;
  const ref = "docker.io/library/benchbox:latest";
  try {
    await run(tool, [
      "--layers",
      String(options.imageLayers),
      "--size-mb",
      String(options.imageMiB),
      "--name",
      ref,
      tar,
    ]);
  } catch (err) {
    return snapshotters.map((s) =>
      naRow(`images import ${s}`, `make-test-image: ${messageOf(err)}`)
    );
  }
  const tarMB = (await Deno.stat(tar)).size / 1e6;
  const rows: Row[] = [];
  try {
    for (const snapshotter of snapshotters) {
      const cells = await alternate(
        session,
        options.repeats,
        `import ${snapshotter} s`,
        async (_kind, daemon) => {
          const ns = ["-n", IMAGES_NS];
          const { ms } = await ctr(daemon.socket, [
            ...ns,
            "images",
            "import",
            "--snapshotter",
            snapshotter,
            tar,
          ], { timeoutMs: 600_000 });
          await ctr(daemon.socket, [...ns, "images", "rm", "--sync", ref], { timeoutMs: 120_000 });
          const clean = await waitUntil(async () => {
            const content = await ctr(daemon.socket, [...ns, "content", "ls", "-q"]);
            const snaps = await ctr(daemon.socket, [
              ...ns,
              "snapshots",
              "--snapshotter",
              snapshotter,
              "ls",
            ]);
            return bodyLines(content.stdout, false) === 0 && bodyLines(snaps.stdout, true) === 0;
          }, 60_000);
          if (!clean) throw new Error("content or snapshots left 60 s after images rm --sync");
          return ms / 1000;
        },
      );
      rows.push(
        pairRow(
          `images import + unpack, --snapshotter ${snapshotter}, ${what} (${
            tarMB.toFixed(0)
          } MB tar; min / median / max, ${options.repeats} repeats)`,
          cells,
          "s",
          2,
        ),
      );
    }
  } finally {
    await Deno.remove(tar).catch(() => {});
  }
  return rows;
}

async function containersScenario(session: Session, options: DataOptions): Promise<Row[]> {
  const tool = await makeTestImageTool();
  const scenario = `ctr run --rm <img> <id> /bin/true (min / median / max, ${options.runs} runs)`;
  if (!tool) return [naRow(scenario, "make-test-image not found")];
  const tar = `${session.work}/run.tar`;
  const ref = "docker.io/library/benchrun:latest";
  const down = new Map(session.down);
  try {
    await run(tool, ["--name", ref, tar]);
    for (const [kind, daemon] of session.daemons) {
      try {
        if (!(await pluginOk(daemon.socket, "io.containerd.grpc.v1", "tasks"))) {
          down.set(kind, "tasks service not available");
          continue;
        }
        await ctr(daemon.socket, ["-n", RUN_NS, "images", "import", tar], { timeoutMs: 120_000 });
      } catch (err) {
        down.set(kind, messageOf(err));
      }
    }
  } catch (err) {
    return [naRow(scenario, `make-test-image: ${messageOf(err)}`)];
  } finally {
    await Deno.remove(tar).catch(() => {});
  }
  const cells = await alternate(
    { ...session, down },
    options.runs,
    "ctr run ms",
    async (kind, daemon, i) => {
      const { ms } = await ctr(daemon.socket, [
        "-n",
        RUN_NS,
        "run",
        "--rm",
        ref,
        `bench-${kind}-${i}`,
        "/bin/true",
      ], { timeoutMs: 60_000 });
      return ms;
    },
  );
  return [pairRow(scenario, cells, "ms", 0)];
}

// ----------------------------------------------------------------------------------------------
// scale and memory

/** Namespace holding the scale scenario's images. */
const SCALE_IMAGES_NS = "bench-scale-images";

/**
 * A List target of the scale scenario: how to create objects `from`..`to - 1` (32 calls in
 * flight) and how to list them all, through the project's TS client (client/mod.ts), the same
 * for both daemons.
 */
interface ScaleKind {
  /** Plural noun for rows and logs ("namespaces", "images"). */
  readonly noun: string;
  /** Scenario text of the List rows. */
  readonly list: string;
  create(client: Client, n: number): Promise<unknown>;
  /** One List call; resolves to the number of objects returned. */
  count(client: Client): Promise<number>;
}

type Client = ReturnType<typeof connect>;

/** `bench-ns-<n>`: 1k/10k namespaces, listed by namespaces List. */
const NAMESPACES_SCALE: ScaleKind = {
  noun: "namespaces",
  list: "namespaces List",
  create: (client, n) => client.namespaces.create(`bench-ns-${String(n).padStart(6, "0")}`),
  count: async (client) => (await client.namespaces.list()).length,
};

/**
 * `bench.example/scale/img-<n>:latest` in namespace {@link SCALE_IMAGES_NS}, each with two
 * labels and a manifest target (content need not exist for an image record, on either
 * daemon), listed by images List — what `ctr images ls` and every image-aware client call.
 */
const IMAGES_SCALE: ScaleKind = {
  noun: "images",
  list: "images List",
  create: (client, n) => {
    const id = String(n).padStart(6, "0");
    return client.withNamespace(SCALE_IMAGES_NS).images.create({
      name: `bench.example/scale/img-${id}:latest`,
      labels: { "bench.example/index": id, "containerd.io/gc.root": "bench" },
      target: {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${createHash("sha256").update(`manifest ${id}`).digest("hex")}`,
        size: 1234 + n,
      },
    });
  },
  count: async (client) => (await client.withNamespace(SCALE_IMAGES_NS).images.list()).length,
};

/** Create objects `from` .. `to - 1` of `kind` with 32 calls in flight. */
async function createObjects(
  socket: string,
  kind: ScaleKind,
  from: number,
  to: number,
): Promise<void> {
  await using client = connect({ address: socket, timeoutMs: 60_000 });
  let next = from;
  const worker = async () => {
    while (next < to) await kind.create(client, next++);
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

/** Latencies (ms) of `calls` List calls after one unmeasured call. */
async function listLatencies(
  socket: string,
  kind: ScaleKind,
  calls: number,
  expect: number,
): Promise<number[]> {
  await using client = connect({ address: socket, timeoutMs: 60_000 });
  const first = await kind.count(client);
  if (first < expect) throw new Error(`${kind.list} returned ${first} < ${expect}`);
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await kind.count(client);
    out.push(performance.now() - t0);
  }
  return out;
}

/** The object count as the rows print it (1k, 10k, 100). */
function countText(n: number): string {
  return n >= 1000 ? `${n / 1000}k` : String(n);
}

/**
 * List latency of `kind` at the small and the large count on every daemon (creating the
 * difference in between), and the growth factor large / small (linear ≈ large / small).
 */
async function scaleScenario(
  session: Session,
  options: DataOptions,
  kind: ScaleKind,
): Promise<Row[]> {
  const [small, large] = options.scaleCounts;
  const cells = new Map<number, Map<DaemonKind, Cell>>();
  const created = new Map<DaemonKind, number>(DAEMONS.map((d) => [d, 0]));
  const failed = new Map(session.down);
  for (const [phase, target] of [small, large].entries()) {
    const phaseCells = new Map<DaemonKind, Cell>();
    for (const daemonKind of orderOf(phase)) {
      const daemon = session.daemons.get(daemonKind);
      if (failed.has(daemonKind) || !daemon) continue;
      try {
        const t0 = performance.now();
        await createObjects(daemon.socket, kind, created.get(daemonKind)!, target);
        created.set(daemonKind, target);
        log(
          `scale ${daemonKind}: ${countText(target)} ${kind.noun} created (${
            ((performance.now() - t0) / 1000).toFixed(1)
          } s)`,
        );
        const values = await listLatencies(daemon.socket, kind, options.listCalls, target);
        phaseCells.set(daemonKind, { ok: true, values });
        log(
          `scale ${daemonKind}: ${kind.list} at ${countText(target)}: median ${
            median(values).toFixed(2)
          } ms`,
        );
      } catch (err) {
        failed.set(daemonKind, messageOf(err));
        log(`scale ${daemonKind}: ${kind.noun}: ${messageOf(err)}`);
      }
    }
    for (const d of DAEMONS) {
      if (!phaseCells.has(d)) phaseCells.set(d, { ok: false, reason: failed.get(d)! });
    }
    cells.set(target, phaseCells);
  }
  const rows: Row[] = [];
  for (const target of [small, large]) {
    rows.push(
      pairRow(
        `${kind.list} with ${
          countText(target)
        } ${kind.noun}, TS client (min / median / max, ${options.listCalls} calls)`,
        cells.get(target)!,
        "ms",
        2,
      ),
    );
  }
  const growth = (d: DaemonKind) => {
    const a = cellMedian(cells.get(small)!.get(d));
    const b = cellMedian(cells.get(large)!.get(d));
    return a !== undefined && b !== undefined && a > 0 ? b / a : undefined;
  };
  const growthText = (d: DaemonKind) => {
    const g = growth(d);
    if (g !== undefined) return `×${g.toFixed(1)}`;
    const cell = cells.get(large)!.get(d);
    return `n/a: ${cell && !cell.ok ? cell.reason : "no samples"}`;
  };
  const ours = growth("containerd-ts");
  const theirs = growth("containerd");
  rows.push({
    scenario: `${kind.list} growth ${countText(large)} / ${countText(small)} (medians; linear ≈ ${
      (large / small).toFixed(0)
    })`,
    containerd: growthText("containerd"),
    ours: growthText("containerd-ts"),
    ratio: ours !== undefined && theirs !== undefined ? `×${(ours / theirs).toFixed(2)}` : "—",
    reference: "—",
    handler: "—",
  });
  return rows;
}

/**
 * Quiet time before an RSS checkpoint after a load scenario, for both daemons alike: RSS at
 * rest, after each runtime had its chance to hand memory back (Go's scavenger; ours trims
 * 2 s after bulk data and 10 s after calls alone, server/heap_trim.ts).
 */
export const SETTLE_MS = 12_000;

/** Record every running daemon's RSS under `label`. */
async function checkpoint(session: Session, label: string): Promise<void> {
  if (label !== "idle") await new Promise((r) => setTimeout(r, SETTLE_MS));
  for (const [kind, daemon] of session.daemons) {
    const kib = await daemon.rssKiB();
    if (Number.isFinite(kib)) session.rss.get(kind)!.set(label, kib);
    log(`RSS ${label} ${kind}: ${(kib / 1024).toFixed(1)} MiB`);
  }
}

function memoryRows(session: Session): Row[] {
  const labels: string[] = [];
  for (const byLabel of session.rss.values()) {
    for (const label of byLabel.keys()) if (!labels.includes(label)) labels.push(label);
  }
  return labels.map((label) => {
    const text = (kind: DaemonKind) => {
      const down = session.down.get(kind);
      if (down) return `n/a: ${down}`;
      const kib = session.rss.get(kind)!.get(label);
      const idle = session.rss.get(kind)!.get("idle");
      if (kib === undefined) return "n/a: daemon gone";
      const growth = idle !== undefined && label !== "idle"
        ? ` (${kib >= idle ? "+" : ""}${((kib - idle) / 1024).toFixed(1)} MiB vs idle)`
        : "";
      return `${(kib / 1024).toFixed(1)} MiB${growth}`;
    };
    const mib = (kind: DaemonKind) => {
      const kib = session.rss.get(kind)?.get(label);
      return kib === undefined || session.down.has(kind) ? undefined : kib;
    };
    return {
      scenario: `RSS of the data-scenario daemon, ${label}`,
      containerd: text("containerd"),
      ours: text("containerd-ts"),
      ratio: ratioText(mib("containerd-ts"), mib("containerd")),
      reference: "—",
      handler: "—",
    };
  });
}

// ----------------------------------------------------------------------------------------------

/**
 * Start one daemon of each kind, run the selected data scenarios against both, stop them, and
 * return the rows. `reasons` says which daemons cannot run at all.
 */
export async function runScenarios(
  options: DataOptions,
  reasons: ReadonlyMap<DaemonKind, string>,
): Promise<Row[]> {
  const selected = (s: DataScenario) => options.scenarios.has(s);
  if (!DATA_SCENARIOS.some(selected)) return [];
  const session: Session = {
    daemons: new Map(),
    down: new Map(reasons),
    work: await Deno.makeTempDir({ prefix: "bench-data-" }),
    rss: new Map(DAEMONS.map((d) => [d, new Map()])),
  };
  const rows: Row[] = [];
  try {
    for (const kind of DAEMONS) {
      if (session.down.has(kind)) continue;
      try {
        session.daemons.set(kind, await startDaemon(kind));
      } catch (err) {
        session.down.set(kind, messageOf(err));
        log(`${kind}: ${messageOf(err)}`);
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    await checkpoint(session, "idle");
    if (selected("content")) {
      rows.push(...await contentScenario(session, options));
      await checkpoint(session, "after content");
    }
    if (selected("images")) {
      rows.push(...await imagesScenario(session, options));
      await checkpoint(session, "after images");
    }
    if (selected("containers")) {
      rows.push(...await containersScenario(session, options));
      await checkpoint(session, "after containers");
    }
    if (selected("scale") || selected("memory")) {
      const large = countText(options.scaleCounts[1]);
      for (const kind of [NAMESPACES_SCALE, IMAGES_SCALE]) {
        const scaleRows = await scaleScenario(session, options, kind);
        if (selected("scale")) rows.push(...scaleRows);
        await checkpoint(session, `after ${large} ${kind.noun} (scale)`);
      }
    }
    if (selected("memory")) rows.push(...memoryRows(session));
  } finally {
    for (const daemon of session.daemons.values()) await daemon.stop();
    await Deno.remove(session.work, { recursive: true }).catch(() => {});
  }
  return rows;
}
