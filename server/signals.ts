/**
 * Signal handling for the daemon, installed before anything else boots.
 *
 * SIGINT/SIGTERM ask for a graceful stop (the first one) or an immediate exit (the second);
 * SIGUSR1 asks for a diagnostic dump; SIGPIPE is ignored so a client that goes away mid-write
 * never kills the daemon. A stop requested during boot is remembered and honoured as soon as
 * boot reaches the point where it waits for it.
 *
 * @example
 * ```ts
 * import { installSignals } from "./signals.ts";
 * const signals = installSignals({ onDump: () => {}, onForcedExit: () => Deno.exit(1) });
 * await signals.stopRequested; // resolves with the signal name
 * signals.uninstall();
 * ```
 * @module
 */

/** Stop signals closer together than this count as one (see onStopSignal). */
const DUPLICATE_WINDOW_MS = 250;

/** Options of installSignals. */
export interface SignalOptions {
  /** Called on SIGUSR1. */
  onDump: () => void;
  /** Called on the second SIGINT/SIGTERM; expected to exit the process. */
  onForcedExit: (signal: Deno.Signal) => void;
  /** Called on the first SIGINT/SIGTERM, before stopRequested resolves (e.g. to log it). */
  onStop?: (signal: Deno.Signal) => void;
}

/** Installed handlers; `stopRequested` resolves on the first stop signal. */
export interface InstalledSignals {
  readonly stopRequested: Promise<Deno.Signal>;
  /** Resolve stopRequested from code (tests, fatal errors). */
  requestStop(signal: Deno.Signal): void;
  uninstall(): void;
}

/** Install the daemon's signal handlers. */
export function installSignals(options: SignalOptions): InstalledSignals {
  let stopping = false;
  let firstAt = 0;
  let resolveStop!: (signal: Deno.Signal) => void;
  const stopRequested = new Promise<Deno.Signal>((resolve) => (resolveStop = resolve));
  const onStopSignal = (signal: Deno.Signal) => {
    if (stopping) {
      // A terminal's Ctrl-C reaches both `deno task` (which forwards it) and the daemon in
      // the same process group: a repeat within the window is that echo, not a second ask.
      if (performance.now() - firstAt < DUPLICATE_WINDOW_MS) return;
      options.onForcedExit(signal);
      return;
    }
    stopping = true;
    firstAt = performance.now();
    options.onStop?.(signal);
    resolveStop(signal);
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", () => onStopSignal("SIGINT")],
    ["SIGTERM", () => onStopSignal("SIGTERM")],
    ["SIGUSR1", () => options.onDump()],
    ["SIGPIPE", () => {}],
  ];
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  return {
    stopRequested,
    requestStop: (signal) => {
      if (!stopping) {
        stopping = true;
        resolveStop(signal);
      }
    },
    uninstall: () => {
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}
