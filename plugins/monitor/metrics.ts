/**
 * The Prometheus families containerd 1.6's cgroups monitor exports per task, as tables from
 * decoded cgroup stats to samples: {@link V1_METRICS} for `io.containerd.cgroups.v1.Metrics`
 * (metrics/cgroups/v1: pids, cpu, memory, hugetlb, blkio) and {@link V2_METRICS} for
 * `io.containerd.cgroups.v2.Metrics` (metrics/cgroups/v2: pids, cpu, memory, io).
 *
 * Names are containerd's: `container_<name>_<unit>` (`container_cpu_total_nanoseconds`,
 * `container_memory_usage_usage_bytes`, `container_pids_current`), every one a gauge, with the
 * help text containerd prints. Each sample carries `container_id` and `namespace` (added by
 * the monitor) plus the family's own labels (`cpu`, `page`, `op`/`device`/`major`/`minor`).
 *
 * @example
 * ```ts
 * import { create } from "@bufbuild/protobuf";
 * import { MetricsSchema } from "../../proto/gen/io/containerd/cgroups/v1/metrics_pb.ts";
 * import { V1_METRICS } from "./metrics.ts";
 * const stats = create(MetricsSchema, { pids: { current: 1n, limit: 0n } });
 * const pids = V1_METRICS.find((m) => m.name === "container_pids_current")!;
 * console.log(pids.samples(stats)); // [{ value: 1, labels: [] }]
 * ```
 * @module
 */
import type * as v1 from "../../proto/gen/io/containerd/cgroups/v1/metrics_pb.ts";
import type * as v2 from "../../proto/gen/io/containerd/cgroups/v2/metrics_pb.ts";

/** One value of a family, with the values of the family's own labels, in their order. */
export interface Sample {
  value: number;
  labels: readonly string[];
}

/** A family: its full name, help, own label names, and how to read it from stats. */
export interface MetricDef<S> {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  samples(stats: S): Sample[];
}

/** go-metrics' unit suffixes, plus the bare words containerd uses as units. */
type Unit = "nanoseconds" | "microseconds" | "bytes" | "total" | "limit" | "current";

/** The keys of `T` whose values are uint64 (bigint) fields. */
type Uint64Key<T> = { [K in keyof T]-?: T[K] extends bigint ? K : never }[keyof T];
/** The keys of `T` whose values are lists of `E`. */
type ListKey<T, E> = { [K in keyof T]-?: T[K] extends E[] ? K : never }[keyof T];

/** go-metrics' naming: namespace `container`, then the name, then the unit. */
function fullName(name: string, unit: Unit): string {
  return `container_${name}_${unit}`;
}

/**
 * A family with one unlabelled value read from one part of the stats; no sample when that
 * part is absent (as containerd's nil checks), 0 for a field missing inside it.
 */
function scalar<S, P>(
  name: string,
  unit: Unit,
  help: string,
  part: (stats: S) => P | undefined,
  read: (part: P) => bigint | undefined,
): MetricDef<S> {
  return {
    name: fullName(name, unit),
    help,
    labels: [],
    samples(stats) {
      const p = part(stats);
      return p === undefined ? [] : [{ value: Number(read(p) ?? 0n), labels: [] }];
    },
  };
}

/** A family with one labelled value per entry of a list in the stats. */
function perEntry<S, E>(
  name: string,
  unit: Unit,
  help: string,
  labels: readonly string[],
  entries: (stats: S) => readonly E[] | undefined,
  read: (entry: E, index: number) => Sample,
): MetricDef<S> {
  return {
    name: fullName(name, unit),
    help,
    labels,
    samples: (stats) => (entries(stats) ?? []).map(read),
  };
}

// ---- cgroup v1 ----

const v1Pids: MetricDef<v1.Metrics>[] = [
  scalar("pids", "limit", "The limit to the number of pids allowed", (s) => s.pids, (p) => p.limit),
  scalar("pids", "current", "The current number of pids", (s) => s.pids, (p) => p.current),
];

const v1CpuScalar = (
  name: string,
  unit: Unit,
  help: string,
  read: (cpu: v1.CPUStat) => bigint | undefined,
) => scalar<v1.Metrics, v1.CPUStat>(name, unit, help, (s) => s.cpu, read);

const v1Cpu: MetricDef<v1.Metrics>[] = [
  v1CpuScalar("cpu_total", "nanoseconds", "The total cpu time", (c) => c.usage?.total),
  v1CpuScalar("cpu_kernel", "nanoseconds", "The total kernel cpu time", (c) => c.usage?.kernel),
  v1CpuScalar("cpu_user", "nanoseconds", "The total user cpu time", (c) => c.usage?.user),
  perEntry<v1.Metrics, bigint>(
    "per_cpu",
    "nanoseconds",
    "The total cpu time per cpu",
    ["cpu"],
    (s) => s.cpu?.usage?.perCpu,
    (v, i) => ({ value: Number(v), labels: [String(i)] }),
  ),
  v1CpuScalar(
    "cpu_throttle_periods",
    "total",
    "The total cpu throttle periods",
    (c) => c.throttling?.periods,
  ),
  v1CpuScalar(
    "cpu_throttled_periods",
    "total",
    "The total cpu throttled periods",
    (c) => c.throttling?.throttledPeriods,
  ),
  v1CpuScalar(
    "cpu_throttled_time",
    "nanoseconds",
    "The total cpu throttled time",
    (c) => c.throttling?.throttledTime,
  ),
];

/** memory.stat counters: [metric name after `memory_`, field, help wording]. */
const V1_MEMORY_STAT: readonly [string, Uint64Key<v1.MemoryStat>, "used" | ""][] = [
  ["cache", "cache", "used"],
  ["rss", "rss", "used"],
  ["rss_huge", "rssHuge", "used"],
  ["mapped_file", "mappedFile", "used"],
  ["dirty", "dirty", ""],
  ["writeback", "writeback", ""],
  ["pgpgin", "pgPgIn", ""],
  ["pgpgout", "pgPgOut", ""],
  ["pgfault", "pgFault", ""],
  ["pgmajfault", "pgMajFault", ""],
  ["inactive_anon", "inactiveAnon", ""],
  ["active_anon", "activeAnon", ""],
  ["inactive_file", "inactiveFile", ""],
  ["active_file", "activeFile", ""],
  ["unevictable", "unevictable", ""],
  ["hierarchical_memory_limit", "hierarchicalMemoryLimit", ""],
  ["hierarchical_memsw_limit", "hierarchicalSwapLimit", ""],
  ["total_cache", "totalCache", "used"],
  ["total_rss", "totalRss", "used"],
  ["total_rss_huge", "totalRssHuge", "used"],
  ["total_mapped_file", "totalMappedFile", "used"],
  ["total_dirty", "totalDirty", ""],
  ["total_writeback", "totalWriteback", ""],
  ["total_pgpgin", "totalPgPgIn", ""],
  ["total_pgpgout", "totalPgPgOut", ""],
  ["total_pgfault", "totalPgFault", ""],
  ["total_pgmajfault", "totalPgMajFault", ""],
  ["total_inactive_anon", "totalInactiveAnon", ""],
  ["total_active_anon", "totalActiveAnon", ""],
  ["total_inactive_file", "totalInactiveFile", ""],
  ["total_active_file", "totalActiveFile", ""],
  ["total_unevictable", "totalUnevictable", ""],
];

/** The four counter files of each memory.* group: [name, field, what the help calls it]. */
const V1_MEMORY_ENTRIES: readonly [string, "usage" | "swap" | "kernel" | "kernelTcp", string][] = [
  ["usage", "usage", "memory"],
  ["swap", "swap", "swap"],
  ["kernel", "kernel", "kernel"],
  ["kerneltcp", "kernelTcp", "kerneltcp"],
];

const v1Memory: MetricDef<v1.Metrics>[] = [
  ...V1_MEMORY_STAT.map(([name, field, used]) =>
    scalar<v1.Metrics, v1.MemoryStat>(
      `memory_${name}`,
      "bytes",
      `The ${name} amount${used ? " used" : ""}`,
      (s) => s.memory,
      (m) => m[field],
    )
  ),
  ...V1_MEMORY_ENTRIES.flatMap(([name, field, noun]) => {
    const entry = (
      suffix: string,
      unit: Unit,
      help: string,
      read: (e: v1.MemoryEntry) => bigint,
    ) =>
      scalar<v1.Metrics, v1.MemoryStat>(
        `memory_${name}_${suffix}`,
        unit,
        help,
        (s) => s.memory,
        (m) => {
          const e = m[field];
          return e === undefined ? undefined : read(e);
        },
      );
    // The failcnt help names the group ("The usage failcnt"); the others name the noun.
    return [
      entry("failcnt", "total", `The ${name} failcnt`, (e) => e.failcnt),
      entry("limit", "bytes", `The ${noun} limit`, (e) => e.limit),
      entry("max", "bytes", `The ${noun} maximum usage`, (e) => e.max),
      entry("usage", "bytes", `The ${noun} usage`, (e) => e.usage),
    ];
  }),
];

const v1Hugetlb: MetricDef<v1.Metrics>[] = (
  [
    ["usage", "bytes", "The hugetlb usage", "usage"],
    ["failcnt", "total", "The hugetlb failcnt", "failcnt"],
    ["max", "bytes", "The hugetlb maximum usage", "max"],
  ] as const
).map(([name, unit, help, field]) =>
  perEntry<v1.Metrics, v1.HugetlbStat>(
    `hugetlb_${name}`,
    unit,
    help,
    ["page"],
    (s) => s.hugetlb,
    (e) => ({ value: Number(e[field]), labels: [e.pagesize] }),
  )
);

/** blkio.* files: [metric name after `blkio_`, field, unit]; help spells the name out. */
const V1_BLKIO: readonly [string, ListKey<v1.BlkIOStat, v1.BlkIOEntry>, Unit][] = [
  ["io_merged_recursive", "ioMergedRecursive", "total"],
  ["io_queued_recursive", "ioQueuedRecursive", "total"],
  ["io_service_bytes_recursive", "ioServiceBytesRecursive", "bytes"],
  ["io_service_time_recursive", "ioServiceTimeRecursive", "total"],
  ["io_serviced_recursive", "ioServicedRecursive", "total"],
  ["io_time_recursive", "ioTimeRecursive", "total"],
  ["sectors_recursive", "sectorsRecursive", "total"],
];

const v1Blkio: MetricDef<v1.Metrics>[] = V1_BLKIO.map(([name, field, unit]) =>
  perEntry<v1.Metrics, v1.BlkIOEntry>(
    `blkio_${name}`,
    unit,
    `The blkio ${name.replaceAll("_", " ")}`,
    ["op", "device", "major", "minor"],
    (s) => s.blkio?.[field],
    (e) => ({ value: Number(e.value), labels: [e.op, e.device, String(e.major), String(e.minor)] }),
  )
);

/** containerd 1.6's cgroup v1 families, in its order. */
export const V1_METRICS: readonly MetricDef<v1.Metrics>[] = [
  ...v1Pids,
  ...v1Cpu,
  ...v1Memory,
  ...v1Hugetlb,
  ...v1Blkio,
];

// ---- cgroup v2 ----

const v2Pids: MetricDef<v2.Metrics>[] = [
  scalar(
    "pids",
    "limit",
    "The limit to the number of pids allowed (cgroup v2)",
    (s) => s.pids,
    (p) => p.limit,
  ),
  scalar(
    "pids",
    "current",
    "The current number of pids (cgroup v2)",
    (s) => s.pids,
    (p) => p.current,
  ),
];

const V2_CPU: readonly [string, Uint64Key<v2.CPUStat>, Unit, string][] = [
  ["cpu_usage_usec", "usageUsec", "microseconds", "Total cpu usage (cgroup v2)"],
  ["cpu_user_usec", "userUsec", "microseconds", "Current cpu usage in user space (cgroup v2)"],
  [
    "cpu_system_usec",
    "systemUsec",
    "microseconds",
    "Current cpu usage in kernel space (cgroup v2)",
  ],
  [
    "cpu_nr_periods",
    "nrPeriods",
    "total",
    "Current cpu number of periods (only if controller is enabled)",
  ],
  [
    "cpu_nr_throttled",
    "nrThrottled",
    "total",
    "Total number of times tasks have been throttled (only if controller is enabled)",
  ],
  [
    "cpu_throttled_usec",
    "throttledUsec",
    "microseconds",
    "Total time duration for which tasks have been throttled. (only if controller is enabled)",
  ],
];

const v2Cpu: MetricDef<v2.Metrics>[] = V2_CPU.map(([name, field, unit, help]) =>
  scalar<v2.Metrics, v2.CPUStat>(name, unit, help, (s) => s.cpu, (c) => c[field])
);

/** memory.stat counters after the four usage/limit families: [name after `memory_`, field]. */
const V2_MEMORY_STAT: readonly [string, Uint64Key<v2.MemoryStat>][] = [
  ["file_mapped", "fileMapped"],
  ["file_dirty", "fileDirty"],
  ["file_writeback", "fileWriteback"],
  ["pgactivate", "pgactivate"],
  ["pgdeactivate", "pgdeactivate"],
  ["pgfault", "pgfault"],
  ["pgmajfault", "pgmajfault"],
  ["pglazyfree", "pglazyfree"],
  ["pgrefill", "pgrefill"],
  ["pglazyfreed", "pglazyfreed"],
  ["pgscan", "pgscan"],
  ["pgsteal", "pgsteal"],
  ["inactive_anon", "inactiveAnon"],
  ["active_anon", "activeAnon"],
  ["inactive_file", "inactiveFile"],
  ["active_file", "activeFile"],
  ["unevictable", "unevictable"],
  ["anon", "anon"],
  ["file", "file"],
  ["kernel_stack", "kernelStack"],
  ["slab", "slab"],
  ["sock", "sock"],
  ["shmem", "shmem"],
  ["anon_thp", "anonThp"],
  ["slab_reclaimable", "slabReclaimable"],
  ["slab_unreclaimable", "slabUnreclaimable"],
  ["workingset_refault", "workingsetRefault"],
  ["workingset_activate", "workingsetActivate"],
  ["workingset_nodereclaim", "workingsetNodereclaim"],
  ["thp_fault_alloc", "thpFaultAlloc"],
  ["thp_collapse_alloc", "thpCollapseAlloc"],
];

const v2MemoryScalar = (name: string, help: string, field: Uint64Key<v2.MemoryStat>) =>
  scalar<v2.Metrics, v2.MemoryStat>(name, "bytes", help, (s) => s.memory, (m) => m[field]);

const v2Memory: MetricDef<v2.Metrics>[] = [
  v2MemoryScalar("memory_usage", "Current memory usage (cgroup v2)", "usage"),
  v2MemoryScalar("memory_usage_limit", "Current memory usage limit (cgroup v2)", "usageLimit"),
  v2MemoryScalar("memory_swap_usage", "Current swap usage (cgroup v2)", "swapUsage"),
  v2MemoryScalar("memory_swap_limit", "Current swap usage limit (cgroup v2)", "swapLimit"),
  ...V2_MEMORY_STAT.map(([name, field]) =>
    v2MemoryScalar(`memory_${name}`, `The ${name} amount`, field)
  ),
  scalar<v2.Metrics, v2.MemoryEvents>(
    "memory_oom",
    "total",
    "The number of times a container has received an oom event",
    (s) => s.memoryEvents,
    (e) => e.oom,
  ),
];

const v2Io: MetricDef<v2.Metrics>[] = (
  [
    ["io_rbytes", "bytes", "IO bytes read", "rbytes"],
    ["io_wbytes", "bytes", "IO bytes written", "wbytes"],
    ["io_rios", "total", "Number of read IOs", "rios"],
    ["io_wios", "total", "Number of write IOs", "wios"],
  ] as const
).map(([name, unit, help, field]) =>
  perEntry<v2.Metrics, v2.IOEntry>(
    name,
    unit,
    help,
    ["major", "minor"],
    (s) => s.io?.usage,
    (e) => ({ value: Number(e[field]), labels: [String(e.major), String(e.minor)] }),
  )
);

/** containerd 1.6's cgroup v2 families, in its order. */
export const V2_METRICS: readonly MetricDef<v2.Metrics>[] = [
  ...v2Pids,
  ...v2Cpu,
  ...v2Memory,
  ...v2Io,
];
