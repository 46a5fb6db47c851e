/**
 * Mark every open descriptor above stderr close-on-exec, right before spawning a long-lived
 * child such as a shim.
 *
 * A descriptor without FD_CLOEXEC is inherited by every child: a shim started by the daemon
 * would keep, say, the daemon's listening gRPC socket open after the daemon dies, and a
 * restarted daemon would find its socket "in use" — connections to it queue in a backlog
 * nobody accepts. That happened with Deno 2.9.3's node:net unix listeners, which are created
 * without the flag (the daemon now listens with Deno's own sockets, see unix_socket.ts); this
 * sweep stays as the guard against any other such descriptor (node compatibility layers, FFI).
 * Calling it synchronously just before `Deno.Command(...).spawn()` closes that window (no
 * JavaScript runs between the two).
 *
 * @example
 * ```ts
 * import { closeOnExecAll } from "./cloexec.ts";
 * closeOnExecAll();
 * new Deno.Command("true").spawn();
 * ```
 * @module
 */

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Set FD_CLOEXEC on every descriptor > 2 of this process; returns how many were changed. */
export function closeOnExecAll(): number {
  const lib = Deno.dlopen(
    "libc.so.6",
    {
      fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
    } as const,
  );
  let changed = 0;
  try {
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      const fd = Number(entry.name);
      if (!Number.isInteger(fd) || fd <= 2) continue;
      const flags = lib.symbols.fcntl(fd, F_GETFD, 0);
      if (flags < 0 || (flags & FD_CLOEXEC) !== 0) continue;
      if (lib.symbols.fcntl(fd, F_SETFD, flags | FD_CLOEXEC) === 0) changed++;
    }
  } finally {
    lib.close();
  }
  return changed;
}
