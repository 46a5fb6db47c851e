/**
 * Platform specifiers and matchers with the semantics of containerd 1.6's `platforms`
 * package, as `ctr images import` applies them: a descriptor's platform is normalized
 * (`x86_64` → `amd64`, `aarch64` → `arm64`, `arm` → `arm/v7`, ...) before it is compared;
 * the host's default matcher also accepts the platforms the host can run (`linux/386` on
 * amd64, `arm/v5`..`v7` on arm64); `--platform` matches exactly one.
 *
 * @example
 * ```ts
 * import { defaultMatcher, parsePlatform, strictMatcher } from "./platforms.ts";
 * defaultMatcher().match({ os: "linux", architecture: "x86_64" }); // true on amd64 hosts
 * strictMatcher(parsePlatform("linux/arm64")).match({ os: "linux", architecture: "arm64" });
 * ```
 * @module
 */
import { InvalidArgumentError } from "../server/errdefs.ts";

/** An OCI platform (`ocispec.Platform`). */
export interface Platform {
  architecture: string;
  os: string;
  /** `os.version` in JSON. */
  osVersion?: string;
  /** `os.features` in JSON. */
  osFeatures?: string[];
  variant?: string;
}

/** Decides which platforms to take, and orders the ones taken (best first). */
export interface PlatformMatcher {
  /** Whether `p` (normalized first) is accepted. */
  match(p: Platform): boolean;
  /** Whether `a` is preferred over `b`. */
  less(a: Platform, b: Platform): boolean;
}

const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "hurd",
  "illumos",
  "ios",
  "js",
  "linux",
  "nacl",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "windows",
  "zos",
]);
const KNOWN_ARCH = new Set([
  "386",
  "amd64",
  "amd64p32",
  "arm",
  "armbe",
  "arm64",
  "arm64be",
  "ppc64",
  "ppc64le",
  "loong64",
  "mips",
  "mipsle",
  "mips64",
  "mips64le",
  "mips64p32",
  "mips64p32le",
  "ppc",
  "riscv",
  "riscv64",
  "s390",
  "s390x",
  "sparc",
  "sparc64",
  "wasm",
]);

/** The Go `GOOS`/`GOARCH` of the machine this client runs on. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };
  const os = Deno.build.os === "darwin" ? "darwin" : Deno.build.os;
  return { os, architecture: arch[Deno.build.arch] ?? Deno.build.arch };
}

function normalizeOS(os: string): string {
  if (os === "") return hostPlatform().os;
  const lower = os.toLowerCase();
  return lower === "macos" ? "darwin" : lower;
}

function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase(), v = variant.toLowerCase();
  switch (a) {
    case "i386":
      a = "386";
      v = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      a = "amd64";
      if (v === "v1") v = "";
      break;
    case "aarch64":
    case "arm64":
      a = "arm64";
      if (v === "8" || v === "v8") v = "";
      break;
    case "armhf":
      a = "arm";
      v = "v7";
      break;
    case "armel":
      a = "arm";
      v = "v6";
      break;
    case "arm":
      if (v === "" || v === "7") v = "v7";
      else if (v === "5" || v === "6" || v === "8") v = "v" + v;
      break;
  }
  return [a, v];
}

/**
 * A platform with its OS and architecture in canonical form (containerd's
 * `platforms.Normalize`); an empty OS becomes the host's.
 */
export function normalizePlatform(p: Platform): Platform {
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? "");
  const out: Platform = { ...p, os: normalizeOS(p.os), architecture };
  if (variant) out.variant = variant;
  else delete out.variant;
  return out;
}

const SPECIFIER_PART = /^[A-Za-z0-9_-]+$/;

/**
 * Parse a platform specifier (`os`, `arch`, `os/arch` or `os/arch/variant`) the way
 * `ctr --platform` does. Throws InvalidArgumentError for a malformed one.
 */
export function parsePlatform(specifier: string): Platform {
  if (specifier.includes("*")) {
    throw new InvalidArgumentError(`platform "${specifier}": wildcards are not supported`);
  }
  const parts = specifier.split("/");
  for (const part of parts) {
    if (!SPECIFIER_PART.test(part)) {
      throw new InvalidArgumentError(
        `platform "${specifier}": component "${part}" must match ${SPECIFIER_PART.source}`,
      );
    }
  }
  const host = hostPlatform();
  if (parts.length === 1) {
    const os = normalizeOS(parts[0]!);
    if (KNOWN_OS.has(os)) return { os, architecture: host.architecture };
    let [architecture, variant] = normalizeArch(parts[0]!, "");
    if (architecture === "arm" && variant === "v7") variant = "";
    if (KNOWN_ARCH.has(architecture)) {
      return { os: host.os, architecture, ...(variant ? { variant } : {}) };
    }
    throw new InvalidArgumentError(
      `platform "${specifier}": unknown operating system or architecture`,
    );
  }
  if (parts.length === 2) {
    let [architecture, variant] = normalizeArch(parts[1]!, "");
    if (architecture === "arm" && variant === "v7") variant = "";
    return { os: normalizeOS(parts[0]!), architecture, ...(variant ? { variant } : {}) };
  }
  if (parts.length === 3) {
    let [architecture, variant] = normalizeArch(parts[1]!, parts[2]!);
    if (architecture === "arm64" && variant === "") variant = "v8";
    return { os: normalizeOS(parts[0]!), architecture, ...(variant ? { variant } : {}) };
  }
  throw new InvalidArgumentError(`platform "${specifier}": cannot parse platform specifier`);
}

/** The platforms a host of platform `p` runs, best first (containerd's platformVector). */
function vector(p: Platform): Platform[] {
  const out: Platform[] = [p];
  const base = { os: p.os, ...(p.osVersion ? { osVersion: p.osVersion } : {}) };
  const version = (v: string | undefined) => {
    const s = (v ?? "").replace(/^v/, "");
    return /^[+-]?\d+$/.test(s) ? Number(s) : NaN;
  };
  if (p.architecture === "amd64") {
    const n = version(p.variant);
    for (let i = n - 1; n > 1 && i >= 1; i--) {
      out.push({ ...base, architecture: "amd64", variant: `v${i}` });
    }
    out.push({ ...base, architecture: "386" });
  } else if (p.architecture === "arm") {
    const n = version(p.variant);
    for (let i = n - 1; n > 5 && i >= 5; i--) {
      out.push({ ...base, architecture: "arm", variant: `v${i}` });
    }
  } else if (p.architecture === "arm64") {
    out.push(...vector({ ...base, architecture: "arm", variant: p.variant || "v8" }));
  }
  return out;
}

function same(a: Platform, n: Platform): boolean {
  return a.os === n.os && a.architecture === n.architecture &&
    (a.variant ?? "") === (n.variant ?? "");
}

function ordered(list: Platform[]): PlatformMatcher {
  const wanted = list.map(normalizePlatform);
  const hit = (w: Platform, p: Platform) => same(w, normalizePlatform(p));
  return {
    match: (p) => wanted.some((w) => hit(w, p)),
    less: (a, b) => {
      for (const w of wanted) {
        const am = hit(w, a), bm = hit(w, b);
        if (am && !bm) return true;
        if (am || bm) return false;
      }
      return false;
    },
  };
}

/** Accepts `p` and what a host of platform `p` can run (`platforms.Only`). */
export function onlyMatcher(p: Platform): PlatformMatcher {
  return ordered(vector(normalizePlatform(p)));
}

/** Accepts `p` alone (`platforms.OnlyStrict`, what `ctr --platform` uses). */
export function strictMatcher(p: Platform): PlatformMatcher {
  return ordered([p]);
}

/** The host's default matcher (`platforms.Default()`), what ctr uses without flags. */
export function defaultMatcher(): PlatformMatcher {
  return onlyMatcher(hostPlatform());
}

/** Accepts every platform (`platforms.All`, `--all-platforms`). */
export const ALL_PLATFORMS: PlatformMatcher = {
  match: () => true,
  less: () => false,
};
