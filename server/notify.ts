/**
 * sd_notify: tell a supervisor (systemd, or a test harness) that boot finished, by sending
 * `READY=1` as one datagram to the unix socket named in $NOTIFY_SOCKET.
 *
 * Deno has no unix datagram client, so this goes through libc with FFI (socket + sendto);
 * abstract socket names (`@name`) are supported as systemd uses them.
 *
 * @module
 */

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH_MAX = 108;

/** Build a `struct sockaddr_un` for `path` (`@` prefix = abstract namespace). */
export function sockaddrUnix(path: string): { bytes: Uint8Array; length: number } {
  const name = new TextEncoder().encode(path);
  if (name.length === 0 || name.length >= SUN_PATH_MAX) {
    throw new Error(`notify socket path ${JSON.stringify(path)} is empty or too long`);
  }
  const bytes = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(bytes.buffer).setUint16(0, AF_UNIX, true);
  bytes.set(name, 2);
  const abstract = path.startsWith("@");
  if (abstract) bytes[2] = 0;
  // Abstract names have no terminating NUL; their length is exactly the name's.
  return { bytes, length: 2 + name.length + (abstract ? 0 : 1) };
}

/**
 * Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns false when no socket is set;
 * throws with the errno when sending fails.
 */
export function notify(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  const addr = sockaddrUnix(socketPath);
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    sendto: {
      parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
      result: "isize",
    },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fd = libc.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error(`notify ${socketPath}: socket() failed`);
    try {
      const message = new TextEncoder().encode(state);
      const sent = libc.symbols.sendto(
        fd,
        message,
        BigInt(message.length),
        0,
        addr.bytes,
        addr.length,
      );
      if (Number(sent) < 0) throw new Error(`notify ${socketPath}: sendto() failed`);
    } finally {
      libc.symbols.close(fd);
    }
  } finally {
    libc.close();
  }
  return true;
}
