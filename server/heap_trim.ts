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
 * {@link HeapTrimmer.note} counts traffic in bytes (content moved, or a per-call estimate for an
 * RPC); once at least `minBytes` were noted and nothing more for `idleMs`, a full garbage
 * collection runs (the burst's garbage is unreachable but not yet collected while the daemon
 * idles), then `malloc_trim(0)` (through FFI; glibc only: elsewhere, or without FFI permission,
 * the trimmer does nothing and says so at debug level). The server makes one trimmer and hands
 * it to the RPC handler and, as `ctx.heapTrimmer`, to every plugin.
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
  /** Bytes of traffic that make a trim worth it. Default 64 MiB. */
  minBytes?: number;
  /** Quiet time after the last traffic before trimming (ms). Default 2000. */
  idleMs?: number;
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

/** Counts traffic and trims the heap once it pauses. */
export interface HeapTrimmer {
  /** `bytes` of traffic moved through memory just now. */
  note(bytes: number): void;
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
export const NO_HEAP_TRIM: HeapTrimmer = { note() {}, burstEnded() {}, close() {} };

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
  const log = options.log ?? silentLogger();
  const now = options.now ?? (() => performance.now());
  const schedule = options.schedule ?? unrefTimeout;
  let trim: (() => void) | undefined | null = options.trim ?? null;
  let moved = 0;
  let lastAt = 0;
  /** Quiet time the pending trim waits for: idleMs, or burstEnded's. */
  let waitMs = idleMs;
  let cancel: (() => void) | undefined;
  const fire = async () => {
    cancel = undefined;
    const quiet = now() - lastAt;
    if (quiet < waitMs) {
      // Traffic went on: look again when it may have paused.
      cancel = schedule(fire, waitMs - quiet);
      return;
    }
    if (trim === null) trim = await collectAndTrim(log);
    if (trim === undefined) return;
    const started = now();
    trim();
    log.debug("trimmed the heap after a burst of traffic", {
      bytes: moved,
      ms: Number((now() - started).toFixed(1)),
    });
    moved = 0;
    waitMs = idleMs;
  };
  return {
    note(bytes: number): void {
      moved += bytes;
      lastAt = now();
      if (cancel === undefined && moved >= minBytes && trim !== undefined) {
        cancel = schedule(fire, idleMs);
      }
    },
    burstEnded(quietMs: number): void {
      if (trim === undefined) return;
      moved = Math.max(moved, minBytes);
      lastAt = now();
      waitMs = quietMs;
      cancel?.();
      cancel = schedule(fire, quietMs);
    },
    close(): void {
      cancel?.();
      cancel = undefined;
    },
  };
}
