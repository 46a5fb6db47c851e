/**
 * The cgroups task monitor end to end: the real binary with a TCP metrics listener, Debian's
 * ctr 1.6.20, containerd-shim-runc-v2 and runc.
 *
 * - Before any container, `/v1/metrics` has no `container_*` series.
 * - `ctr run -d ... c1 /bin/sleep 1000`: the scrape shows c1's pids (1), CPU time (> 0) and
 *   memory usage (> 0) under containerd's names for the host's cgroup mode, labelled
 *   `container_id`, `namespace` and, as containerd does for a created task, `runtime`.
 * - A daemon restarted while c1 runs reports it again (reconnected tasks carry no `runtime`
 *   label, as in containerd).
 * - `ctr tasks kill -s SIGKILL` + `ctr tasks rm`: c1's series are gone.
 *
 * The namespace is unique per run: runc keeps its state under /run/containerd/runc/<ns>,
 * which the real containerd on this machine shares.
 */
import assert from "node:assert/strict";
import {
  containersMissing,
  ctr,
  lines,
  makeTestImageTool,
  ok,
  reapNamespace,
  sh,
  startDaemon,
  type TestDaemon,
  uniqueNamespace,
  waitFor,
} from "./harness.ts";

const MAKE_TEST_IMAGE = makeTestImageTool();
const IMAGE = "docker.io/library/testbox:latest";
const RUNTIME = "io.containerd.runc.v2";
/** A line of a `container_*` family: its HELP, its TYPE or a sample. */
const CONTAINER_FAMILY = /^(# (HELP|TYPE) )?container_/;

const skip = containersMissing();
if (skip) console.error(`monitor_test: ${skip}`);

/** The host's cgroup mode, as the monitor decides it: cgroup2 at /sys/fs/cgroup is v2. */
async function hostMode(): Promise<"v1" | "v2"> {
  const mounts = lines(await Deno.readTextFile("/proc/self/mountinfo"));
  const own = mounts.filter((l) => l.split(" ")[4] === "/sys/fs/cgroup").at(-1);
  return own?.split(" - ")[1]?.startsWith("cgroup2 ") ? "v2" : "v1";
}

/** Scrape the daemon's metrics endpoint (its bound address is in the boot log). */
async function scrape(daemon: TestDaemon): Promise<string[]> {
  const address = [...daemon.log().matchAll(/metrics server serving.*address=(\S+)/g)].at(-1)
    ?.[1];
  assert.ok(address, daemon.log());
  const res = await fetch(`http://${address}/v1/metrics`);
  assert.equal(res.status, 200);
  return lines(await res.text());
}

/** The value of the one series `name{labels}`; undefined when absent. */
function valueOf(metrics: string[], name: string, labels: string): number | undefined {
  const prefix = `${name}{${labels}} `;
  const found = metrics.filter((l) => l.startsWith(prefix));
  assert.ok(found.length <= 1, found.join("\n"));
  return found[0] === undefined ? undefined : Number(found[0].slice(prefix.length));
}

Deno.test({
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  name: "cgroups monitor: a running container's metrics on /v1/metrics, gone after tasks rm",
  async fn() {
    const namespace = uniqueNamespace("monitor");
    const dir = await Deno.makeTempDir({ prefix: "cts-monitor-" });
    const config = `version = 2
[metrics]
  address = "127.0.0.1:0"
`;
    const mode = await hostMode();
    const cpuName = mode === "v1"
      ? "container_cpu_total_nanoseconds"
      : "container_cpu_usage_usec_microseconds";
    const memoryName = mode === "v1"
      ? "container_memory_usage_usage_bytes"
      : "container_memory_usage_bytes";
    const created = `container_id="c1",namespace="${namespace}",runtime="${RUNTIME}"`;
    const reconnected = `container_id="c1",namespace="${namespace}"`;
    let daemon: TestDaemon | undefined;
    try {
      daemon = await startDaemon({ dir, config });
      const a = daemon.address;
      const before = await scrape(daemon);
      assert.ok(!before.some((l) => CONTAINER_FAMILY.test(l)), before.join("\n"));

      await ok(sh(MAKE_TEST_IMAGE as string, [`${dir}/img.tar`]), "make-test-image");
      await ok(ctr(a, ["images", "import", `${dir}/img.tar`], { namespace }));
      await ok(ctr(a, ["run", "-d", IMAGE, "c1", "/bin/sleep", "1000"], { namespace }));

      let metrics = await scrape(daemon);
      assert.equal(valueOf(metrics, "container_pids_current", created), 1, metrics.join("\n"));
      assert.ok((valueOf(metrics, cpuName, created) ?? 0) > 0, metrics.join("\n"));
      assert.ok((valueOf(metrics, memoryName, created) ?? 0) > 0, metrics.join("\n"));
      assert.ok(metrics.includes(`# TYPE container_pids_current gauge`));
      if (mode === "v1") {
        assert.ok(
          metrics.some((l) =>
            l.startsWith(
              `container_per_cpu_nanoseconds{container_id="c1",cpu="0",namespace="${namespace}",`,
            )
          ),
          metrics.join("\n"),
        );
      }

      // A restarted daemon watches the reconnected task again.
      await daemon.stop();
      daemon = await startDaemon({ dir, config });
      metrics = await scrape(daemon);
      assert.equal(
        valueOf(metrics, "container_pids_current", reconnected),
        1,
        metrics.filter((l) => l.startsWith("container_pids")).join("\n"),
      );
      assert.ok((valueOf(metrics, cpuName, reconnected) ?? 0) > 0);

      const b = daemon.address;
      await ok(ctr(b, ["tasks", "kill", "-s", "SIGKILL", "c1"], { namespace }));
      await waitFor("c1 to stop", async () => {
        const out = await ok(ctr(b, ["tasks", "ls"], { namespace }));
        return /\bc1\s+\d+\s+STOPPED/.test(out.stdout);
      });
      await ok(ctr(b, ["tasks", "rm", "c1"], { namespace }));
      metrics = await scrape(daemon);
      assert.ok(!metrics.some((l) => l.includes(`container_id="c1"`)), metrics.join("\n"));
      assert.ok(!metrics.some((l) => CONTAINER_FAMILY.test(l)), "families left after the last");
      await ok(ctr(b, ["containers", "rm", "c1"], { namespace }));
    } finally {
      await reapNamespace(namespace, daemon);
      await daemon?.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
