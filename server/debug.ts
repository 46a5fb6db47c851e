/**
 * The debug endpoint: `/debug/vars` and the profiles Deno can really produce.
 *
 * containerd serves Go's expvar and net/http/pprof on its debug socket. Deno has no Go
 * runtime, so this serves the V8 equivalents and says plainly what has none:
 *
 * - `GET /debug/vars`: JSON with memory, uptime, pid, plugin init status and time, RPCs in
 *   flight and Deno/V8 versions (see {@link debugVars}).
 * - `GET /debug/pprof/heap`: a V8 heap snapshot (`.heapsnapshot`, Chrome DevTools format)
 *   from node:v8 `getHeapSnapshot()` — works under Deno 2.9.3.
 * - `GET /debug/pprof/profile?seconds=N`: a V8 CPU profile (`.cpuprofile` JSON) taken
 *   through a node:inspector Session (`Profiler.start` / `Profiler.stop`) — works under Deno
 *   2.9.3 without `--inspect`.
 * - `GET /debug/pprof/cmdline`: the command line, NUL-separated, as Go serves it.
 * - `goroutine`, `threadcreate`, `block`, `mutex`, `allocs`, `trace`, `symbol`: Go runtime
 *   features with no Deno equivalent; they answer 501 with the reason, never made-up output.
 *
 * {@link diagnosticDump} renders the same vars as text for the log on SIGUSR1 (containerd
 * dumps goroutine stacks there).
 *
 * @example
 * ```ts
 * import { debugVars, startDebugServer } from "./debug.ts";
 * import { PluginSet } from "./plugin.ts";
 * import { silentLogger } from "./log.ts";
 * const plugins = new PluginSet();
 * const started = Date.now();
 * const source = { vars: () => debugVars({ started, plugins, inFlight: () => 0 }) };
 * const debug = await startDebugServer({
 *   address: "/run/containerd-ts/debug.sock", uid: 0, gid: 0, source, log: silentLogger(),
 * });
 * await debug.close();
 * ```
 * @module
 */
// node:http and node:inspector are loaded when the debug server starts or a profile is taken:
// most daemons run without a debug address, and loading them costs boot time.
import type * as http from "node:http";
import type * as inspector from "node:inspector";
import type { Readable } from "node:stream";
import * as v8 from "node:v8";
import { listenHttp } from "./http_listen.ts";
import type { Logger } from "./log.ts";
import type { PluginSet } from "./plugin.ts";

/** Whatever supplies `/debug/vars`; the server builds one from {@link debugVars}. */
export interface DebugVarsSource {
  /** A JSON-serialisable snapshot, taken fresh on each call. */
  vars(): Record<string, unknown>;
}

/** One plugin's line in `/debug/vars` and the diagnostic dump. */
export interface PluginVar {
  uri: string;
  status: string;
  initMs: number;
  /** The skip or failure reason; absent when the plugin loaded. */
  error?: string;
}

/** Inputs of {@link debugVars}. */
export interface DebugVarsInput {
  /** When the daemon started, in milliseconds since the Unix epoch (`Date.now()` at boot). */
  started: number;
  /** The init results; each record becomes a {@link PluginVar}. */
  plugins: PluginSet;
  /** RPCs currently being served (Metrics.inFlight). */
  inFlight: () => number;
  /** More fields (e.g. from the server); the fields above win on a name clash. */
  extra?: () => Record<string, unknown>;
}

/**
 * The daemon's `/debug/vars`: `pid`, `startedAt`, `uptimeSeconds`, `cmdline`, `versions`
 * (deno, v8, typescript), `memory` (Deno.memoryUsage, bytes), `heapSpaces` (each V8 heap
 * space's size, used, available and resident bytes: whether the young generation has the size
 * the launcher's V8 flags ask for, and where the heap grew), `rpcsInFlight` and `plugins`
 * (uri, status, initMs, error). Go's expvar has `cmdline` and `memstats`; these are the Deno
 * facts an operator needs for the same questions.
 */
export function debugVars(input: DebugVarsInput): Record<string, unknown> {
  const plugins: PluginVar[] = input.plugins.records().map((record) => {
    const line: PluginVar = {
      uri: record.uri,
      status: record.status,
      initMs: Math.round(record.initMs * 1000) / 1000,
    };
    if (record.error) line.error = record.error.message;
    return line;
  });
  return {
    ...input.extra?.(),
    pid: Deno.pid,
    startedAt: new Date(input.started).toISOString(),
    uptimeSeconds: Math.round(Date.now() - input.started) / 1000,
    cmdline: [Deno.execPath(), ...Deno.args],
    versions: { deno: Deno.version.deno, v8: Deno.version.v8, typescript: Deno.version.typescript },
    memory: Deno.memoryUsage(),
    heapSpaces: heapSpaces(),
    rpcsInFlight: input.inFlight(),
    plugins,
  };
}

/** One V8 heap space in `/debug/vars`, in bytes. */
export interface HeapSpaceVar {
  size: number;
  used: number;
  available: number;
  physical: number;
}

function heapSpaces(): Record<string, HeapSpaceVar> {
  const spaces: Record<string, HeapSpaceVar> = {};
  for (const space of v8.getHeapSpaceStatistics()) {
    spaces[space.space_name] = {
      size: space.space_size,
      used: space.space_used_size,
      available: space.space_available_size,
      physical: space.physical_space_size,
    };
  }
  return spaces;
}

/** Options of {@link startDebugServer}. */
export interface DebugServerOptions {
  /** A unix socket path (absolute or containing "/") or `host:port`. */
  address: string;
  /** Owner of the unix socket; 0 leaves it as created. */
  uid: number;
  /** Group of the unix socket; 0 leaves it as created. */
  gid: number;
  source: DebugVarsSource;
  log: Logger;
}

/** A running debug endpoint. */
export interface DebugServer {
  /** The socket path, or `host:port` with the port actually bound. */
  readonly address: string;
  /** Stop serving; an in-flight CPU profile is stopped and its request dropped. */
  close(): Promise<void>;
}

/** Default and upper bound of `/debug/pprof/profile?seconds=`. */
const PROFILE_DEFAULT_SECONDS = 30;
const PROFILE_MAX_SECONDS = 300;

/** Go pprof profiles without a Deno/V8 equivalent, and why. */
const GO_ONLY: Readonly<Record<string, string>> = {
  goroutine: "goroutine stacks are a Go runtime feature; Deno runs JavaScript on one " +
    "event-loop thread. See rpcsInFlight in /debug/vars, or send SIGUSR1 for a " +
    "diagnostic dump in the log",
  threadcreate: "thread creation profiles are a Go runtime feature; Deno has no equivalent",
  block: "blocking profiles are a Go runtime feature (goroutines blocked on channels and " +
    "locks); Deno has no equivalent",
  mutex: "mutex contention profiles are a Go runtime feature; JavaScript has no mutexes",
  allocs: "Go's allocation sampling profile has no Deno equivalent here; use " +
    "/debug/pprof/heap for a V8 heap snapshot",
  trace: "the execution tracer is a Go runtime feature; use /debug/pprof/profile for a " +
    "V8 CPU profile",
  symbol: "symbol lookup serves Go's pprof tool; V8 profiles carry their function names",
};

/**
 * Serve the debug endpoints (see the module doc) over HTTP/1.1 on a unix socket (mode 0660,
 * owner uid/gid) or TCP address, as containerd's `[debug] address` does.
 */
export async function startDebugServer(options: DebugServerOptions): Promise<DebugServer> {
  const { log, source } = options;
  const closing = new AbortController();
  const state = { profiling: false };
  const http = await import("node:http");
  const server = http.createServer((req, res) => {
    handleDebug(req, res, { source, closing: closing.signal, state, log }).catch((err) => {
      log.error("serve debug request", { path: req.url, error: err });
      if (!res.headersSent) sendText(res, 500, `${messageOf(err)}\n`);
      else res.destroy();
    });
  });
  const listener = await listenHttp(server, {
    address: options.address,
    uid: options.uid,
    gid: options.gid,
  });
  log.info("debug server listening", { address: listener.address });
  return {
    address: listener.address,
    close: async () => {
      closing.abort();
      await listener.close();
    },
  };
}

interface HandlerContext {
  source: DebugVarsSource;
  closing: AbortSignal;
  /** One CPU profile at a time: profiling costs, and overlapping ones help nobody. */
  state: { profiling: boolean };
  log: Logger;
}

async function handleDebug(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ctx: HandlerContext,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const route = url.pathname;
  if (route !== "/debug/vars" && !route.startsWith("/debug/pprof")) {
    return sendText(res, 404, "404 page not found\n");
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return sendText(res, 405, `method ${req.method} not allowed on ${route}\n`);
  }
  if (route === "/debug/vars") {
    const body = JSON.stringify(ctx.source.vars(), null, 2) + "\n";
    res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
    res.end(req.method === "HEAD" ? undefined : body);
    return;
  }
  if (route === "/debug/pprof" || route === "/debug/pprof/") {
    return sendText(res, 200, pprofIndex());
  }
  const name = route.slice("/debug/pprof/".length);
  switch (name) {
    case "heap":
      return await sendHeapSnapshot(res);
    case "profile":
      return await sendCpuProfile(url, res, ctx);
    case "cmdline":
      return sendText(res, 200, await commandLine());
  }
  const reason = GO_ONLY[name];
  if (reason !== undefined) return sendText(res, 501, `${name}: not supported: ${reason}\n`);
  return sendText(res, 404, `Unknown profile: ${name}\n`);
}

function pprofIndex(): string {
  const notSupported = Object.entries(GO_ONLY)
    .map(([name, reason]) => `  ${name.padEnd(13)} ${reason}\n`)
    .join("");
  return `containerd-ts debug endpoints (Deno ${Deno.version.deno}, V8 ${Deno.version.v8})

Available:
  /debug/vars                     JSON: memory, uptime, pid, plugins (status, init time),
                                  RPCs in flight, versions
  /debug/pprof/heap               V8 heap snapshot (.heapsnapshot; Chrome DevTools > Memory).
                                  Forces a full GC and pauses the daemon while it is taken.
  /debug/pprof/profile?seconds=N  V8 CPU profile over N seconds (.cpuprofile JSON; Chrome
                                  DevTools or speedscope). Default ${PROFILE_DEFAULT_SECONDS}, integer 1..${PROFILE_MAX_SECONDS}.
  /debug/pprof/cmdline            the command line, NUL-separated

Not available (Go runtime profiles; these paths answer 501):
${notSupported}
Outputs are V8 formats, not pprof protobuf: \`go tool pprof\` cannot read them.
`;
}

async function sendHeapSnapshot(res: http.ServerResponse): Promise<void> {
  if (typeof v8.getHeapSnapshot !== "function") {
    return sendText(res, 501, "heap: not supported: node:v8 getHeapSnapshot is missing\n");
  }
  let snapshot: Readable;
  try {
    snapshot = v8.getHeapSnapshot();
  } catch (err) {
    const status = /not (yet )?(implemented|supported)/i.test(messageOf(err)) ? 501 : 500;
    return sendText(res, status, `heap: take a V8 heap snapshot: ${messageOf(err)}\n`);
  }
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-disposition": `attachment; filename="${fileStem("heap")}.heapsnapshot"`,
    "x-content-type-options": "nosniff",
  });
  // node's streams are loaded by the first snapshot, not at boot (they cost ~10 ms of it).
  const { pipeline } = await import("node:stream/promises");
  await pipeline(snapshot, res);
}

/** Parse `seconds`: absent → default; an integer 1..max; anything else is an error text. */
export function parseProfileSeconds(value: string | null): number | string {
  if (value === null || value === "") return PROFILE_DEFAULT_SECONDS;
  if (!/^\d+$/.test(value)) return `seconds must be an integer, got ${JSON.stringify(value)}`;
  const seconds = Number(value);
  if (seconds < 1 || seconds > PROFILE_MAX_SECONDS) {
    return `seconds must be between 1 and ${PROFILE_MAX_SECONDS}, got ${seconds}`;
  }
  return seconds;
}

async function sendCpuProfile(
  url: URL,
  res: http.ServerResponse,
  ctx: HandlerContext,
): Promise<void> {
  const seconds = parseProfileSeconds(url.searchParams.get("seconds"));
  if (typeof seconds === "string") return sendText(res, 400, `profile: ${seconds}\n`);
  if (ctx.state.profiling) {
    return sendText(res, 409, "profile: a CPU profile is already being taken; try later\n");
  }
  // Stop early when the client goes away or the server closes.
  const gone = new AbortController();
  res.once("close", () => gone.abort());
  const signal = AbortSignal.any([gone.signal, ctx.closing]);

  ctx.state.profiling = true;
  let profile: unknown;
  try {
    profile = await takeCpuProfile(seconds * 1000, signal);
  } catch (err) {
    const status = /not (yet )?(implemented|supported)/i.test(messageOf(err)) ? 501 : 500;
    return sendText(res, status, `profile: take a V8 CPU profile: ${messageOf(err)}\n`);
  } finally {
    ctx.state.profiling = false;
  }
  if (signal.aborted) {
    ctx.log.debug("cpu profile abandoned", { reason: "client or server went away" });
    res.destroy();
    return;
  }
  res.writeHead(200, {
    "content-type": "application/json",
    "content-disposition": `attachment; filename="${fileStem("cpu")}.cpuprofile"`,
  });
  res.end(JSON.stringify(profile));
}

/** Promise form of Session.post for the few commands used here. */
function post(session: inspector.Session, method: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = session.post as (
      method: string,
      callback: (err: Error | null, result?: object) => void,
    ) => void;
    call.call(session, method, (err, result) => {
      if (err) reject(err);
      else resolve((result ?? {}) as Record<string, unknown>);
    });
  });
}

/**
 * Run the V8 sampling profiler for `ms` (less when `signal` aborts) and return the profile
 * (`{nodes, startTime, endTime, samples, timeDeltas}`). The event loop keeps serving
 * meanwhile: only the timer waits.
 */
async function takeCpuProfile(ms: number, signal: AbortSignal): Promise<unknown> {
  const { Session } = await import("node:inspector");
  const session: inspector.Session = new Session();
  session.connect();
  try {
    await post(session, "Profiler.enable");
    await post(session, "Profiler.start");
    await sleep(ms, signal);
    const stopped = await post(session, "Profiler.stop");
    await post(session, "Profiler.disable");
    return stopped.profile;
  } finally {
    session.disconnect();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

async function commandLine(): Promise<string> {
  try {
    const raw = await Deno.readTextFile("/proc/self/cmdline");
    return raw.replace(/\0$/, "");
  } catch {
    return [Deno.execPath(), ...Deno.args].join("\0");
  }
}

function fileStem(kind: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return `containerd-ts-${kind}-${Deno.pid}-${stamp}`;
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(text);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A human-readable dump of `source.vars()`, a fresh Deno.memoryUsage() and the plugin table;
 * the server logs it on SIGUSR1, where containerd would dump its goroutine stacks.
 */
export function diagnosticDump(source: DebugVarsSource): string {
  const vars = source.vars();
  const lines = [`containerd-ts diagnostic dump at ${new Date().toISOString()}`];
  for (const [key, value] of Object.entries(vars)) {
    if (key === "memory" || key === "plugins") continue;
    lines.push(`${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  }
  lines.push("memory (Deno.memoryUsage):");
  for (const [key, bytes] of Object.entries(Deno.memoryUsage())) {
    lines.push(`  ${key.padEnd(10)} ${String(bytes).padStart(12)} (${mebibytes(bytes)})`);
  }
  const plugins = Array.isArray(vars.plugins) ? vars.plugins.filter(isPluginVar) : [];
  lines.push(`plugins (${plugins.length}):`);
  const width = Math.max(3, ...plugins.map((p) => p.uri.length));
  lines.push(`  ${"URI".padEnd(width)}  STATUS  INIT(ms)  ERROR`);
  for (const p of plugins) {
    lines.push(
      `  ${p.uri.padEnd(width)}  ${p.status.padEnd(6)}  ${p.initMs.toFixed(1).padStart(8)}  ${
        p.error ?? ""
      }`.trimEnd(),
    );
  }
  return lines.join("\n") + "\n";
}

function isPluginVar(value: unknown): value is PluginVar {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.uri === "string" && typeof v.status === "string" &&
    typeof v.initMs === "number" && (v.error === undefined || typeof v.error === "string");
}

function mebibytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
