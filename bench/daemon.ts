/**
 * Start and stop the daemons the bench compares — Debian's containerd and ours through
 * bin/containerd-ts — each on its own temp root, state and socket, and measure what only a
 * process shows: time to the first Version answer and resident memory.
 *
 * Teardown is always SIGTERM, a bounded wait, SIGKILL if needed, then the temp dir removed, so
 * an interrupted bench leaves no daemon or socket behind.
 *
 * @example
 * ```ts
 * import { startDaemon } from "./daemon.ts";
 * const d = await startDaemon("containerd");
 * console.log(d.bootMs, await d.rssKiB());
 * await d.stop();
 * ```
 * @module
 */
import { versionOnce } from "./client.ts";

/** Which daemon. */
export type DaemonKind = "containerd" | "containerd-ts";

/**
 * A server of bench/servers.ts booted beside the daemons, on the daemon's Deno and V8 flags
 * and in the form the daemon runs (bench/main.ts bundles it when the daemon is built): `fixed`
 * is Deno plus this project's HTTP/2 server answering a fixed Version reply,
 * `handler` adds the RPC layer (server/rpc.ts, Connect, the interceptors) without plugins —
 * what a daemon on this stack costs at boot and at idle before any plugin. `runtime` is Deno
 * alone (bench/idle.js prints one line and idles): it answers no RPC, so its "boot" is its
 * start to that line; with its idle memory it is the floor of any Deno program.
 */
export type ReferenceKind = "fixed" | "handler" | "runtime";

/** Anything the boot scenario starts and measures. */
export type BootKind = DaemonKind | ReferenceKind;

/** Repository root (bench/..). */
export const REPO: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** Debian's containerd. */
export const CONTAINERD_BIN = "/usr/bin/containerd";
/** Our launcher seam. */
export const LAUNCHER: string = `${REPO}/bin/containerd-ts`;

/** A daemon (or reference server) the bench started. */
export interface RunningDaemon {
  readonly kind: BootKind;
  readonly socket: string;
  /** Process start → first successful Version RPC, in ms. */
  readonly bootMs: number;
  /** The daemon's own pid (the deno process for ours, not a wrapper shell). */
  readonly pid: number;
  /** VmRSS of the daemon process in KiB. */
  rssKiB(): Promise<number>;
  /** The daemon's resident memory split into anonymous and file-backed pages. */
  memoryKiB(): Promise<MemorySplit>;
  /** SIGTERM, wait up to 10 s, SIGKILL; remove the temp dir. */
  stop(): Promise<void>;
}

/**
 * Why a daemon cannot run here, or undefined when it can: the bench prints "n/a: <reason>"
 * for that side instead of failing.
 */
export async function unavailable(kind: DaemonKind): Promise<string | undefined> {
  const path = kind === "containerd" ? CONTAINERD_BIN : LAUNCHER;
  try {
    const info = await Deno.stat(path);
    if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) return `${path} is not executable`;
    return undefined;
  } catch {
    return kind === "containerd" ? "containerd not installed" : "bin/containerd-ts missing";
  }
}

/** containerd's config for the bench: light (no CRI), no debug or metrics listeners. */
function containerdConfig(dir: string): string {
  return [
    "version = 2",
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
    "[grpc]",
    `  address = "${dir}/d.sock"`,
    "",
  ].join("\n");
}

/**
 * Resident memory in KiB, split the way that explains an RSS ratio: `anonymous` is the
 * process's own memory (heaps, stacks, malloc arenas), `fileBacked` the pages of mapped files
 * (its executable, libraries, Deno's mapped cache databases), which other processes running
 * the same binary share and the kernel can drop and read back.
 */
export interface MemorySplit {
  rss: number;
  anonymous: number;
  fileBacked: number;
}

/** {@link MemorySplit} from the text of /proc/<pid>/smaps_rollup (NaN fields when absent). */
export function parseSmapsRollup(text: string): MemorySplit {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const rss = field("Rss");
  const anonymous = field("Anonymous");
  return { rss, anonymous, fileBacked: rss - anonymous };
}

/** {@link MemorySplit} of a process (NaN fields when it is gone). */
export async function readMemoryKiB(pid: number): Promise<MemorySplit> {
  try {
    return parseSmapsRollup(await Deno.readTextFile(`/proc/${pid}/smaps_rollup`));
  } catch {
    return { rss: NaN, anonymous: NaN, fileBacked: NaN };
  }
}

/** Read /proc/<pid>/status VmRSS in KiB (NaN when the process is gone). */
export async function readRssKiB(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Executable name of a process (basename of /proc/<pid>/exe), or "" when unreadable. */
async function exeName(pid: number): Promise<string> {
  try {
    const target = await Deno.readLink(`/proc/${pid}/exe`);
    return target.slice(target.lastIndexOf("/") + 1).replace(/ \(deleted\)$/, "");
  } catch {
    return "";
  }
}

/** Child pids of every process, from /proc/<pid>/stat. */
async function childrenByParent(): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = out.get(ppid) ?? [];
      list.push(Number(entry.name));
      out.set(ppid, list);
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/**
 * The process that is the daemon: `root` itself when its executable is one of `names`, else
 * the first such descendant (the launcher may run deno through npx or a shell).
 */
export async function findDaemonPid(root: number, names: readonly string[]): Promise<number> {
  if (names.includes(await exeName(root))) return root;
  const children = await childrenByParent();
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (names.includes(await exeName(pid))) return pid;
    queue.push(...(children.get(pid) ?? []));
  }
  return root;
}

/** Options of {@link startDaemon}. */
export interface StartOptions {
  /** Give up waiting for the first answer after this long. Default 60 s. */
  bootTimeoutMs?: number;
  /** For a reference server: bench/servers.ts or a bundle of it. Default the source. */
  serversScript?: string;
}

/**
 * The V8 flags bin/containerd-ts gives the daemon, as deno.json's start task spells them
 * (tests/launcher_test.ts keeps the two equal): the reference servers run with them too.
 */
export async function daemonV8Flags(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  return String(config.tasks?.start ?? "").split(/\s+/).filter((a) => a.startsWith("--v8-flags="));
}

/**
 * Wait until `stream` gives the line `expected` (then stop reading it), or throw when it ends
 * first or `timeoutMs` passes.
 */
async function firstLine(
  stream: ReadableStream<Uint8Array>,
  expected: string,
  timeoutMs: number,
): Promise<void> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  let text = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done && timedOut) throw new Error(`no "${expected}" line in time`);
      if (done) throw new Error(`no "${expected}" line before its output ended`);
      text += value;
      if (text.split("\n").slice(0, -1).includes(expected)) return;
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

/**
 * Start a daemon (or reference server) on fresh temp dirs; wait for its first Version answer
 * (for `runtime`, its "ready" line).
 */
export async function startDaemon(
  kind: BootKind,
  options: StartOptions = {},
): Promise<RunningDaemon> {
  const dir = await Deno.makeTempDir({ prefix: `bench-${kind}-` });
  const socket = `${dir}/d.sock`;
  let command: Deno.Command;
  if (kind === "containerd") {
    await Deno.writeTextFile(`${dir}/config.toml`, containerdConfig(dir));
    command = new Deno.Command(CONTAINERD_BIN, {
      args: ["--config", `${dir}/config.toml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    });
  } else if (kind === "fixed" || kind === "handler" || kind === "runtime") {
    // The reference servers take their kind and socket; Deno alone says "ready" on stdout.
    const script = kind === "runtime"
      ? [`${REPO}/bench/idle.js`]
      : [options.serversScript ?? `${REPO}/bench/servers.ts`, kind, socket];
    command = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--quiet", ...await daemonV8Flags(), ...script],
      cwd: REPO,
      stdin: "null",
      stdout: kind === "runtime" ? "piped" : "null",
      stderr: "piped",
    });
  } else {
    command = new Deno.Command(LAUNCHER, {
      args: ["--root", `${dir}/root`, "--state", `${dir}/state`, "--address", socket],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { DENO_BIN: Deno.execPath() },
    });
  }
  const started = performance.now();
  const child = command.spawn();
  let stderr = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      stderr = (stderr + decoder.decode(chunk, { stream: true })).slice(-8192);
    }
  })();
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => exited = s);
  let stopped = false;
  let daemonPid = child.pid;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      try {
        child.kill("SIGTERM");
        if (daemonPid !== child.pid) Deno.kill(daemonPid, "SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
          if (daemonPid !== child.pid) Deno.kill(daemonPid, "SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await status;
      clearTimeout(timer);
    }
    await reading.catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = started + (options.bootTimeoutMs ?? 60_000);
  try {
    if (kind === "runtime") {
      await firstLine(child.stdout, "ready", Math.max(0, deadline - performance.now()));
    } else {
      for (;;) {
        if (exited) {
          const last = stderr.trim().split("\n").at(-1) ?? "";
          throw new Error(`${kind} exited with code ${exited.code} before serving: ${last}`);
        }
        if (performance.now() > deadline) throw new Error(`${kind} did not answer Version in time`);
        if (await versionOnce(socket, 1000)) break;
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const bootMs = performance.now() - started;
  daemonPid = await findDaemonPid(
    child.pid,
    kind === "containerd"
      ? ["containerd"]
      : kind === "containerd-ts"
      ? ["deno", "containerd-ts"]
      : ["deno"],
  );
  const pid = daemonPid;
  return {
    kind,
    socket,
    bootMs,
    pid,
    rssKiB: () => readRssKiB(pid),
    memoryKiB: () => readMemoryKiB(pid),
    stop,
  };
}
