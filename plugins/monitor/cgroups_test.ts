import assert from "node:assert/strict";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { Registry } from "prom-client";
import { StatsResponseSchema } from "../../proto/gen/containerd/task/v2/shim_pb.ts";
import * as v1 from "../../proto/gen/io/containerd/cgroups/v1/metrics_pb.ts";
import * as v2 from "../../proto/gen/io/containerd/cgroups/v2/metrics_pb.ts";
import { createLogger, silentLogger } from "../../server/log.ts";
import { isMetricsContributor } from "../../server/metrics.ts";
import type { MonitoredTask, StatsSource } from "./api.ts";
import {
  CgroupsMonitor,
  decodeStats,
  familiesOf,
  hostCgroupMode,
  samplesOf,
  STATS_TIMEOUT_MS,
} from "./cgroups.ts";
import { V1_METRICS, V2_METRICS } from "./metrics.ts";

function v1Any(init: MessageInitShape<typeof v1.MetricsSchema>, prefix = ""): Any {
  const value = toBinary(v1.MetricsSchema, create(v1.MetricsSchema, init));
  return create(AnySchema, { typeUrl: `${prefix}io.containerd.cgroups.v1.Metrics`, value });
}

function v2Any(init: MessageInitShape<typeof v2.MetricsSchema>): Any {
  const value = toBinary(v2.MetricsSchema, create(v2.MetricsSchema, init));
  return create(AnySchema, { typeUrl: "io.containerd.cgroups.v2.Metrics", value });
}

/** What a runc shim on a cgroup v1 host reports for a container running one sleep. */
const V1_SLEEP: MessageInitShape<typeof v1.MetricsSchema> = {
  pids: { current: 1n, limit: 0n },
  cpu: {
    usage: { total: 4211000n, kernel: 1000000n, user: 2000000n, perCpu: [4000000n, 211000n] },
    throttling: { periods: 0n, throttledPeriods: 0n, throttledTime: 0n },
  },
  memory: {
    cache: 8192n,
    rss: 270336n,
    totalRss: 270336n,
    hierarchicalMemoryLimit: 9223372036854771712n,
    usage: { usage: 1536000n, max: 2048000n, limit: 9223372036854771712n, failcnt: 0n },
    swap: { usage: 1536000n, max: 2048000n, limit: 9223372036854771712n },
    kernel: { usage: 100n },
    kernelTcp: {},
  },
  hugetlb: [{ pagesize: "2MB", usage: 0n, max: 0n, failcnt: 0n }],
  blkio: {
    ioServiceBytesRecursive: [{ op: "Read", device: "", major: 8n, minor: 0n, value: 4096n }],
  },
};

interface FakeTask extends MonitoredTask {
  calls: number;
  /** Make the shim connection close, as when the shim dies. */
  disconnect(): void;
}

/** A task whose shim answers Stats with `answer` (or throws what it throws). */
function fakeTask(namespace: string, id: string, answer: () => Any | Promise<Any>): FakeTask {
  let disconnect = () => {};
  const closed = new Promise<void>((resolve) => disconnect = resolve);
  const task: FakeTask = {
    namespace,
    id,
    calls: 0,
    disconnect: () => disconnect(),
    shim: {
      closed,
      async call(_method, input, options) {
        task.calls++;
        assert.equal(input.id, id);
        const timeoutMs = options?.timeoutMs ?? Infinity;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, reject) => {
          if (timeoutMs !== Infinity) {
            timer = setTimeout(() => reject(new Error("deadline exceeded")), timeoutMs);
          }
        });
        try {
          const stats = await Promise.race([Promise.resolve().then(answer), timeout]);
          return create(StatsResponseSchema, { stats });
        } finally {
          clearTimeout(timer);
        }
      },
    } satisfies StatsSource,
  };
  return task;
}

async function setup(mode: "v1" | "v2" = "v1", options: { timeoutMs?: number } = {}) {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const monitor = new CgroupsMonitor({ mode, log, ...options });
  const registry = new Registry();
  await monitor.registerMetrics(registry);
  return { monitor, registry, lines };
}

/** The sample lines of the scrape (no HELP/TYPE). */
async function series(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split("\n").filter((l) => l !== "" && !l.startsWith("#"));
}

Deno.test("decodeStats: v1 and v2 by type URL, with or without a prefix", () => {
  const a = decodeStats(v1Any({ pids: { current: 2n } }));
  assert.equal(a.version, "v1");
  assert.equal(a.version === "v1" && a.metrics.pids?.current, 2n);
  const b = decodeStats(v1Any({ pids: { current: 3n } }, "type.googleapis.com/"));
  assert.equal(b.version === "v1" && b.metrics.pids?.current, 3n);
  const c = decodeStats(v2Any({ cpu: { usageUsec: 7n } }));
  assert.equal(c.version === "v2" && c.metrics.cpu?.usageUsec, 7n);
  assert.throws(
    () => decodeStats({ typeUrl: "containerd.v1.Nope", value: new Uint8Array() }),
    /decode task stats: unsupported type "containerd\.v1\.Nope"/,
  );
});

Deno.test("metric tables: containerd's names, unique, gauges only", () => {
  for (const table of [V1_METRICS, V2_METRICS]) {
    const names = table.map((m) => m.name);
    assert.equal(new Set(names).size, names.length, "duplicate family");
    for (const name of names) assert.match(name, /^container_[a-z0-9_]+$/);
  }
  const v1Names = V1_METRICS.map((m) => m.name);
  for (
    const name of [
      "container_pids_limit",
      "container_pids_current",
      "container_cpu_total_nanoseconds",
      "container_cpu_kernel_nanoseconds",
      "container_cpu_user_nanoseconds",
      "container_per_cpu_nanoseconds",
      "container_cpu_throttle_periods_total",
      "container_cpu_throttled_periods_total",
      "container_cpu_throttled_time_nanoseconds",
      "container_memory_cache_bytes",
      "container_memory_hierarchical_memsw_limit_bytes",
      "container_memory_total_unevictable_bytes",
      "container_memory_usage_failcnt_total",
      "container_memory_usage_limit_bytes",
      "container_memory_usage_max_bytes",
      "container_memory_usage_usage_bytes",
      "container_memory_kerneltcp_usage_bytes",
      "container_hugetlb_usage_bytes",
      "container_hugetlb_failcnt_total",
      "container_blkio_io_service_bytes_recursive_bytes",
      "container_blkio_sectors_recursive_total",
    ]
  ) assert.ok(v1Names.includes(name), name);
  // containerd 1.6: 2 pids + 7 cpu + 48 memory + 3 hugetlb + 7 blkio.
  assert.equal(V1_METRICS.length, 67);
  const v2Names = V2_METRICS.map((m) => m.name);
  for (
    const name of [
      "container_pids_current",
      "container_cpu_usage_usec_microseconds",
      "container_cpu_user_usec_microseconds",
      "container_cpu_system_usec_microseconds",
      "container_cpu_nr_throttled_total",
      "container_memory_usage_bytes",
      "container_memory_usage_limit_bytes",
      "container_memory_swap_limit_bytes",
      "container_memory_thp_collapse_alloc_bytes",
      "container_memory_oom_total",
      "container_io_rbytes_bytes",
      "container_io_wios_total",
    ]
  ) assert.ok(v2Names.includes(name), name);
  // containerd 1.6: 2 pids + 6 cpu + 36 memory + 4 io.
  assert.equal(V2_METRICS.length, 48);
});

Deno.test("samplesOf: absent sections give no samples, present ones their values", () => {
  const empty = samplesOf(decodeStats(v1Any({})));
  assert.deepEqual([...empty.values()].flat(), []);
  const full = samplesOf(decodeStats(v1Any(V1_SLEEP)));
  assert.deepEqual(full.get("container_per_cpu_nanoseconds"), [
    { value: 4000000, labels: ["0"] },
    { value: 211000, labels: ["1"] },
  ]);
  assert.deepEqual(full.get("container_memory_kerneltcp_limit_bytes"), [
    { value: 0, labels: [] },
  ]);
  assert.deepEqual(full.get("container_blkio_io_service_bytes_recursive_bytes"), [
    { value: 4096, labels: ["Read", "", "8", "0"] },
  ]);
  assert.deepEqual(full.get("container_blkio_io_serviced_recursive_total"), []);
  assert.deepEqual(full.get("container_hugetlb_usage_bytes"), [{ value: 0, labels: ["2MB"] }]);
});

Deno.test("CgroupsMonitor v1: containerd's families, labels sorted, runtime label", async () => {
  const { monitor, registry } = await setup();
  assert.ok(isMetricsContributor(monitor));
  assert.equal(await registry.metrics(), "\n", "no container_* family before any task");
  monitor.monitor(fakeTask("ns1", "c1", () => v1Any(V1_SLEEP)), {
    runtime: "io.containerd.runc.v2",
  });
  const text = await registry.metrics();
  const id = `container_id="c1",namespace="ns1",runtime="io.containerd.runc.v2"`;
  for (
    const line of [
      "# HELP container_pids_current The current number of pids",
      "# TYPE container_pids_current gauge",
      `container_pids_current{${id}} 1`,
      `container_pids_limit{${id}} 0`,
      "# HELP container_cpu_total_nanoseconds The total cpu time",
      `container_cpu_total_nanoseconds{${id}} 4211000`,
      `container_cpu_kernel_nanoseconds{${id}} 1000000`,
      `container_cpu_user_nanoseconds{${id}} 2000000`,
      `container_per_cpu_nanoseconds{container_id="c1",cpu="0",namespace="ns1",` +
      `runtime="io.containerd.runc.v2"} 4000000`,
      `container_per_cpu_nanoseconds{container_id="c1",cpu="1",namespace="ns1",` +
      `runtime="io.containerd.runc.v2"} 211000`,
      "# HELP container_memory_usage_usage_bytes The memory usage",
      `container_memory_usage_usage_bytes{${id}} 1536000`,
      "# HELP container_memory_usage_limit_bytes The memory limit",
      `container_memory_usage_limit_bytes{${id}} 9223372036854772000`,
      "# HELP container_memory_usage_max_bytes The memory maximum usage",
      `container_memory_usage_max_bytes{${id}} 2048000`,
      "# HELP container_memory_usage_failcnt_total The usage failcnt",
      "# HELP container_memory_swap_max_bytes The swap maximum usage",
      "# HELP container_memory_cache_bytes The cache amount used",
      "# HELP container_memory_dirty_bytes The dirty amount",
      `container_memory_rss_bytes{${id}} 270336`,
      `container_hugetlb_usage_bytes{container_id="c1",namespace="ns1",page="2MB",` +
      `runtime="io.containerd.runc.v2"} 0`,
      "# HELP container_blkio_io_service_bytes_recursive_bytes " +
      "The blkio io service bytes recursive",
      `container_blkio_io_service_bytes_recursive_bytes{container_id="c1",device="",major="8",` +
      `minor="0",namespace="ns1",op="Read",runtime="io.containerd.runc.v2"} 4096`,
    ]
  ) assert.ok(text.split("\n").includes(line), `missing ${line}\n${text}`);
  // Process and gRPC metrics stay the server's; this registry holds only the monitor's.
  assert.equal(registry.getMetricsAsArray().length, V1_METRICS.length);
});

Deno.test("CgroupsMonitor v2: the v2 families from v2 stats", async () => {
  const { monitor, registry } = await setup("v2");
  monitor.monitor(
    fakeTask("ns2", "web", () =>
      v2Any({
        pids: { current: 3n, limit: 100n },
        cpu: { usageUsec: 1500n, userUsec: 1000n, systemUsec: 500n },
        memory: { usage: 4096n, usageLimit: 8192n, anon: 1024n },
        memoryEvents: { oom: 2n },
        io: { usage: [{ major: 259n, minor: 0n, rbytes: 10n, wbytes: 20n, rios: 1n, wios: 2n }] },
      })),
  );
  const lines = await series(registry);
  const id = `container_id="web",namespace="ns2"`;
  for (
    const line of [
      `container_pids_current{${id}} 3`,
      `container_pids_limit{${id}} 100`,
      `container_cpu_usage_usec_microseconds{${id}} 1500`,
      `container_cpu_user_usec_microseconds{${id}} 1000`,
      `container_cpu_system_usec_microseconds{${id}} 500`,
      `container_memory_usage_bytes{${id}} 4096`,
      `container_memory_usage_limit_bytes{${id}} 8192`,
      `container_memory_anon_bytes{${id}} 1024`,
      `container_memory_oom_total{${id}} 2`,
      `container_io_rbytes_bytes{${id.replace(",", ',major="259",minor="0",')}} 10`,
      `container_io_wios_total{${id.replace(",", ',major="259",minor="0",')}} 2`,
    ]
  ) assert.ok(lines.includes(line), `missing ${line}\n${lines.join("\n")}`);
  const text = await registry.metrics();
  assert.match(text, /# HELP container_pids_current The current number of pids \(cgroup v2\)/);
});

Deno.test("CgroupsMonitor: a failing or slow task is skipped and logged at debug", async () => {
  const { monitor, registry, lines } = await setup("v1", { timeoutMs: 50 });
  monitor.monitor(fakeTask("ns", "ok", () => v1Any(V1_SLEEP)));
  monitor.monitor(
    fakeTask("ns", "broken", () => {
      throw new Error("cgroups: cgroup deleted");
    }),
  );
  monitor.monitor(fakeTask("ns", "slow", () => new Promise<Any>(() => {})));
  monitor.monitor(fakeTask("ns", "v2", () => v2Any({ pids: { current: 1n } })));
  const started = performance.now();
  const got = await series(registry);
  assert.ok(performance.now() - started < 2_000, "a slow shim holds the scrape up");
  assert.ok(got.includes(`container_pids_current{container_id="ok",namespace="ns"} 1`));
  assert.ok(!got.some((l) => /container_id="(broken|slow|v2)"/.test(l)), got.join("\n"));
  const log = lines.join("");
  assert.match(log, /level=debug msg="collect task stats failed".*id=broken.*cgroup deleted/);
  assert.match(log, /level=debug msg="collect task stats failed".*id=slow.*deadline exceeded/);
  assert.match(log, /level=debug msg="task stats skipped".*id=v2.*cgroup v2 stats on a cgroup v1/);
  assert.ok(!/level=(warn|error)/.test(log), log);
});

Deno.test("CgroupsMonitor: one Stats call per task per scrape", async () => {
  const { monitor, registry } = await setup();
  const a = fakeTask("ns", "a", () => v1Any(V1_SLEEP));
  const b = fakeTask("ns", "b", () => v1Any(V1_SLEEP));
  monitor.monitor(a);
  monitor.monitor(b);
  monitor.monitor(a); // again: a no-op
  await registry.metrics();
  assert.equal(a.calls, 1);
  assert.equal(b.calls, 1);
  await Promise.all([registry.metrics(), registry.metrics()]);
  assert.ok(a.calls <= 3, `calls: ${a.calls}`);
});

Deno.test("CgroupsMonitor: stop and a closed shim remove the series", async () => {
  const { monitor, registry } = await setup();
  const a = fakeTask("ns", "a", () => v1Any(V1_SLEEP));
  const b = fakeTask("ns", "b", () => v1Any(V1_SLEEP));
  monitor.monitor(a);
  monitor.monitor(b);
  assert.deepEqual(monitor.watched().sort(), ["ns/a", "ns/b"]);
  monitor.stop(a);
  // Stopping an older task object of the same id leaves the current one alone.
  monitor.stop(fakeTask("ns", "b", () => v1Any({})));
  let got = await series(registry);
  assert.ok(!got.some((l) => l.includes(`container_id="a"`)));
  assert.ok(got.includes(`container_pids_current{container_id="b",namespace="ns"} 1`));
  b.disconnect();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(monitor.watched(), []);
  got = await series(registry);
  assert.deepEqual(got, []);
  assert.equal(await registry.metrics(), "\n", "families go away with the last task");
  // ... and come back with the next one.
  monitor.monitor(fakeTask("ns", "c", () => v1Any(V1_SLEEP)));
  assert.ok(
    (await series(registry)).includes(`container_pids_current{container_id="c",namespace="ns"} 1`),
  );
});

Deno.test("CgroupsMonitor: tasks watched before registerMetrics are reported", async () => {
  const monitor = new CgroupsMonitor({ mode: "v1", log: silentLogger() });
  monitor.monitor(fakeTask("ns", "early", () => v1Any(V1_SLEEP)));
  const registry = new Registry();
  await monitor.registerMetrics(registry);
  assert.ok(
    (await series(registry)).includes(
      `container_pids_current{container_id="early",namespace="ns"} 1`,
    ),
  );
});

Deno.test("CgroupsMonitor: no_prometheus registers nothing", async () => {
  const monitor = new CgroupsMonitor({ mode: "v1", log: silentLogger(), prometheus: false });
  const registry = new Registry();
  await monitor.registerMetrics(registry);
  monitor.monitor(fakeTask("ns", "a", () => v1Any(V1_SLEEP)));
  assert.equal(await registry.metrics(), "\n");
});

Deno.test("CgroupsMonitor: a family name already taken is logged, the rest still work", async () => {
  const lines: string[] = [];
  const monitor = new CgroupsMonitor({
    mode: "v1",
    log: createLogger({ write: (l) => lines.push(l) }),
  });
  const registry = new Registry();
  const { Gauge } = await import("prom-client");
  new Gauge({ name: "container_pids_limit", help: "someone else's", registers: [registry] });
  await monitor.registerMetrics(registry);
  monitor.monitor(fakeTask("ns", "a", () => v1Any(V1_SLEEP)));
  assert.match(lines.join(""), /cannot register task metric.*container_pids_limit/);
  assert.ok(
    (await series(registry)).includes(`container_pids_current{container_id="a",namespace="ns"} 1`),
  );
});

Deno.test("familiesOf and hostCgroupMode", async () => {
  assert.equal(familiesOf("v1"), V1_METRICS);
  assert.equal(familiesOf("v2"), V2_METRICS);
  assert.equal(STATS_TIMEOUT_MS, 2_000);
  const dir = await Deno.makeTempDir();
  try {
    const legacy = `${dir}/legacy`;
    await Deno.writeTextFile(
      legacy,
      "22 1 0:21 / /sys rw - sysfs sysfs rw\n" +
        "31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
        "32 31 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n" +
        "33 31 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
    );
    assert.equal(await hostCgroupMode(legacy), "v1");
    const unified = `${dir}/unified`;
    await Deno.writeTextFile(
      unified,
      "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
    );
    assert.equal(await hostCgroupMode(unified), "v2");
    assert.equal(await hostCgroupMode(`${dir}/missing`), "v1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // This machine: whatever it is, the answer is one of the two.
  assert.ok(["v1", "v2"].includes(await hostCgroupMode()));
});
