/**
 * `containerd-ts status`: is the daemon serving, which one is it, how long has it run, and
 * how did each plugin's init go — asked over the daemon's own API with the client.
 *
 * - Serving: Health.Check; a socket nobody answers on prints one line and exits 1, as does a
 *   daemon that answers NOT_SERVING (it is stopping).
 * - Version and revision (Version), UUID and pid (Introspection.Server).
 * - Uptime: the daemon's `/debug/vars` `uptimeSeconds` when `--debug-address` (or the
 *   config's `[debug] address`) is given; else, when the daemon's pid is in this pid
 *   namespace (Introspection.Server `pidns` equals ours), computed from the start time in
 *   `/proc/<pid>/stat` and `/proc/uptime`; else "unknown". No RPC carries uptime, and none
 *   is added for it.
 * - Plugins (Introspection.Plugins): type, id, status (ok/skip/error), with skip and error
 *   reasons in full. Init time is not in containerd's Plugin message; it is shown from
 *   `/debug/vars` when the debug endpoint is given, else the output says how to get it.
 *
 * @example
 * ```ts
 * import { collectStatus, renderStatus } from "./status.ts";
 * const report = await collectStatus({ address: "/run/containerd-ts/containerd-ts.sock" });
 * console.log(renderStatus(report));
 * ```
 * @module
 */
import * as http from "node:http";
import type { CommandContext } from "./cli.ts";
import { loadConfig } from "./config.ts";
import { connect, type PluginInfo, type ServerInfo, type VersionInfo } from "../client/mod.ts";
import { NotImplementedError } from "./errdefs.ts";
import { connectUnix } from "./unix_socket.ts";

/** Clock ticks per second in /proc/<pid>/stat (the kernel's USER_HZ, 100 on Linux ABIs). */
const USER_HZ = 100;

/** One plugin's line in `/debug/vars` (server/debug.ts PluginVar). */
export interface DebugPlugin {
  uri: string;
  status: string;
  initMs: number;
  error?: string;
}

/** Where the uptime came from, and its value. */
export type Uptime =
  | { seconds: number; source: string }
  | { seconds?: undefined; reason: string };

/** Everything `status` prints, gathered first so rendering is a pure function. */
export interface StatusReport {
  address: string;
  /** "SERVING", "NOT_SERVING", ... or "UNREACHABLE". */
  health: string;
  /** Why the daemon is not reachable (one line). */
  unreachable?: string;
  version?: VersionInfo;
  server?: ServerInfo;
  uptime?: Uptime;
  plugins?: PluginInfo[];
  /** Init times by plugin URI, from /debug/vars. */
  initMs?: Map<string, number>;
  /** The debug endpoint asked, if any. */
  debugAddress?: string;
  /** Why /debug/vars could not be read. */
  debugError?: string;
}

/** Options of {@link collectStatus}. */
export interface CollectOptions {
  /** The daemon's gRPC socket. */
  address: string;
  /** The daemon's `[debug] address` (unix path or host:port), for init times and uptime. */
  debugAddress?: string;
  /** Deadline of each call. Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * Seconds since a process started, from its `/proc/<pid>/stat` text and `/proc/uptime`.
 *
 * @example
 * ```ts
 * import { processUptime } from "./status.ts";
 * // starttime (field 22) is 1000 ticks = 10 s after boot; the system is up 70 s.
 * const stat = "42 (deno) S" + " 0".repeat(18) + " 1000 0 0";
 * processUptime(stat, "70.00 123.00"); // 60
 * ```
 */
export function processUptime(statText: string, uptimeText: string): number | undefined {
  const close = statText.lastIndexOf(")");
  if (close < 0) return undefined;
  // Fields after "(comm)" start at field 3 (state); starttime is field 22.
  const fields = statText.slice(close + 1).trim().split(/\s+/);
  const ticks = Number(fields[22 - 3]);
  const systemUp = Number(uptimeText.trim().split(/\s+/)[0]);
  if (!Number.isFinite(ticks) || !Number.isFinite(systemUp)) return undefined;
  return Math.max(0, systemUp - ticks / USER_HZ);
}

/** `1d 2h 3m 4s`, dropping leading zero units. */
export function formatDuration(seconds: number): string {
  let s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  s -= days * 86400;
  const hours = Math.floor(s / 3600);
  s -= hours * 3600;
  const minutes = Math.floor(s / 60);
  s -= minutes * 60;
  const parts: string[] = [];
  if (days) parts.push(`${days}d`);
  if (days || hours) parts.push(`${hours}h`);
  if (days || hours || minutes) parts.push(`${minutes}m`);
  parts.push(`${s}s`);
  return parts.join(" ");
}

async function ownPidNamespace(): Promise<bigint | undefined> {
  try {
    const ino = (await Deno.stat("/proc/self/ns/pid")).ino;
    return ino === null ? undefined : BigInt(ino);
  } catch {
    return undefined;
  }
}

/** Uptime of the daemon from /proc when its pid is in our pid namespace. */
async function procUptime(server: ServerInfo): Promise<Uptime> {
  const ours = await ownPidNamespace();
  if (ours === undefined) return { reason: "unknown (no /proc/self/ns/pid here)" };
  if (server.pidns === 0n) {
    return { reason: "unknown (the daemon did not report its pid namespace)" };
  }
  if (server.pidns !== ours) {
    return { reason: `unknown (daemon pid ${server.pid} is in another pid namespace)` };
  }
  try {
    const [stat, up] = await Promise.all([
      Deno.readTextFile(`/proc/${server.pid}/stat`),
      Deno.readTextFile("/proc/uptime"),
    ]);
    const seconds = processUptime(stat, up);
    if (seconds === undefined) return { reason: `unknown (unreadable /proc/${server.pid}/stat)` };
    return { seconds, source: `/proc/${server.pid}/stat` };
  } catch (err) {
    return { reason: `unknown (/proc/${server.pid}/stat: ${(err as Error).message})` };
  }
}

/** GET `/debug/vars` from a debug endpoint (unix socket path or host:port). */
export function fetchDebugVars(address: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const tcp = !address.includes("/") && /^(?:\[[^\]]+\]|[^:]+):\d+$/.test(address);
    const target = tcp
      ? {
        host: address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, ""),
        port: Number(address.slice(address.lastIndexOf(":") + 1)),
      }
      // Deno's own unix connection: node:net's closes its descriptor twice in Deno 2.9.3.
      : { createConnection: () => connectUnix(address.replace(/^unix:\/\//, "")) };
    const req = http.get({ ...target, path: "/debug/vars", timeout: timeoutMs }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("error", reject);
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new Error(`bad JSON: ${(err as Error).message}`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

/**
 * Ask the daemon everything `status` shows. Never throws for an unreachable daemon: the
 * report says `health: "UNREACHABLE"` and why.
 *
 * @example
 * ```ts
 * import { collectStatus } from "./status.ts";
 * const report = await collectStatus({ address: "/run/containerd-ts/containerd-ts.sock" });
 * console.log(report.health);
 * ```
 */
export async function collectStatus(options: CollectOptions): Promise<StatusReport> {
  const report: StatusReport = { address: options.address, health: "UNREACHABLE" };
  if (options.debugAddress) report.debugAddress = options.debugAddress;
  await using client = connect({
    address: options.address,
    timeoutMs: options.timeoutMs ?? 5000,
  });
  try {
    report.health = await client.health.check();
  } catch (err) {
    if (err instanceof NotImplementedError) {
      // No health service (disabled): the daemon answered, so judge by Version below.
      report.health = "SERVING";
    } else {
      report.unreachable = err instanceof Error ? err.message : String(err);
      return report;
    }
  }
  try {
    report.version = await client.version.get();
    report.server = await client.introspection.server();
    report.plugins = await client.introspection.plugins();
  } catch (err) {
    if (report.version === undefined) {
      report.health = "UNREACHABLE";
      report.unreachable = err instanceof Error ? err.message : String(err);
      return report;
    }
  }
  if (options.debugAddress) {
    try {
      const vars = await fetchDebugVars(options.debugAddress, options.timeoutMs ?? 5000) as {
        uptimeSeconds?: unknown;
        plugins?: unknown;
      };
      if (typeof vars.uptimeSeconds === "number") {
        report.uptime = { seconds: vars.uptimeSeconds, source: "/debug/vars" };
      }
      if (Array.isArray(vars.plugins)) {
        report.initMs = new Map(
          (vars.plugins as DebugPlugin[])
            .filter((p) => typeof p?.uri === "string" && typeof p.initMs === "number")
            .map((p) => [p.uri, p.initMs]),
        );
      }
    } catch (err) {
      report.debugError = (err as Error).message;
    }
  }
  if (report.uptime === undefined && report.server) report.uptime = await procUptime(report.server);
  return report;
}

function formatMs(ms: number): string {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  return rows.map((row) =>
    row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ")
      .trimEnd() + "\n"
  ).join("");
}

/**
 * The text `status` prints for a report; the first line says serving or not.
 *
 * @example
 * ```ts
 * import { renderStatus } from "./status.ts";
 * renderStatus({ address: "/x.sock", health: "UNREACHABLE", unreachable: "no such socket" });
 * // "containerd-ts status: not reachable at /x.sock: no such socket\n"
 * ```
 */
export function renderStatus(report: StatusReport): string {
  if (report.health === "UNREACHABLE") {
    const why = report.unreachable ?? "no answer";
    const where = why.includes(report.address) ? "" : ` at ${report.address}`;
    return `containerd-ts status: not reachable${where}: ${why}\n`;
  }
  if (report.health !== "SERVING") {
    return `containerd-ts status: not serving (${report.health}) at ${report.address}\n`;
  }
  let out = `containerd-ts status: serving\n`;
  const facts: [string, string][] = [["address", report.address]];
  if (report.version) {
    facts.push(["version", `${report.version.version} (revision ${report.version.revision})`]);
  }
  if (report.server) {
    facts.push(["uuid", report.server.uuid]);
    facts.push(["pid", String(report.server.pid)]);
  }
  if (report.uptime) {
    facts.push([
      "uptime",
      report.uptime.seconds === undefined
        ? report.uptime.reason
        : `${formatDuration(report.uptime.seconds)} (from ${report.uptime.source})`,
    ]);
  }
  const plugins = report.plugins ?? [];
  const count = (s: string) => plugins.filter((p) => p.status === s).length;
  facts.push([
    "plugins",
    `${plugins.length}: ${count("ok")} ok, ${count("skip")} skip, ${count("error")} error`,
  ]);
  for (const [key, value] of facts) out += `  ${key.padEnd(8)} ${value}\n`;
  if (plugins.length > 0) {
    out += "\n";
    const rows = [["TYPE", "ID", "STATUS", "INIT"]];
    for (const p of plugins) {
      const ms = report.initMs?.get(p.uri);
      rows.push([p.type, p.id, p.status, ms === undefined ? "-" : formatMs(ms)]);
    }
    out += table(rows);
  }
  const reasons = plugins.filter((p) => p.status !== "ok");
  if (reasons.length > 0) {
    out += "\n";
    for (const p of reasons) {
      const message = (p.error?.message ?? "").replace(/\n/g, "\n    ");
      out += `${p.uri}: ${p.status}: ${message}\n`;
    }
  }
  if (report.debugError !== undefined) {
    out += `\ninit times: debug endpoint ${report.debugAddress}: ${report.debugError}\n`;
  } else if (report.initMs === undefined) {
    out += "\ninit times: shown only through the debug endpoint; pass --debug-address " +
      "with the daemon's [debug] address\n";
  }
  return out;
}

/**
 * The `status` command: address from `-a` or the config's `[grpc] address`, debug address
 * from `--debug-address` or the config's `[debug] address`. Exit 0 when serving, 1 when not
 * reachable or not serving.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * // The CLI's `status` entry calls runStatus with the parsed flags:
 * Deno.exitCode = await main(["status", "-a", "/run/containerd-ts/containerd-ts.sock"]);
 * ```
 */
export async function runStatus(ctx: CommandContext): Promise<number> {
  const str = (name: string): string | undefined => {
    const value = ctx.values[name];
    return typeof value === "string" ? value : undefined;
  };
  const { config } = await loadConfig({ config: str("config"), address: str("address") }, ctx.env);
  const debugAddress = str("debug-address") ?? (config.debug.address || undefined);
  const report = await collectStatus({
    address: config.grpc.address,
    ...(debugAddress === undefined ? {} : { debugAddress }),
  });
  const text = renderStatus(report);
  if (report.health === "SERVING") {
    ctx.out(text);
    return 0;
  }
  ctx.err(text);
  return 1;
}
