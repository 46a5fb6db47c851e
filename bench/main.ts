/**
 * `deno task bench`: containerd-ts side by side with Debian's containerd 1.6.20.
 *
 * Scenarios (select with `--only a,b`; default all), each run against both daemons in the same
 * run, alternating which goes first:
 * - boot: process start → first successful Version RPC (min/median/max over `--boots`), and
 *   idle RSS: VmRSS of the daemon process 1 s after boot (the deno process for ours); beside
 *   them the same for bench/servers.ts's fixed-reply server and RPC handler, booted in the
 *   same rounds: what Deno and this project's stack cost before any plugin; and for Deno
 *   alone (bench/idle.js, start to its first line): what any Deno program costs;
 * - unary: Version and namespaces List requests/s with p50/p99 at each `--concurrency`, one
 *   raw node:http2 gRPC client (bench/client.ts) for every target, `--duration-ms` per point,
 *   `--repeat` rounds (median and range shown), each point after `--warmup-ms` of unmeasured
 *   load; beside them, the same client against the daemon's HTTP/2 server answering a fixed
 *   gRPC reply (the client's ceiling) and against server/rpc.ts's handler alone on that server
 *   (bench/servers.ts); and Version at concurrency 1 without warm-up after 12 s of quiet;
 * - content, images, containers, scale, memory: the data path through `ctr` and the TS client
 *   against one long-lived daemon of each kind (bench/scenarios.ts).
 *
 * `--quick` shrinks sizes and counts for a smoke run (explicit flags still win).
 *
 * Prints one markdown table and writes it to bench/results/<YYYY-MM-DD>-<short commit>.md.
 * A side that cannot run a scenario shows "n/a: <reason>".
 *
 * ```sh
 * deno task bench                               # full run
 * deno task bench --quick                       # smoke run of every scenario
 * deno task bench --only content,images         # just those
 * deno task bench --boots 3 --duration-ms 1000  # quick look at boot and unary
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULT_CALL_IDLE_MS } from "../server/heap_trim.ts";
import { type LoadResult, VERSION_PATH } from "./client.ts";
import { ctr } from "./ctr.ts";
import {
  type BootKind,
  type DaemonKind,
  type ReferenceKind,
  REPO,
  type RunningDaemon,
  startDaemon,
  unavailable,
} from "./daemon.ts";
import {
  type Cell,
  cellMedian,
  log,
  median,
  messageOf,
  rangeText,
  ratioText,
  renderTable,
  type Row,
} from "./report.ts";
import {
  DATA_SCENARIOS,
  type DataSizes,
  FULL_SIZES,
  QUICK_SIZES,
  runScenarios,
  SETTLE_MS,
} from "./scenarios.ts";

/** Scenarios of this module; the data scenarios are bench/scenarios.ts's. */
const OWN_SCENARIOS = ["boot", "unary"] as const;
/** Every scenario name `--only` accepts, in run order. */
const ALL_SCENARIOS: readonly string[] = [...OWN_SCENARIOS, ...DATA_SCENARIOS];

/** Parsed command line. */
interface BenchOptions {
  boots: number;
  durationMs: number;
  warmupMs: number;
  concurrencies: number[];
  /** Load points per target and concurrency; the table shows their median and range. */
  repeat: number;
  write: boolean;
  /** Selected scenarios. */
  scenarios: ReadonlySet<string>;
  /** `--quick`: smaller sizes everywhere. */
  quick: boolean;
  /** Sizes of the data scenarios. */
  sizes: DataSizes;
}

type LoadCell = { ok: true; results: LoadResult[] } | { ok: false; reason: string };

/**
 * Unmeasured load before each unary point. containerd-ts's JIT needs it: right after its start,
 * and after a heap trim (a full collection once it has been quiet for 10 s following a burst
 * of calls; it drops the request path's optimized code: server/heap_trim.ts), Version at c=1
 * ran ~20% slower in the first second. With 500 ms, whether a round measured that depended on
 * the rotation (3.19k–4.32k req/s in one run). With 2 s, each of Version's four targets idles
 * ≥ 12 s between its points, so containerd-ts has trimmed before each one; the 2 s leave ~9%
 * of the cost in the measured window (14 cycles from source: 3.77k against 4.13k req/s
 * without the collection). The first seconds after a quiet spell are their own row
 * ({@link measureAfterIdle}).
 */
const DEFAULT_WARMUP_MS = 2000;

/**
 * Quiet time before the after-idle point: 2 s longer than the quiet time after which
 * containerd-ts trims its heap following a burst of calls (server/heap_trim.ts).
 */
const AFTER_IDLE_QUIET_MS = DEFAULT_CALL_IDLE_MS + 2000;

const DAEMONS: readonly DaemonKind[] = ["containerd", "containerd-ts"];
/** The reference servers booted beside the daemons (bench/daemon.ts ReferenceKind). */
const REFERENCES: readonly ReferenceKind[] = ["fixed", "handler", "runtime"];

function parseOptions(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args: args.filter((a) => a !== "--"),
    options: {
      boots: { type: "string" },
      "duration-ms": { type: "string" },
      repeat: { type: "string", default: "3" },
      "warmup-ms": { type: "string", default: String(DEFAULT_WARMUP_MS) },
      concurrency: { type: "string", default: "1,16,64" },
      "no-write": { type: "boolean", default: false },
      only: { type: "string" },
      quick: { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const concurrencies = values.concurrency.split(",").map(Number);
  if (concurrencies.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new Error(`bad --concurrency ${values.concurrency}`);
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknown = only?.filter((s) => !ALL_SCENARIOS.includes(s)) ?? [];
  if (unknown.length > 0) {
    throw new Error(`unknown scenario ${unknown.join(", ")}; known: ${ALL_SCENARIOS.join(", ")}`);
  }
  return {
    boots: Number(values.boots ?? (quick ? "3" : "10")),
    durationMs: Number(values["duration-ms"] ?? (quick ? "1000" : "2000")),
    warmupMs: Number(values["warmup-ms"]),
    concurrencies,
    repeat: Math.max(1, Number(values.repeat)),
    write: !values["no-write"],
    scenarios: new Set(only ?? ALL_SCENARIOS),
    quick,
    sizes: quick ? QUICK_SIZES : FULL_SIZES,
  };
}

/** What bin/containerd-ts runs in this tree (its order: binary, bundle, source). */
async function launchedForm(): Promise<"binary" | "bundle" | "source"> {
  const exists = (path: string) => Deno.stat(`${REPO}/${path}`).then(() => true, () => false);
  if (await exists("dist/containerd-ts")) return "binary";
  if (await exists("dist/bundle/main.js")) return "bundle";
  return "source";
}

/** {@link launchedForm} in words, for the report's header. */
async function launchedArtifact(): Promise<string> {
  switch (await launchedForm()) {
    case "binary":
      return "the compiled dist/containerd-ts";
    case "bundle":
      return "the bundle dist/bundle/main.js (deno task build)";
    case "source":
      return "main.ts (no deno task build)";
  }
}

// ----------------------------------------------------------------------------------------------
// Boot and RSS

/**
 * bench/servers.ts in the form bin/containerd-ts runs the daemon: from source, or bundled
 * (`deno bundle --minify`, into `dir`) when the daemon runs what `deno task build` made —
 * from source the reference servers' module loading alone cost ~30 ms and ~2 MiB more than
 * the daemon's whole bundle, which made no floor.
 */
async function referenceServersScript(dir: string): Promise<string> {
  const source = `${REPO}/bench/servers.ts`;
  if (await launchedForm() === "source") return source;
  const out = `${dir}/servers.js`;
  const bundled = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--minify", "--platform", "deno", "--output", out, source],
    cwd: REPO,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!bundled.success) {
    throw new Error(`deno bundle bench/servers.ts: ${new TextDecoder().decode(bundled.stderr)}`);
  }
  return out;
}

async function measureBoots(
  options: BenchOptions,
  reasons: Map<DaemonKind, string>,
): Promise<{
  boot: Map<BootKind, Cell>;
  rss: Map<BootKind, Cell>;
  anonymous: Map<BootKind, Cell>;
  fileBacked: Map<BootKind, Cell>;
}> {
  const kinds: readonly BootKind[] = [...DAEMONS, ...REFERENCES];
  const boots = new Map<BootKind, number[]>(kinds.map((d) => [d, []]));
  const rss = new Map<BootKind, number[]>(kinds.map((d) => [d, []]));
  const anonymous = new Map<BootKind, number[]>(kinds.map((d) => [d, []]));
  const fileBacked = new Map<BootKind, number[]>(kinds.map((d) => [d, []]));
  const failed = new Map<BootKind, string>(reasons);
  const scratch = await Deno.makeTempDir({ prefix: "bench-servers-" });
  let serversScript: string | undefined;
  try {
    serversScript = await referenceServersScript(scratch);
  } catch (err) {
    // Deno alone runs bench/idle.js, not the servers script.
    for (const kind of REFERENCES) if (kind !== "runtime") failed.set(kind, messageOf(err));
  }
  for (let i = 0; i < options.boots; i++) {
    const order = i % 2 === 0 ? kinds : [...kinds].reverse();
    for (const kind of order) {
      if (failed.has(kind)) continue;
      let daemon: RunningDaemon | undefined;
      try {
        daemon = await startDaemon(kind, serversScript ? { serversScript } : {});
        boots.get(kind)!.push(daemon.bootMs);
        await new Promise((r) => setTimeout(r, 1000));
        // One read of smaps_rollup: its Rss is VmRSS, split into what makes it up.
        const split = await daemon.memoryKiB();
        const kib = split.rss;
        if (Number.isFinite(kib)) rss.get(kind)!.push(kib / 1024);
        if (Number.isFinite(split.anonymous)) {
          anonymous.get(kind)!.push(split.anonymous / 1024);
          fileBacked.get(kind)!.push(split.fileBacked / 1024);
        }
        log(
          `boot ${i + 1}/${options.boots} ${kind}: ${daemon.bootMs.toFixed(0)} ms, ${
            (kib / 1024).toFixed(1)
          } MiB`,
        );
      } catch (err) {
        failed.set(kind, messageOf(err));
        log(`boot ${kind} failed: ${messageOf(err)}`);
      } finally {
        await daemon?.stop();
      }
    }
  }
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  const cell = (kind: BootKind, values: number[]): Cell =>
    values.length > 0
      ? { ok: true, values }
      : { ok: false, reason: failed.get(kind) ?? "no samples" };
  const cells = (samples: Map<BootKind, number[]>) =>
    new Map(kinds.map((d) => [d, cell(d, samples.get(d)!)]));
  return {
    boot: cells(boots),
    rss: cells(rss),
    anonymous: cells(anonymous),
    fileBacked: cells(fileBacked),
  };
}

// ----------------------------------------------------------------------------------------------
// Throughput

/** One unary method the unary scenario loads every target with. */
interface UnaryCall {
  /** Row label ("Version"). */
  readonly label: string;
  /** gRPC path. */
  readonly path: string;
  /** Namespaces created in each daemon before the load, so the read returns rows. */
  readonly namespaces: number;
  /** The bench servers that can answer it (bench/servers.ts). */
  readonly servers: readonly ("fixed" | "handler")[];
}

/**
 * Version (no storage) and namespaces List (a metadata read: a read transaction and its
 * labels, 20 namespaces), both with an empty request message. The fixed-reply server answers
 * any path, so it stays the client's ceiling for both; the handler-alone server has only
 * Version.
 */
const UNARY_CALLS: readonly UnaryCall[] = [
  {
    label: "Version",
    path: VERSION_PATH,
    namespaces: 0,
    servers: ["fixed", "handler"],
  },
  {
    label: "namespaces List (20 namespaces)",
    path: "/containerd.services.namespaces.v1.Namespaces/List",
    namespaces: 20,
    servers: ["fixed"],
  },
];

/** A load target: a socket and how to stop what serves it. */
interface Target {
  readonly name: string;
  readonly socket: string;
  stop(): Promise<void>;
}

/** Start bench/servers.ts `kind` in its own process. */
async function startBenchServer(kind: "fixed" | "handler"): Promise<Target> {
  const dir = await Deno.makeTempDir({ prefix: `bench-${kind}-` });
  const socket = `${dir}/s.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", `${REPO}/bench/servers.ts`, kind, socket],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`bench server ${kind} exited before listening`);
    }
    seen += value;
  }
  const draining = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    name: kind,
    socket,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await draining.catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Start both daemons as load targets, each readied by `prepare` (e.g. data a call reads);
 * a daemon that is unavailable or fails to start or prepare goes to `fail` with the reason.
 */
async function startDaemonTargets(
  reasons: Map<DaemonKind, string>,
  fail: (kind: DaemonKind, reason: string) => void,
  prepare: (socket: string) => Promise<void> = async () => {},
): Promise<Target[]> {
  const targets: Target[] = [];
  for (const kind of DAEMONS) {
    const reason = reasons.get(kind);
    if (reason) {
      fail(kind, reason);
      continue;
    }
    try {
      const d = await startDaemon(kind);
      targets.push({ name: kind, socket: d.socket, stop: d.stop });
      await prepare(d.socket);
    } catch (err) {
      fail(kind, messageOf(err));
    }
  }
  return targets;
}

/** `cell` with one more measured point (a failed cell stays failed: callers skip those). */
function withResult(cell: LoadCell | undefined, result: LoadResult): LoadCell {
  return { ok: true, results: [...(cell?.ok ? cell.results : []), result] };
}

/** Run bench/client.ts in its own process against `socket`. */
async function runClient(
  socket: string,
  concurrency: number,
  options: BenchOptions,
  path: string,
): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--quiet",
      `${REPO}/bench/client.ts`,
      "--socket",
      socket,
      "--concurrency",
      String(concurrency),
      "--duration-ms",
      String(options.durationMs),
      "--warmup-ms",
      String(options.warmupMs),
      "--path",
      path,
    ],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `client failed: ${new TextDecoder().decode(out.stderr).trim().split("\n").at(-1)}`,
    );
  }
  const result = JSON.parse(new TextDecoder().decode(out.stdout).trim()) as LoadResult;
  if (result.requests === 0) throw new Error(`no successful calls: ${result.firstError ?? "?"}`);
  return result;
}

async function measureLoad(
  options: BenchOptions,
  reasons: Map<DaemonKind, string>,
  call: UnaryCall,
): Promise<Map<string, Map<number, LoadCell>>> {
  const targets: Target[] = [];
  const results = new Map<string, Map<number, LoadCell>>();
  const fail = (name: string, reason: string) => {
    results.set(name, new Map(options.concurrencies.map((c) => [c, { ok: false, reason }])));
  };
  try {
    targets.push(
      ...await startDaemonTargets(reasons, fail, async (socket) => {
        for (let i = 0; i < call.namespaces; i++) {
          await ctr(socket, ["namespaces", "create", `bench-unary-${i}`], { timeoutMs: 30_000 });
        }
      }),
    );
    for (const kind of call.servers) {
      try {
        targets.push(await startBenchServer(kind));
      } catch (err) {
        fail(kind, messageOf(err));
      }
    }
    // Rounds over every point, rotating which target goes first, so drift and neighbours'
    // load spread over all targets alike.
    let turn = 0;
    for (let round = 0; round < options.repeat; round++) {
      for (const concurrency of options.concurrencies) {
        const shift = turn++ % Math.max(1, targets.length);
        const order = [...targets.slice(shift), ...targets.slice(0, shift)];
        for (const target of order) {
          if (!results.has(target.name)) results.set(target.name, new Map());
          const byConcurrency = results.get(target.name)!;
          const previous = byConcurrency.get(concurrency);
          if (previous && !previous.ok) continue;
          try {
            const result = await runClient(target.socket, concurrency, options, call.path);
            byConcurrency.set(concurrency, withResult(previous, result));
            log(
              `${call.label} round ${round + 1} c=${concurrency} ${target.name}: ${
                result.rps.toFixed(0)
              } req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${
                result.p99Ms.toFixed(2)
              } ms, errors ${result.errors}`,
            );
          } catch (err) {
            byConcurrency.set(concurrency, { ok: false, reason: messageOf(err) });
            log(`c=${concurrency} ${target.name}: ${messageOf(err)}`);
          }
        }
      }
    }
  } finally {
    for (const target of targets) await target.stop();
  }
  return results;
}

/**
 * Version at concurrency 1 without warm-up, right after each daemon was quiet for
 * {@link AFTER_IDLE_QUIET_MS} following a burst of calls: what a client sees after a quiet
 * spell, which the warmed-up rows leave out. Per round: one burst on each daemon (unmeasured,
 * the same length as a point with its warm-up), the quiet time, then one measured point on
 * each, alternating which goes first; each daemon is quiet for at least the quiet time.
 */
async function measureAfterIdle(
  options: BenchOptions,
  reasons: Map<DaemonKind, string>,
): Promise<Map<string, LoadCell>> {
  const targets: Target[] = [];
  const results = new Map<string, LoadCell>();
  try {
    targets.push(
      ...await startDaemonTargets(reasons, (kind, reason) => {
        results.set(kind, { ok: false, reason });
      }),
    );
    const cold = { ...options, warmupMs: 0 };
    for (let round = 0; round < options.repeat; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const target of order) {
        await runClient(target.socket, 1, options, VERSION_PATH).catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, AFTER_IDLE_QUIET_MS));
      for (const target of order) {
        const previous = results.get(target.name);
        if (previous && !previous.ok) continue;
        try {
          const result = await runClient(target.socket, 1, cold, VERSION_PATH);
          results.set(target.name, withResult(previous, result));
          log(
            `Version after ${AFTER_IDLE_QUIET_MS / 1000} s quiet, round ${
              round + 1
            } ${target.name}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99Ms.toFixed(2)} ms`,
          );
        } catch (err) {
          results.set(target.name, { ok: false, reason: messageOf(err) });
        }
      }
    }
  } finally {
    for (const target of targets) await target.stop();
  }
  return results;
}

// ----------------------------------------------------------------------------------------------
// Report

function fmtRps(rps: number): string {
  return rps >= 1000 ? `${(rps / 1000).toFixed(2)}k` : rps.toFixed(0);
}

/** Median requests/s of a load cell, for ratios. */
function medianRps(cell: LoadCell | undefined): number | undefined {
  return cell?.ok ? median(cell.results.map((r) => r.rps)) : undefined;
}

function loadText(cell: LoadCell | undefined): string {
  if (!cell) return "—";
  if (!cell.ok) return `n/a: ${cell.reason}`;
  const rps = cell.results.map((r) => r.rps);
  const range = rps.length > 1 ? ` [${fmtRps(Math.min(...rps))}–${fmtRps(Math.max(...rps))}]` : "";
  const p50 = median(cell.results.map((r) => r.p50Ms));
  const p99 = median(cell.results.map((r) => r.p99Ms));
  return `${fmtRps(median(rps))} req/s${range} (p50 ${p50.toFixed(2)} ms, p99 ${
    p99.toFixed(2)
  } ms)`;
}

function bootRows(
  options: BenchOptions,
  measured: Awaited<ReturnType<typeof measureBoots>>,
): Row[] {
  const { boot, rss, anonymous, fileBacked } = measured;
  /** One row; `runtimeNote` says what Deno alone's figure is where it differs. */
  const pair = (
    { scenario, cells, unit, digits, runtimeNote = "" }: {
      scenario: string;
      cells: Map<BootKind, Cell>;
      unit: string;
      digits: number;
      runtimeNote?: string;
    },
  ) => ({
    scenario,
    containerd: rangeText(cells.get("containerd"), unit, digits),
    ours: rangeText(cells.get("containerd-ts"), unit, digits),
    ratio: `${
      ratioText(cellMedian(cells.get("containerd-ts")), cellMedian(cells.get("containerd")))
    } (median)`,
    // What Deno and this project's HTTP/2 server (and RPC layer) cost before any plugin: the
    // part of a ratio that no plugin work can remove.
    reference: `fixed-reply server process: ${rangeText(cells.get("fixed"), unit, digits)}; ` +
      `Deno alone (bench/idle.js${runtimeNote}): ${rangeText(cells.get("runtime"), unit, digits)}`,
    handler: `handler process: ${rangeText(cells.get("handler"), unit, digits)}`,
  });
  return [
    pair({
      scenario: `boot to first Version RPC (min / median / max, ${options.boots} boots)`,
      cells: boot,
      unit: "ms",
      digits: 0,
      runtimeNote: ", start to its first line",
    }),
    pair({
      scenario: "idle RSS 1 s after boot (min / median / max)",
      cells: rss,
      unit: "MiB",
      digits: 1,
    }),
    // What the RSS ratio is made of: the process's own memory, and the pages of its mapped
    // files (executable, libraries, Deno's cache databases), shared and reclaimable.
    pair({
      scenario: "  of which anonymous (heaps, stacks, malloc)",
      cells: anonymous,
      unit: "MiB",
      digits: 1,
    }),
    pair({
      scenario: "  of which file-backed (executable, libraries, mapped files)",
      cells: fileBacked,
      unit: "MiB",
      digits: 1,
    }),
  ];
}

function loadRows(
  options: BenchOptions,
  call: UnaryCall,
  load: Map<string, Map<number, LoadCell>>,
): Row[] {
  return options.concurrencies.map((c) => {
    const get = (name: string) => load.get(name)?.get(c);
    return {
      scenario: `unary ${call.label}, concurrency ${c}`,
      containerd: loadText(get("containerd")),
      ours: loadText(get("containerd-ts")),
      ratio: ratioText(medianRps(get("containerd-ts")), medianRps(get("containerd"))),
      reference: `fixed-reply server: ${loadText(get("fixed"))}`,
      handler: call.servers.includes("handler")
        ? loadText(get("handler"))
        : "— (serves Version only)",
    };
  });
}

function afterIdleRow(options: BenchOptions, load: Map<string, LoadCell>): Row {
  return {
    scenario: `unary Version, concurrency 1, the first ${options.durationMs / 1000} s after ${
      AFTER_IDLE_QUIET_MS / 1000
    } s without traffic (no warm-up)`,
    containerd: loadText(load.get("containerd")),
    ours: loadText(load.get("containerd-ts")),
    ratio: ratioText(medianRps(load.get("containerd-ts")), medianRps(load.get("containerd"))),
    reference: `— (containerd-ts trims its heap after ${
      DEFAULT_CALL_IDLE_MS / 1000
    } s without calls: server/heap_trim.ts)`,
    handler: "—",
  };
}

async function gitCommit(): Promise<{ short: string; dirty: boolean }> {
  const run = async (args: string[]) => {
    try {
      const out = await new Deno.Command("git", {
        args,
        cwd: REPO,
        stdout: "piped",
        stderr: "null",
      })
        .output();
      return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
    } catch {
      return "";
    }
  };
  const short = (await run(["rev-parse", "--short", "HEAD"])) || "nogit";
  const dirty = (await run(["status", "--porcelain"])) !== "";
  return { short, dirty };
}

async function containerdVersion(): Promise<string> {
  try {
    const out = await new Deno.Command("/usr/bin/containerd", {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "not installed";
  }
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const reasons = new Map<DaemonKind, string>();
  for (const kind of DAEMONS) {
    const reason = await unavailable(kind);
    if (reason) {
      reasons.set(kind, reason);
      log(`${kind}: n/a: ${reason}`);
    }
  }
  log(`scenarios: ${[...options.scenarios].join(", ")}${options.quick ? " (--quick)" : ""}`);
  const rows: Row[] = [];
  if (options.scenarios.has("boot")) {
    rows.push(...bootRows(options, await measureBoots(options, reasons)));
  }
  if (options.scenarios.has("unary")) {
    for (const call of UNARY_CALLS) {
      rows.push(...loadRows(options, call, await measureLoad(options, reasons, call)));
    }
    rows.push(afterIdleRow(options, await measureAfterIdle(options, reasons)));
  }
  rows.push(
    ...await runScenarios({ ...options.sizes, scenarios: options.scenarios }, reasons),
  );
  const commit = await gitCommit();
  const date = new Date().toISOString().slice(0, 10);
  const report = [
    `# containerd-ts bench ${date} (${commit.short}${commit.dirty ? ", uncommitted changes" : ""})`,
    "",
    `- ${await containerdVersion()}`,
    `- containerd-ts via bin/containerd-ts running ${await launchedArtifact()} on Deno ${Deno.version.deno}; ${navigator.hardwareConcurrency} CPUs`,
    `- scenarios: ${[...options.scenarios].join(", ")}${
      options.quick ? " — **--quick smoke run: smaller sizes and counts**" : " (full sizes)"
    }`,
    `- unary: one raw node:http2 gRPC client process per point, ${options.warmupMs} ms warm-up + ${options.durationMs} ms measured; ${options.repeat} rounds, target order rotating; req/s is the median [min–max] of the rounds, p50/p99 the median of the rounds`,
    `- data scenarios (content, images, containers, scale, memory): one daemon of each kind running side by side for all of them, repeats alternating which daemon goes first; ratios are of medians; MB/s = 10^6 bytes/s; ctr is Debian's ctr 1.6.20 for both; RSS checkpoints after a load scenario are taken after ${
      SETTLE_MS / 1000
    } s without traffic, for both daemons`,
    "- the host is shared: other work running beside the bench moves the numbers; compare columns of one run",
    "",
    renderTable(rows),
    "",
  ].join("\n");
  console.log(report);
  if (options.write) {
    const dir = `${REPO}/bench/results`;
    await Deno.mkdir(dir, { recursive: true });
    const path = `${dir}/${date}-${commit.short}.md`;
    await Deno.writeTextFile(path, report);
    log(`wrote ${path}`);
  }
}

if (import.meta.main) {
  await main();
}
