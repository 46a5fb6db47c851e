/**
 * Integration-test harness: boots the real daemon through bin/containerd-ts on temp dirs and
 * runs the real clients (Debian's ctr, curl) against it.
 *
 * @module
 */

import assert from "node:assert/strict";

/** Absolute path of the repository. */
export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The launcher seam every test boots the daemon through. */
export const LAUNCHER = `${REPO}/bin/containerd-ts`;

/** A daemon booted for a test. */
export interface TestDaemon {
  /** Temp dir holding root, state and the sockets. */
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly address: string;
  readonly process: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  log(): string;
  /** Resolves with the exit status once the process exits. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** SIGTERM and wait (SIGKILL after `timeoutMs`); then remove the temp dir. */
  stop(timeoutMs?: number): Promise<Deno.CommandStatus>;
}

/** Options of startDaemon. */
export interface StartOptions {
  /** Extra flags after the generated --root/--state/--address. */
  args?: string[];
  /** TOML written to `<dir>/config.toml` and passed with --config. */
  config?: string;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Wait for "successfully booted" (default true). */
  waitReady?: boolean;
  /** Reuse this dir (a restart on the same root/state). */
  dir?: string;
  /**
   * Run the launcher under this command, e.g. `["strace", "-f", "-o", file]`. stop() then
   * signals the traced daemon (the tracer's child), not the tracer.
   */
  tracer?: string[];
  /** Another launcher than this tree's bin/containerd-ts (a copy in a temp tree). */
  launcher?: string;
}

/** Run the launcher with arguments, collecting output (CLI subcommands, bad configs). */
export async function runLauncher(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(LAUNCHER, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_BIN: Deno.execPath(), ...options.env },
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Boot the daemon on fresh temp dirs and wait until it is ready. */
export async function startDaemon(options: StartOptions = {}): Promise<TestDaemon> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "cts-" });
  const root = `${dir}/root`;
  const state = `${dir}/state`;
  const address = `${dir}/containerd-ts.sock`;
  const args = ["--root", root, "--state", state, "--address", address];
  if (options.config !== undefined) {
    await Deno.writeTextFile(`${dir}/config.toml`, options.config);
    args.push("--config", `${dir}/config.toml`);
  }
  args.push(...(options.args ?? []));
  const tracer = options.tracer ?? [];
  const launcher = options.launcher ?? LAUNCHER;
  const process = new Deno.Command(tracer[0] ?? launcher, {
    args: tracer.length === 0 ? args : [...tracer.slice(1), launcher, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_BIN: Deno.execPath(), ...options.env },
  }).spawn();
  let text = "";
  let onText: () => void = () => {};
  const pump = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of process.stderr) {
      text += dec.decode(chunk, { stream: true });
      onText();
    }
  })();
  process.stdout.cancel().catch(() => {});
  let stopping = false;
  const exited = process.status;
  // A daemon that dies on its own (a crash, an uncaught error) says why in its log, which no
  // test prints otherwise: show its tail. Tests that kill it on purpose use SIGKILL.
  exited.then((status) => {
    if (stopping || status.success || status.signal === "SIGKILL") return;
    const tail = text.split("\n").slice(-30).join("\n");
    console.error(
      `harness: daemon in ${dir} exited by itself (code ${status.code}, signal ${status.signal}); ` +
        `last log lines:\n${tail}`,
    );
  });
  const daemon: TestDaemon = {
    dir,
    root,
    state,
    address,
    process,
    log: () => text,
    exited,
    async stop(timeoutMs = 20_000) {
      stopping = true;
      try {
        const traced = tracer.length === 0 ? undefined : tracedChild(process.pid);
        if (traced === undefined) process.kill("SIGTERM");
        else Deno.kill(traced, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, timeoutMs);
      const status = await exited;
      clearTimeout(timer);
      await pump.catch(() => {});
      if (!options.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
      return status;
    },
  };
  if (options.waitReady === false) return daemon;
  const ready = new Promise<void>((resolve, reject) => {
    onText = () => {
      if (text.includes("successfully booted")) resolve();
    };
    onText();
    exited.then((status) =>
      reject(new Error(`daemon exited with ${status.code} before ready:\n${text}`))
    );
    setTimeout(() => reject(new Error(`daemon not ready after 60s:\n${text}`)), 60_000);
  });
  try {
    await ready;
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return daemon;
}

/** The first child process of `pid` (a tracer's tracee), from /proc; undefined when none. */
export function tracedChild(pid: number): number | undefined {
  try {
    const children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
    const first = Number(children.split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

/** Why ctr-based suites cannot run here, or undefined when /usr/bin/ctr exists. */
export function ctrMissing(): string | undefined {
  try {
    Deno.statSync("/usr/bin/ctr");
    return undefined;
  } catch {
    return "SKIP: /usr/bin/ctr not installed (apt-get install containerd as root)";
  }
}

/** Run Debian's ctr against `address`. */
export async function ctr(
  address: string,
  args: string[],
  options: { namespace?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const all = ["-a", address];
  if (options.namespace) all.push("-n", options.namespace);
  const out = await new Deno.Command("/usr/bin/ctr", {
    args: [...all, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Run a command, collecting output. */
export async function sh(
  cmd: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Path of shared/tools/make-test-image: beside the repository (as CI lays it out), else the
 * workplace copy; undefined when neither exists (suites then print SKIP).
 */
export function makeTestImageTool(): string | undefined {
  for (
    const candidate of [
      `${REPO}/../shared/tools/make-test-image`,
      "/work/shared/tools/make-test-image",
    ]
  ) {
    try {
      Deno.statSync(candidate);
      return candidate;
    } catch {
      // try the next
    }
  }
  return undefined;
}

/**
 * POST a Connect JSON request with curl over HTTP/2 (prior knowledge): the unix socket at
 * `address`, or `tcp://host:port`. Returns curl's result; stdout holds the JSON answer.
 */
export function curlConnect(
  address: string,
  procedure: string,
  body: unknown = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const tcp = address.startsWith("tcp://") ? address.slice("tcp://".length) : undefined;
  return sh("curl", [
    "-sS",
    "--http2-prior-knowledge",
    ...(tcp ? [] : ["--unix-socket", address]),
    "-H",
    "content-type: application/json",
    "-d",
    JSON.stringify(body),
    `http://${tcp ?? "localhost"}/${procedure}`,
  ]);
}

/** What ctr, sh and runLauncher return. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Await a command and assert it exited 0; the message names `what` and its output. */
export async function ok(run: Promise<CommandResult>, what = "ctr"): Promise<CommandResult> {
  const r = await run;
  assert.equal(r.code, 0, `${what} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r;
}

/** The non-empty lines of `text`, trimmed. */
export function lines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/** Poll `check` every 100 ms until it holds; throws naming `what` after `ms`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Mount points strictly below `dir` in this mount namespace. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${dir}/`));
}

// ------------------------------------------------------------------------------------------
// Running containers: the real runc shim and runc

/**
 * Why suites that run containers cannot run here (ctr, make-test-image, root, the runc shim
 * and runc are needed), or undefined.
 */
export function containersMissing(): string | undefined {
  const ctrSkip = ctrMissing();
  if (ctrSkip) return ctrSkip;
  if (makeTestImageTool() === undefined) return "SKIP: shared/tools/make-test-image is missing";
  if (Deno.uid() !== 0) return "SKIP: running containers needs root";
  for (const bin of ["/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc"]) {
    try {
      Deno.statSync(bin);
    } catch {
      return `SKIP: ${bin} not installed (apt-get install containerd runc)`;
    }
  }
  return undefined;
}

/**
 * A namespace nobody else uses: runc keeps its state under /run/containerd/runc/<ns>, which
 * every daemon on the machine (and Debian's containerd) shares.
 */
export function uniqueNamespace(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
}

/** `pgrep -af` lines (pid first) of the shims started for `namespace`. */
export async function shimsOf(namespace: string): Promise<string[]> {
  const out = await sh("pgrep", ["-af", `containerd-shim-runc-v2 -namespace ${namespace} `]);
  return lines(out.stdout);
}

/**
 * Remove what a failed test left for `namespace`: with `daemon`, its tasks (SIGKILL, then a
 * forced `ctr tasks rm`); then its shims, its runc containers and their state dir, and, with
 * `daemon`, whatever is still mounted below the daemon's temp dir (lazily).
 */
export async function reapNamespace(
  namespace: string,
  daemon?: Pick<TestDaemon, "address" | "dir">,
): Promise<void> {
  if (daemon) {
    const listed = await ctr(daemon.address, ["tasks", "ls", "-q"], { namespace });
    for (const id of lines(listed.stdout)) {
      await ctr(daemon.address, ["tasks", "kill", "-s", "SIGKILL", id], { namespace });
      await ctr(daemon.address, ["tasks", "rm", "-f", id], { namespace });
    }
  }
  for (const line of await shimsOf(namespace)) {
    await sh("kill", ["-9", line.split(" ")[0] ?? ""]);
  }
  const runcRoot = `/run/containerd/runc/${namespace}`;
  try {
    for (const entry of Deno.readDirSync(runcRoot)) {
      await sh("runc", ["--root", runcRoot, "delete", "--force", entry.name]);
    }
    await Deno.remove(runcRoot, { recursive: true });
  } catch {
    // nothing left
  }
  if (daemon) {
    for (const point of (await mountsUnder(daemon.dir)).sort((a, b) => b.length - a.length)) {
      await sh("umount", ["-l", point]);
    }
  }
}
