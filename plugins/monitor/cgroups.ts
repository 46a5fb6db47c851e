/**
 * io.containerd.monitor.v1.cgroups: per-container cgroup metrics on the daemon's
 * `/v1/metrics`, as containerd 1.6's cgroups task monitor.
 *
 * The Tasks service hands every task to {@link CgroupsMonitor.monitor} (on Create, with a
 * `runtime` label, and at boot for reconnected tasks) and takes it back with
 * {@link CgroupsMonitor.stop} before Delete. On each scrape the monitor asks every watched
 * task's shim for Task.Stats (a few seconds at most; a task that fails is left out of that
 * scrape and logged at debug), decodes the `io.containerd.cgroups.v1.Metrics` or
 * `io.containerd.cgroups.v2.Metrics` answer by its type URL and renders containerd's
 * families (see ./metrics.ts): e.g.
 *
 * ```
 * container_pids_current{container_id="c1",namespace="default",runtime="io.containerd.runc.v2"} 1
 * container_cpu_total_nanoseconds{container_id="c1",namespace="default",runtime="io.containerd.runc.v2"} 4211000
 * ```
 *
 * As containerd, the families are those of the host's cgroup mode (v1 on a legacy or hybrid
 * host, v2 on a unified one), every one a gauge, and labels come sorted by name. Two
 * differences from containerd, both in what an idle daemon shows: the `container_*` families
 * are on the registry only while some task is watched (prom-client prints a family's
 * HELP/TYPE even when it has no series; containerd prints nothing then), and a task whose
 * shim connection drops is forgotten at once rather than failing every later scrape. OOM
 * events are not this plugin's: the runc shim publishes /tasks/oom itself.
 *
 * Config (`[plugins."io.containerd.monitor.v1.cgroups"]`): `no_prometheus` (default false)
 * turns the metrics off, as in containerd.
 *
 * @module
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Registry } from "prom-client";
import { Task } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import * as v1 from "../../proto/gen/io/containerd/cgroups/v1/metrics_pb.ts";
import * as v2 from "../../proto/gen/io/containerd/cgroups/v2/metrics_pb.ts";
import type { Logger } from "../../server/log.ts";
import type { MetricsContributor } from "../../server/metrics.ts";
import { register } from "../../server/plugin.ts";
import { configSchema, field } from "../../server/schema.ts";
import { defaultPlatform } from "../snapshots/api.ts";
import { TaskMonitorPlugin } from "../types.ts";
import type { MonitoredTask, TaskMonitor } from "./api.ts";
import type { ScrapedGauge, ScrapedValue } from "./gauges.ts";
import { type MetricDef, type Sample, V1_METRICS, V2_METRICS } from "./metrics.ts";

/** Which cgroup stats a host's shims report. */
export type CgroupMode = "v1" | "v2";

/** Time a shim gets to answer Task.Stats during a scrape. */
export const STATS_TIMEOUT_MS = 2_000;

/** Task stats decoded by type URL. */
export type DecodedStats =
  | { readonly version: "v1"; readonly metrics: v1.Metrics }
  | { readonly version: "v2"; readonly metrics: v2.Metrics };

/**
 * Decode a Task.Stats answer: `io.containerd.cgroups.v1.Metrics` or `...v2.Metrics` (with or
 * without a `type.googleapis.com/`-style prefix). Throws for any other type, naming it.
 */
export function decodeStats(stats: Pick<Any, "typeUrl" | "value">): DecodedStats {
  const type = stats.typeUrl.slice(stats.typeUrl.lastIndexOf("/") + 1);
  if (type === v1.MetricsSchema.typeName) {
    return { version: "v1", metrics: fromBinary(v1.MetricsSchema, stats.value) };
  }
  if (type === v2.MetricsSchema.typeName) {
    return { version: "v2", metrics: fromBinary(v2.MetricsSchema, stats.value) };
  }
  throw new Error(`decode task stats: unsupported type ${JSON.stringify(stats.typeUrl)}`);
}

/** A family's name, help and own labels, without the stats type. */
export type Family = Pick<MetricDef<unknown>, "name" | "help" | "labels">;

/** containerd's families for a cgroup mode. */
export function familiesOf(mode: CgroupMode): readonly Family[] {
  return mode === "v1" ? V1_METRICS : V2_METRICS;
}

/** Every family's samples for decoded stats, by family name. */
export function samplesOf(stats: DecodedStats): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
  if (stats.version === "v1") {
    for (const def of V1_METRICS) out.set(def.name, def.samples(stats.metrics));
  } else {
    for (const def of V2_METRICS) out.set(def.name, def.samples(stats.metrics));
  }
  return out;
}

/**
 * The host's cgroup mode as containerd tells it: "v2" when /sys/fs/cgroup itself is a cgroup2
 * mount (unified), else "v1" (legacy or hybrid, or no cgroups at all).
 */
export async function hostCgroupMode(mountinfo = "/proc/self/mountinfo"): Promise<CgroupMode> {
  let text: string;
  try {
    text = await Deno.readTextFile(mountinfo);
  } catch {
    return "v1";
  }
  let mode: CgroupMode = "v1";
  for (const line of text.split("\n")) {
    // "<id> <parent> <dev> <root> <mount point> <options> [optional...] - <fstype> ..."
    const [before, after] = line.split(" - ");
    if (before?.split(" ")[4] !== "/sys/fs/cgroup" || after === undefined) continue;
    mode = after.split(" ")[0] === "cgroup2" ? "v2" : "v1"; // the last mount there wins
  }
  return mode;
}

/** Options of {@link CgroupsMonitor}. */
export interface CgroupsMonitorOptions {
  /** The families to export; stats of the other version are skipped. */
  mode: CgroupMode;
  log: Logger;
  /** Export metrics at all (containerd's `no_prometheus` negated). Default true. */
  prometheus?: boolean;
  /** Per-task Task.Stats timeout in a scrape. Default {@link STATS_TIMEOUT_MS}. */
  timeoutMs?: number;
}

interface Watched {
  readonly task: MonitoredTask;
  readonly labels: Readonly<Record<string, string>>;
}

type Scrape = Map<string, ScrapedValue[]>;

/**
 * containerd's cgroups task monitor: watched tasks and the gauges that report them.
 *
 * @example
 * ```ts
 * import { Registry } from "prom-client";
 * import { silentLogger } from "../../server/log.ts";
 * import { CgroupsMonitor } from "./cgroups.ts";
 * const monitor = new CgroupsMonitor({ mode: "v1", log: silentLogger() });
 * const registry = new Registry();
 * monitor.registerMetrics(registry);
 * // monitor.monitor(task, { runtime: "io.containerd.runc.v2" }) when a task is created
 * console.log(await registry.metrics()); // container_* series of every watched task
 * ```
 */
export class CgroupsMonitor implements TaskMonitor, MetricsContributor {
  readonly #mode: CgroupMode;
  readonly #log: Logger;
  readonly #prometheus: boolean;
  readonly #timeoutMs: number;
  readonly #watched = new Map<string, Watched>();
  #registry: Registry | undefined;
  #gauges: ScrapedGauge[] = [];
  #registered = false;
  #scrape: Promise<Scrape> | undefined;

  constructor(options: CgroupsMonitorOptions) {
    this.#mode = options.mode;
    this.#log = options.log;
    this.#prometheus = options.prometheus ?? true;
    this.#timeoutMs = options.timeoutMs ?? STATS_TIMEOUT_MS;
  }

  /** The cgroup mode whose families this monitor exports. */
  get mode(): CgroupMode {
    return this.#mode;
  }

  /** Watch a task; its shim connection closing forgets it. Watching it again is a no-op. */
  monitor(task: MonitoredTask, labels: Readonly<Record<string, string>> = {}): void {
    const key = keyOf(task);
    if (this.#watched.has(key)) return;
    this.#watched.set(key, { task, labels: { ...labels } });
    void task.shim.closed.then(() => this.stop(task));
    this.#sync();
  }

  /** Stop watching a task (only that task object: a newer task of the same id stays). */
  stop(task: MonitoredTask): void {
    const key = keyOf(task);
    if (this.#watched.get(key)?.task !== task) return;
    this.#watched.delete(key);
    this.#sync();
  }

  /** The watched tasks, as `namespace/id`. */
  watched(): string[] {
    return [...this.#watched.keys()];
  }

  /**
   * Add the families to `registry` (while some task is watched). Called once by the server,
   * only when metrics are served: prom-client is loaded here, not when the plugin loads.
   */
  async registerMetrics(registry: Registry): Promise<void> {
    if (!this.#prometheus || this.#registry !== undefined) return;
    this.#registry = registry;
    const { ScrapedGauge } = await import("./gauges.ts");
    const scrape = () => (this.#scrape ??= this.#collect().finally(() => this.#scrape = undefined));
    this.#gauges = familiesOf(this.#mode).map((f) => new ScrapedGauge(f, scrape));
    this.#sync();
  }

  /** Put the families on the registry when the first task is watched, off after the last. */
  #sync(): void {
    const registry = this.#registry;
    if (registry === undefined) return;
    const want = this.#watched.size > 0;
    if (want === this.#registered) return;
    this.#registered = want;
    for (const gauge of this.#gauges) {
      if (!want) {
        registry.removeSingleMetric(gauge.family);
        continue;
      }
      try {
        registry.registerMetric(gauge);
      } catch (err) {
        this.#log.warn("cannot register task metric", { name: gauge.family, error: String(err) });
      }
    }
  }

  /** One scrape: every watched task's stats, rendered into each family's series. */
  async #collect(): Promise<Scrape> {
    const out: Scrape = new Map(this.#gauges.map((g) => [g.family, []]));
    const watched = [...this.#watched.values()];
    const stats = await Promise.all(watched.map((w) => this.#stats(w.task)));
    const families = new Map(familiesOf(this.#mode).map((f) => [f.name, f]));
    watched.forEach((w, i) => {
      const decoded = stats[i];
      if (decoded === undefined) return;
      const base: [string, string][] = [
        ["container_id", w.task.id],
        ["namespace", w.task.namespace],
      ];
      for (const [name, samples] of samplesOf(decoded)) {
        const family = families.get(name);
        const series = out.get(name);
        if (family === undefined || series === undefined) continue;
        for (const sample of samples) {
          series.push({
            value: sample.value,
            labels: labelSet(base, family.labels, sample.labels, w.labels),
          });
        }
      }
    });
    return out;
  }

  /** A task's decoded stats, or undefined (logged at debug) when it cannot give them. */
  async #stats(task: MonitoredTask): Promise<DecodedStats | undefined> {
    const log = () => this.#log.with({ namespace: task.namespace, id: task.id });
    try {
      const response = await task.shim.call(
        Task.method.stats,
        { id: task.id },
        { timeoutMs: this.#timeoutMs },
      );
      if (response.stats === undefined) throw new Error("the shim sent no stats");
      const decoded = decodeStats(response.stats);
      if (decoded.version !== this.#mode) {
        log().debug("task stats skipped", {
          reason: `cgroup ${decoded.version} stats on a cgroup ${this.#mode} host`,
        });
        return undefined;
      }
      return decoded;
    } catch (err) {
      log().debug("collect task stats failed", { error: String(err) });
      return undefined;
    }
  }
}

function keyOf(task: MonitoredTask): string {
  return `${task.namespace}/${task.id}`;
}

/**
 * A series' labels sorted by name, as Prometheus' Go client prints them: the task's identity,
 * the family's own labels, then the monitor labels (`runtime`) where they name no other.
 */
function labelSet(
  base: readonly [string, string][],
  names: readonly string[],
  values: readonly string[],
  extra: Readonly<Record<string, string>>,
): Record<string, string> {
  const labels = new Map<string, string>(Object.entries(extra));
  names.forEach((name, i) => labels.set(name, values[i] ?? ""));
  for (const [name, value] of base) labels.set(name, value);
  return Object.fromEntries([...labels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The cgroups monitor's config section, with containerd's default. */
export const cgroupsMonitorConfig = configSchema({
  no_prometheus: field.boolean(false),
});

register({
  type: TaskMonitorPlugin,
  id: "cgroups",
  config: cgroupsMonitorConfig,
  async init(ctx): Promise<CgroupsMonitor> {
    ctx.meta.platforms.push(defaultPlatform());
    return new CgroupsMonitor({
      mode: await hostCgroupMode(),
      log: ctx.log,
      prometheus: !ctx.config.no_prometheus,
    });
  },
});
