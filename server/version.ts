/**
 * The daemon's version and revision, reported by `--version`, the Version service and logs.
 *
 * The version comes from deno.json so a release bumps one place. The revision (a git commit)
 * is not known to the source tree: `deno task build` stamps the commit it bundled into
 * {@link BUILD_REVISION} (tools/build.ts), and `CONTAINERD_TS_REVISION` in the environment
 * wins over both, so a packager can say what it shipped.
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };

/** The release version, from deno.json's "version" (e.g. "0.1.0"). */
export const VERSION: string = meta.version;

/**
 * The placeholder tools/build.ts replaces in the bundle with the git commit it was built from
 * (containerd's form: the commit, `.m` added when the tree had changes). It is left as it is
 * when the daemon runs from source.
 */
export const REVISION_PLACEHOLDER = "containerd-ts:unstamped-revision";

/** What the build stamped, or the placeholder when running from source. */
const BUILD_REVISION: string = REVISION_PLACEHOLDER;

function readRevision(): string {
  // A prefix test, not `=== REVISION_PLACEHOLDER`: a minifier could fold that comparison of
  // two equal constants to `true` and leave no literal for the build to stamp.
  const built = BUILD_REVISION.startsWith("containerd-ts:") ? "unknown" : BUILD_REVISION;
  try {
    return Deno.env.get("CONTAINERD_TS_REVISION") || built;
  } catch {
    // No env permission (e.g. a sandboxed test run): only the build's stamp is known.
    return built;
  }
}

/** The source revision the daemon was built from, or "unknown". */
export const REVISION: string = readRevision();
