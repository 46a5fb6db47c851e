/**
 * The daemon's version and revision, reported by `--version`, the Version service and logs.
 *
 * The version comes from deno.json so a release bumps one place; the revision (a git commit)
 * is not known to the source tree, so the build or the environment supplies it through
 * `CONTAINERD_TS_REVISION`.
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };

/** The release version, from deno.json's "version" (e.g. "0.1.0"). */
export const VERSION: string = meta.version;

function readRevision(): string {
  try {
    return Deno.env.get("CONTAINERD_TS_REVISION") || "unknown";
  } catch {
    // No env permission (e.g. a sandboxed test run): the revision is simply not known.
    return "unknown";
  }
}

/** The source revision the binary was built from, or "unknown". */
export const REVISION: string = readRevision();
