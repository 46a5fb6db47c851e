/**
 * Test setup, run by `deno task test` before the suites: makes sure the real clients the
 * integration suites drive are present. As root with apt-get it installs Debian's containerd
 * (ctr, the shim, the reference daemon), runc, busybox-static, curl, tmux (the `ctr run -t`
 * test) and strace (the descriptor test) when missing; otherwise it prints what is missing,
 * and the suites that need it print SKIP with that reason.
 *
 * @module
 */
const needed: Record<string, string> = {
  "/usr/bin/ctr": "containerd",
  "/usr/bin/containerd": "containerd",
  "/usr/sbin/runc": "runc",
  "/bin/busybox": "busybox-static",
  "/usr/bin/curl": "curl",
  "/usr/bin/tmux": "tmux",
  "/usr/bin/strace": "strace",
};

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<boolean> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).output().catch(() => ({ success: false }));
  return out.success;
}

const missing = [
  ...new Set(Object.entries(needed).filter(([p]) => !exists(p)).map(([, pkg]) => pkg)),
];
if (missing.length === 0) {
  console.error(`setup: ${Object.keys(needed).join(", ")} are present`);
} else if (Deno.uid() !== 0 || !exists("/usr/bin/apt-get")) {
  console.error(
    `setup: missing ${missing.join(", ")} and cannot install them (needs root and apt-get); ` +
      "suites that need them print SKIP",
  );
} else {
  console.error(`setup: installing ${missing.join(", ")} with apt-get`);
  const ok = (await run("apt-get", ["update", "-qq"])) &&
    (await run("apt-get", ["install", "-y", "-qq", ...missing]));
  if (!ok) console.error("setup: apt-get failed; suites that need these packages print SKIP");
}
