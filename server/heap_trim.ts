/**
 * Give freed heap memory back to the OS after bursts of traffic.
 *
 * containerd's Go runtime returns memory by itself once a burst is over; V8 and glibc do not:
 * - Every chunk a content read or write moves lives in an ArrayBuffer, which V8 allocates
 *   with glibc's malloc. Once collected, those chunks are free but stay in the process: glibc
 *   only shrinks its heap from the top, and long-lived allocations made meanwhile pin it.
 *   Measured (`ctr content get` of a 256 MiB blob after ingesting it): RSS 92 → 284 MiB, 124
 *   MiB of it in glibc's `[heap]`, kept while idle; `malloc_trim(0)` returned 63 MiB.
 * - Many small RPCs grow V8's own heap, which keeps its size while idle. Measured (10 000
 *   Images.Create, then 6 Lists of them): RSS 93 → 244 MiB with 15 MiB of it live; a full
 *   collection and `malloc_trim(0)` (70 ms) brought it back to 97 MiB.
 *
 * {@link HeapTrimmer.note} counts bulk bytes (content moved) and {@link HeapTrimmer.noteCall}
 * finished RPCs. Once at least `minBytes` were noted and nothing more for `idleMs`, or calls
 * and bytes together reach their thresholds (`calls / minCalls + bytes / minBytes >= 1`) and
 * nothing more came for `callIdleMs`, a full garbage collection runs (the
 * burst's garbage is unreachable but not yet collected while the daemon idles), then
 * `malloc_trim(0)` (through FFI; glibc only: elsewhere, or without FFI permission, the trimmer
 * does nothing and says so at debug level). The server makes one trimmer and hands it to the
 * RPC handler and, as `ctx.heapTrimmer`, to every plugin.
 *
 * Why calls wait longer: a full collection while no request runs also throws away the
 * optimized code of the request path. That code holds the hidden classes (maps) of the objects
 * it handles weakly; between requests no such object is alive (an idle connection kept open
 * changes nothing), the collection frees those maps and V8 deoptimizes the code that embedded
 * them (`--trace-deopt`, reason "embedded weak objects cleared": 53–56 functions at the first
 * trim after calls, 22–27 at later ones). Measured on the daemon, after 2 s idle
 * and a trim: 90 functions optimized again and the first second of unary calls at 2.2–2.9k
 * req/s against 3.7–3.8k without the trim. Bulk bytes are worth that cost at once; a few
 * hundred calls only once the daemon is idle for longer.
 *
 * What a call-only trim gives back is mostly the young generation: bin/containerd-ts starts it
 * at 16 MiB per semi-space, and after a burst of calls both are resident (RSS 110 MiB idle
 * without the collection, 79–81 MiB with it). Only a full collection shrinks it, and every
 * kind deoptimizes the same way (measured with `--trace-deopt`): the collection here (the `gc`
 * a new vm context gets once `--expose-gc` is set at run time ignores `gc()`'s options and
 * runs V8's low-memory notification, two memory-reducing mark-compacts), and a regular
 * mark-compact as well (`--expose-gc` at start, `gc({ type: "major" })`); a scavenge alone
 * leaves the RSS at 110 MiB. Smaller semi-spaces (4 MiB) and no collection after calls: +11%
 * req/s in the seconds after idle, but 8 MiB more at idle and 7–11 ms more CPU at every boot.
 *
 * @example
 * ```ts
 * import { createHeapTrimmer } from "./heap_trim.ts";
 * const trimmer = createHeapTrimmer({ idleMs: 2000 });
 * trimmer.note(1 << 20); // after moving a 1 MiB chunk
 * trimmer.close();
 * ```
 * @module
 */
import { type Logger, silentLogger } from "./log.ts";

/** Options of {@link createHeapTrimmer}. */
export interface HeapTrimOptions {
  /** Bulk bytes that make a trim worth it. Default 64 MiB. */
  minBytes?: number;
  /** Quiet time after the last traffic before trimming after bulk bytes (ms). Default 2000. */
  idleMs?: number;
  /**
   * Finished RPCs that make a trim worth it. Default 512: each leaves ~15 KiB of garbage
   * (10 000 Images.Create grew the heap by ~150 MiB), so 512 calls ≈ 8 MiB.
   */
  minCalls?: number;
  /**
   * Quiet time after the last traffic before trimming after calls alone (ms). Default
   * {@link DEFAULT_CALL_IDLE_MS}.
   */
  callIdleMs?: number;
  /** Where the trimmer says what it did. Default: silent. */
  log?: Logger;
  /** The trim itself, for tests. Default: a full GC, then glibc's `malloc_trim(0)`. */
  trim?: () => void;
  /** Clock in ms, for tests. Default `performance.now`. */
  now?: () => number;
  /**
   * Run `fn` in `ms`; returns a cancel function. For tests. Default: an unref'd setTimeout
   * (a pending trim never keeps the process alive).
   */
  schedule?: (fn: () => void, ms: number) => () => void;
}

function unrefTimeout(fn: () => void, ms: number): () => void {
  const timer = setTimeout(fn, ms);
  Deno.unrefTimer(timer);
  return () => clearTimeout(timer);
}

/**
 * Default quiet time before a trim after calls alone (ms): the bench waits longer than this
 * to measure the first calls after a trim.
 */
export const DEFAULT_CALL_IDLE_MS = 10_000;

/** Counts traffic and trims the heap once it pauses. */
export interface HeapTrimmer {
  /** `bytes` of bulk data (content chunks) moved through memory just now. */
  note(bytes: number): void;
  /** One RPC finished. */
  noteCall(): void;
  /**
   * A known burst just ended (boot: loading modules and plugins leaves ~7 MiB of garbage):
   * trim once the daemon has been quiet for `quietMs`, however few bytes were noted. Traffic
   * meanwhile (a client's first calls) postpones it the same way.
   */
  burstEnded(quietMs: number): void;
  /** Stop: cancel a pending trim. */
  close(): void;
}

/** A trimmer that never trims. */
export const NO_HEAP_TRIM: HeapTrimmer = {
  note() {},
  noteCall() {},
  burstEnded() {},
  close() {},
};

/**
 * A full garbage collection (so the chunks of the burst are freed, not just unreachable),
 * then glibc's `malloc_trim(0)` through FFI; undefined when this process cannot trim.
 * `--expose-gc` is set only now, at the first trim, never at boot.
 */
async function collectAndTrim(log: Logger): Promise<(() => void) | undefined> {
  if (Deno.build.os !== "linux") return undefined;
  let mallocTrim: () => void;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    mallocTrim = () => void libc.symbols.malloc_trim(0n);
  } catch (err) {
    log.debug("heap trimming unavailable", { error: err });
    return undefined;
  }
  let gc: (() => void) | undefined;
  try {
    const [{ default: v8 }, { default: vm }] = await Promise.all([
      import("node:v8"),
      import("node:vm"),
    ]);
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  } catch (err) {
    log.debug("garbage collection before heap trims unavailable", { error: err });
  }
  return () => {
    gc?.();
    mallocTrim();
  };
}

/** Make a {@link HeapTrimmer}; see the module doc. */
export function createHeapTrimmer(options: HeapTrimOptions = {}): HeapTrimmer {
  const minBytes = options.minBytes ?? 64 << 20;
  const idleMs = options.idleMs ?? 2000;
  const minCalls = options.minCalls ?? 512;
  const callIdleMs = options.callIdleMs ?? DEFAULT_CALL_IDLE_MS;
  const log = options.log ?? silentLogger();
  const now = options.now ?? (() => performance.now());
  const schedule = options.schedule ?? unrefTimeout;
  let trim: (() => void) | undefined | null = options.trim ?? null;
  let moved = 0;
  let calls = 0;
  let lastAt = 0;
  /** Quiet time burstEnded asked for, until the next trim. */
  let burstQuietMs: number | undefined;
  /** The pending check and the quiet time it waits for. */
  let pending: { cancel: () => void; waitMs: number } | undefined;
  /** The quiet time the traffic so far calls for; undefined: not worth a trim yet. */
  const wanted = (): number | undefined => {
    let wait = burstQuietMs ?? Infinity;
    if (moved >= minBytes) wait = Math.min(wait, idleMs);
    // Calls and bytes add up (400 calls that also read 3 MiB of content are worth a trim),
    // but only bulk bytes past their own threshold earn the short wait.
    else if (calls / minCalls + moved / minBytes >= 1) wait = Math.min(wait, callIdleMs);
    return wait === Infinity ? undefined : wait;
  };
  /** Schedule a check, or move a pending one earlier when the traffic now asks less quiet. */
  const arm = () => {
    const waitMs = wanted();
    if (waitMs === undefined || trim === undefined) return;
    if (pending !== undefined && pending.waitMs <= waitMs) return;
    pending?.cancel();
    pending = { cancel: schedule(fire, waitMs), waitMs };
  };
  const fire = async () => {
    const waitMs = pending?.waitMs ?? idleMs;
    pending = undefined;
    const quiet = now() - lastAt;
    if (quiet < waitMs) {
      // Traffic went on: look again when it may have paused.
      pending = { cancel: schedule(fire, waitMs - quiet), waitMs };
      return;
    }
    if (trim === null) trim = await collectAndTrim(log);
    if (trim === undefined) return;
    const started = now();
    trim();
    log.debug("trimmed the heap after a burst of traffic", {
      bytes: moved,
      calls,
      ms: Number((now() - started).toFixed(1)),
    });
    moved = 0;
    calls = 0;
    burstQuietMs = undefined;
  };
  return {
    note(bytes: number): void {
      moved += bytes;
      lastAt = now();
      arm();
    },
    noteCall(): void {
      calls++;
      lastAt = now();
      arm();
    },
    burstEnded(quietMs: number): void {
      burstQuietMs = quietMs;
      lastAt = now();
      arm();
    },
    close(): void {
      pending?.cancel();
      pending = undefined;
    },
  };
}
