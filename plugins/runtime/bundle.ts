/**
 * Task bundles: the directory a shim runs a container from, laid out as containerd's runtime
 * v2 lays it out so Debian's `containerd-shim-runc-v2` finds what it expects.
 *
 * `<state>/<ns>/<id>` (0700; parents 0711) holds `config.json` (the container's spec bytes,
 * verbatim), `rootfs/` (0711; the shim mounts the rootfs there), `work` (a symlink to the
 * persistent `<root>/<ns>/<id>`, 0711), the `log` FIFO the shim writes its stderr into, and
 * what the shim itself writes (`address`, `shim.pid`, `init.pid`). Namespace and id are
 * checked as identifiers before any path is built, so a request cannot point outside the root.
 *
 * @module
 */
import * as path from "node:path";
import { validateIdentifier } from "../../server/interceptors.ts";
import { unmountAll } from "../../server/mount.ts";
import { makeFifo } from "../diff/libc.ts";

/** Where bundles live: the runtime plugin's state and root dirs. */
export interface BundleRoots {
  /** `<state>/io.containerd.runtime.v2.task`. */
  state: string;
  /** `<root>/io.containerd.runtime.v2.task`. */
  root: string;
}

/** One task's bundle. */
export interface Bundle {
  id: string;
  namespace: string;
  /** The bundle dir, `<state>/<ns>/<id>`. */
  path: string;
  /** The persistent work dir, `<root>/<ns>/<id>`. */
  workDir: string;
}

function locate(roots: BundleRoots, namespace: string, id: string): Bundle {
  validateIdentifier(namespace);
  validateIdentifier(id);
  const bundlePath = path.join(roots.state, namespace, id);
  const workDir = path.join(roots.root, namespace, id);
  for (const [dir, base] of [[bundlePath, roots.state], [workDir, roots.root]] as const) {
    if (path.relative(base, dir).startsWith("..")) {
      throw new Error(`bundle path ${dir} escapes ${base}`);
    }
  }
  return { id, namespace, path: bundlePath, workDir };
}

/**
 * Create the bundle of task `id` in `namespace` with `spec` as config.json. A leftover bundle
 * of the same id (a crash between create and delete) is removed first.
 */
export async function createBundle(
  roots: BundleRoots,
  ref: { namespace: string; id: string },
  spec: Uint8Array,
): Promise<Bundle> {
  const bundle = locate(roots, ref.namespace, ref.id);
  await Deno.mkdir(path.dirname(bundle.path), { recursive: true, mode: 0o711 });
  await Deno.mkdir(path.dirname(bundle.workDir), { recursive: true, mode: 0o711 });
  await deleteBundle(bundle);
  await Deno.mkdir(bundle.path, { mode: 0o700 });
  try {
    await Deno.mkdir(bundle.workDir, { mode: 0o711 });
    await Deno.symlink(bundle.workDir, path.join(bundle.path, "work"));
    await Deno.mkdir(path.join(bundle.path, "rootfs"), { mode: 0o711 });
    await Deno.chmod(path.join(bundle.path, "rootfs"), 0o711);
    await Deno.writeFile(path.join(bundle.path, "config.json"), spec, { mode: 0o666 });
    // The shim's log pipe; Deno has no mkfifo.
    makeFifo(path.join(bundle.path, "log"), 0o700);
  } catch (err) {
    await deleteBundle(bundle).catch(() => {});
    throw err;
  }
  return bundle;
}

/** The bundle of `id` in `namespace` as found on disk (no checks beyond the path rules). */
export function loadBundle(roots: BundleRoots, namespace: string, id: string): Bundle {
  return locate(roots, namespace, id);
}

/**
 * Remove a bundle: unmount whatever is still mounted on its rootfs (a shim killed before its
 * own cleanup), then the work dir and the bundle. Missing parts are fine.
 */
export async function deleteBundle(bundle: Bundle): Promise<void> {
  const rootfs = path.join(bundle.path, "rootfs");
  await unmountAll(rootfs);
  await Deno.remove(bundle.workDir, { recursive: true }).catch(ignoreNotFound);
  await Deno.remove(bundle.path, { recursive: true }).catch(ignoreNotFound);
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof Deno.errors.NotFound)) throw err;
}

/** The ids of every bundle dir under `<state>/<ns>`, per namespace (dot dirs skipped). */
export async function listBundles(roots: BundleRoots): Promise<Bundle[]> {
  const found: Bundle[] = [];
  for (const namespace of await dirNames(roots.state)) {
    for (const id of await dirNames(path.join(roots.state, namespace))) {
      try {
        found.push(locate(roots, namespace, id));
      } catch {
        // Not a name this daemon would have created: leave it alone.
      }
    }
  }
  return found;
}

/** Work dirs under `<root>/<ns>/<id>` whose bundle is gone (a crash between the two removes). */
export async function orphanWorkDirs(roots: BundleRoots): Promise<string[]> {
  const orphans: string[] = [];
  for (const namespace of await dirNames(roots.root)) {
    for (const id of await dirNames(path.join(roots.root, namespace))) {
      const bundlePath = path.join(roots.state, namespace, id);
      try {
        await Deno.lstat(bundlePath);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) orphans.push(path.join(roots.root, namespace, id));
      }
    }
  }
  return orphans;
}

async function dirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory && !entry.name.startsWith(".")) names.push(entry.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.sort();
}
