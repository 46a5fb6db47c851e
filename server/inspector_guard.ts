/**
 * Keeps Deno's SIGUSR1 debugger closed.
 *
 * Deno 2.9 mirrors Node: on SIGUSR1 it opens a V8 inspector on 127.0.0.1:9229 — even when the
 * program listens for SIGUSR1 itself — and that inspector accepts any local client without
 * authentication, which for a daemon running as root means code execution as root. Deno has
 * no flag to turn this off for `deno run` or compiled binaries (NODE_OPTIONS=--disable-sigusr1
 * also removes the program's own SIGUSR1 listener). The daemon wants SIGUSR1 for its
 * diagnostic dump, as containerd does, so it holds the inspector's port itself: the runtime's
 * inspector then fails to bind ("Failed to start inspector server") and nothing is exposed.
 * Every connection to the held port is closed at once.
 *
 * @example
 * ```ts
 * import { holdInspectorPort } from "./inspector_guard.ts";
 * const guard = await holdInspectorPort();
 * await guard.close();
 * ```
 * @module
 */
/** The address Deno's SIGUSR1 inspector binds. */
export const INSPECTOR_HOST = "127.0.0.1";
/** The port Deno's SIGUSR1 inspector binds. */
export const INSPECTOR_PORT = 9229;

/** A held port (or the reason it could not be held). */
export interface InspectorGuard {
  /** True when this process holds the port. */
  readonly held: boolean;
  /** Why the port is not held (another process has it, which also keeps the inspector out). */
  readonly reason?: string;
  close(): Promise<void>;
}

/**
 * Bind the inspector's port so the runtime cannot open a debugger on it. Deno's own listener
 * (node:net would load node's streams at boot for this one socket); it does not keep the
 * process alive.
 */
export function holdInspectorPort(
  options: { host?: string; port?: number } = {},
): Promise<InspectorGuard> {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({
      hostname: options.host ?? INSPECTOR_HOST,
      port: options.port ?? INSPECTOR_PORT,
    });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return Promise.resolve({ held: false, reason, close: () => Promise.resolve() });
  }
  listener.unref();
  const refusing = (async () => {
    try {
      for await (const conn of listener) conn.close();
    } catch { /* closed */ }
  })();
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    held: true,
    close: () =>
      closing ??= (async () => {
        try {
          listener.close();
        } catch { /* already closed */ }
        await refusing;
      })(),
  });
}
