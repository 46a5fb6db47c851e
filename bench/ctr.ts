/**
 * Run Debian's `ctr` against a daemon's socket for the bench: timed, bounded by a timeout,
 * stdin optionally redirected from a file by the shell (so the daemon sees the same stream as
 * `ctr ... < file` from a terminal, with no copy through the bench process).
 *
 * @example
 * ```ts
 * import { ctr } from "./ctr.ts";
 * const { ms, stdout } = await ctr("/tmp/x/d.sock", ["plugins", "ls"]);
 * ```
 * @module
 */

/** Debian's ctr. */
export const CTR_BIN = "/usr/bin/ctr";

/** Options of {@link ctr}. */
export interface CtrOptions {
  /** Redirect stdin from this file. */
  stdinFile?: string;
  /** Send stdout to /dev/null instead of capturing it. */
  discardStdout?: boolean;
  /** Kill ctr after this long. Default 120 s. */
  timeoutMs?: number;
}

/** What one ctr invocation did. */
export interface CtrResult {
  /** Wall time from spawn to exit, in ms. */
  ms: number;
  /** Captured stdout ("" when discarded). */
  stdout: string;
}

/**
 * Run `ctr -a socket ...args`; rejects with ctr's last stderr line when it exits non-zero or
 * times out.
 */
export async function ctr(
  socket: string,
  args: readonly string[],
  options: CtrOptions = {},
): Promise<CtrResult> {
  const argv = [CTR_BIN, "-a", socket, ...args];
  const timeoutMs = options.timeoutMs ?? 120_000;
  const started = performance.now();
  const child = new Deno.Command(options.stdinFile === undefined ? CTR_BIN : "sh", {
    args: options.stdinFile === undefined
      ? argv.slice(1)
      : ["-c", 'f=$1; shift; exec "$@" < "$f"', "sh", options.stdinFile, ...argv],
    stdin: "null",
    stdout: options.discardStdout ? "null" : "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).spawn();
  const out = await child.output();
  const ms = performance.now() - started;
  if (!out.success) {
    const last = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    const why = out.signal ? `killed by ${out.signal} (timeout ${timeoutMs} ms?)` : last;
    throw new Error(`ctr ${args.slice(0, 2).join(" ")}: ${why || `exit ${out.code}`}`);
  }
  return {
    ms,
    stdout: options.discardStdout ? "" : new TextDecoder().decode(out.stdout),
  };
}

/** Whether `ctr plugins ls` lists plugin `type` `id` with status ok. */
export async function pluginOk(socket: string, type: string, id: string): Promise<boolean> {
  const { stdout } = await ctr(socket, ["plugins", "ls"], { timeoutMs: 30_000 });
  return stdout.split("\n").some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[0] === type && cols[1] === id && cols.at(-1) === "ok";
  });
}

/** Poll `check` every 100 ms until it is true or `timeoutMs` passes; true when it became true. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
