/**
 * `containerd-ts fsck`: check (and with `--repair`, fix what is safe in) the persistent
 * storage under the daemon's root — the local content store
 * (`<root>/io.containerd.content.v1.content`) and the metadata database
 * (`<root>/io.containerd.metadata.v1.sqlite/meta.db`).
 *
 * Checks:
 * - every blob under `blobs/sha256/` hashes to its name (else `corrupt blob`);
 * - nothing else lives under `blobs/` (else `stray file`, never removed);
 * - every ingest dir has `ref` and `data` and is named by the sha256 of its ref
 *   (else `broken ingest`);
 * - every metadata content row has its blob on disk (else `missing blob`);
 * - every blob on disk is referenced by a content row in some namespace (else
 *   `unreferenced blob`, informational: the garbage collector would remove it);
 * - every image's target digest has a content row in its namespace (else
 *   `missing image target`, informational).
 *
 * Without `--repair` nothing is written: the database is opened read-only, so fsck may run
 * beside a serving daemon. `--repair` refuses to run while a daemon answers on the configured
 * gRPC socket, and then only: removes corrupt blobs together with their content rows (one
 * transaction), removes broken ingest dirs, removes rows of missing blobs, and removes
 * unreferenced blobs. Nothing else is touched.
 *
 * Exit status: 0 when no problem remains (informational findings do not count), 1 when
 * problems were found (and, with `--repair`, not all were fixed), 2 for a usage error, a root
 * that does not exist, or a refused `--repair`.
 *
 * @example
 * ```ts
 * import { fsck } from "./fsck.ts";
 * const report = await fsck({ root: "/var/lib/containerd-ts" });
 * for (const f of report.findings) console.log(`${f.severity} ${f.kind} ${f.object}: ${f.detail}`);
 * ```
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { sha256Hex, sha256OfStream } from "./digest.ts";
import { loadConfig } from "./config.ts";
import type { CommandContext } from "./cli.ts";

/** The content plugin's directory under the root. */
export const CONTENT_DIR = "io.containerd.content.v1.content";
/** The metadata plugin's database under the root. */
export const METADATA_DB = "io.containerd.metadata.v1.sqlite/meta.db";

/** How bad a finding is: `error` counts as a problem, `info` does not. */
export type Severity = "error" | "info";

/** The kinds of finding fsck reports. */
export type FindingKind =
  | "corrupt blob"
  | "stray file"
  | "broken ingest"
  | "missing blob"
  | "unreferenced blob"
  | "missing image target";

/** One thing fsck noticed. */
export interface Finding {
  severity: Severity;
  kind: FindingKind;
  /** The object: a digest, a path, or `namespace/image`. */
  object: string;
  /** Why it is a finding, in words. */
  detail: string;
  /** Set when `--repair` fixed it: what was done. */
  repaired?: string;
}

/** Options of {@link fsck}. */
export interface FsckOptions {
  /** The daemon's root directory. */
  root: string;
  /** Fix what is safe (see the module doc). Default false: read only. */
  repair?: boolean;
}

/** What {@link fsck} found and did. */
export interface FsckReport {
  findings: Finding[];
  /** Blob files hashed. */
  blobs: number;
  /** Ingest dirs examined. */
  ingests: number;
  /** Metadata content rows examined (0 when there is no database). */
  contentRows: number;
  /** Whether the metadata database existed. */
  metadata: boolean;
  /** Findings with severity `error` that were not repaired. */
  problems: number;
}

const HEX64_RE = /^[a-f0-9]{64}$/;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function readDirSafe(path: string): Promise<Deno.DirEntry[]> {
  try {
    const out: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(path)) out.push(entry);
    out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    return out;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const file = await Deno.open(path, { read: true });
  // The readable closes the file when it ends.
  return await sha256OfStream(file.readable);
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Check the storage under `options.root`; with `repair`, fix what is safe. Never throws for
 * what it finds; throws only when the disk or database cannot be read at all.
 */
export async function fsck(options: FsckOptions): Promise<FsckReport> {
  const repair = options.repair ?? false;
  const contentRoot = join(options.root, CONTENT_DIR);
  const blobsRoot = join(contentRoot, "blobs");
  const blobDir = join(blobsRoot, "sha256");
  const ingestDir = join(contentRoot, "ingest");
  const dbPath = join(options.root, METADATA_DB);
  const findings: Finding[] = [];
  const report: FsckReport = {
    findings,
    blobs: 0,
    ingests: 0,
    contentRows: 0,
    metadata: false,
    problems: 0,
  };

  // 1. Blobs: stray entries, and each blob's digest.
  const good = new Set<string>(); // digests whose blob file is intact
  const corrupt = new Map<string, string>(); // digest → path
  for (const entry of await readDirSafe(blobsRoot)) {
    if (entry.name === "sha256" && entry.isDirectory) continue;
    findings.push({
      severity: "error",
      kind: "stray file",
      object: join(blobsRoot, entry.name),
      detail: "not a blob directory of the content store",
    });
  }
  for (const entry of await readDirSafe(blobDir)) {
    const path = join(blobDir, entry.name);
    if (!entry.isFile || !HEX64_RE.test(entry.name)) {
      findings.push({
        severity: "error",
        kind: "stray file",
        object: path,
        detail: entry.isFile ? "name is not a sha256 hex digest" : "not a regular file",
      });
      continue;
    }
    const digest = `sha256:${entry.name}`;
    let actual: { digest: string };
    try {
      actual = await hashFile(path);
    } catch (err) {
      // Removed since the listing (a serving daemon's GC): nothing to check.
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    report.blobs++;
    if (actual.digest === digest) {
      good.add(digest);
    } else {
      corrupt.set(digest, path);
    }
  }

  // 2. Ingests.
  for (const entry of await readDirSafe(ingestDir)) {
    const path = join(ingestDir, entry.name);
    if (!entry.isDirectory) {
      findings.push({
        severity: "error",
        kind: "stray file",
        object: path,
        detail: "not an ingest directory",
      });
      continue;
    }
    report.ingests++;
    const ref = await readText(join(path, "ref"));
    let why: string | undefined;
    if (ref === undefined) why = "ref file missing";
    else if (!(await exists(join(path, "data")))) why = "data file missing";
    else if (sha256Hex(ref) !== entry.name) {
      why = `ref ${JSON.stringify(ref)} does not hash to the directory name`;
    }
    if (why === undefined) continue;
    const finding: Finding = {
      severity: "error",
      kind: "broken ingest",
      object: path,
      detail: why,
    };
    if (repair) {
      await removeIfExists(path);
      finding.repaired = "removed the ingest directory";
    }
    findings.push(finding);
  }

  // 3. Metadata: content rows and images.
  if (await exists(dbPath)) {
    report.metadata = true;
    const db = new DatabaseSync(dbPath, repair ? {} : { readOnly: true });
    try {
      if (repair) {
        db.exec("PRAGMA foreign_keys = ON");
        db.exec("PRAGMA busy_timeout = 5000");
      }
      const rows = db.prepare("SELECT namespace, digest FROM content ORDER BY digest, namespace")
        .all() as { namespace: string; digest: string }[];
      report.contentRows = rows.length;
      const byDigest = new Map<string, string[]>();
      for (const row of rows) {
        const list = byDigest.get(row.digest) ?? [];
        list.push(row.namespace);
        byDigest.set(row.digest, list);
      }
      const deleteRow = db.prepare("DELETE FROM content WHERE namespace = ? AND digest = ?");
      const deleteLabels = db.prepare(
        "DELETE FROM content_labels WHERE namespace = ? AND digest = ?",
      );
      const removeRows = (digest: string, namespaces: readonly string[]) => {
        for (const ns of namespaces) {
          deleteLabels.run(ns, digest);
          deleteRow.run(ns, digest);
        }
      };

      // Corrupt blobs: the bytes are lost; the rows go with them, in one transaction.
      for (const [digest, path] of corrupt) {
        const namespaces = byDigest.get(digest) ?? [];
        const where = namespaces.length > 0
          ? `; referenced by namespace ${namespaces.join(", ")}`
          : "";
        const finding: Finding = {
          severity: "error",
          kind: "corrupt blob",
          object: digest,
          detail: `content does not hash to its name${where}`,
        };
        if (repair) {
          db.exec("BEGIN IMMEDIATE");
          try {
            removeRows(digest, namespaces);
            await removeIfExists(path);
            db.exec("COMMIT");
          } catch (err) {
            db.exec("ROLLBACK");
            throw err;
          }
          finding.repaired = namespaces.length > 0
            ? `removed the blob and its content rows in namespace ${namespaces.join(", ")}`
            : "removed the blob";
        }
        findings.push(finding);
      }

      // Rows whose blob is gone.
      const missing: [string, string[]][] = [];
      for (const [digest, namespaces] of byDigest) {
        if (good.has(digest) || corrupt.has(digest)) continue;
        // Committed since the listing (a serving daemon): not missing.
        const hex = digest.slice("sha256:".length);
        if (
          digest.startsWith("sha256:") && HEX64_RE.test(hex) && await exists(join(blobDir, hex))
        ) {
          continue;
        }
        missing.push([digest, namespaces]);
      }
      if (missing.length > 0) {
        if (repair) db.exec("BEGIN IMMEDIATE");
        try {
          for (const [digest, namespaces] of missing) {
            if (repair) removeRows(digest, namespaces);
            findings.push({
              severity: "error",
              kind: "missing blob",
              object: digest,
              detail: `referenced by namespace ${namespaces.join(", ")}`,
              ...(repair
                ? { repaired: `removed its content rows in namespace ${namespaces.join(", ")}` }
                : {}),
            });
          }
          if (repair) db.exec("COMMIT");
        } catch (err) {
          if (repair) db.exec("ROLLBACK");
          throw err;
        }
      }

      // Blobs nobody references.
      for (const digest of good) {
        if (byDigest.has(digest)) continue;
        const finding: Finding = {
          severity: "info",
          kind: "unreferenced blob",
          object: digest,
          detail: "no namespace references it; garbage collection would remove it",
        };
        if (repair) {
          await removeIfExists(join(blobDir, digest.slice("sha256:".length)));
          finding.repaired = "removed the blob";
        }
        findings.push(finding);
      }

      // Images whose target has no content row (checked after repairs: it reflects them).
      const images = db.prepare(
        `SELECT i.namespace AS namespace, i.name AS name, i.target_digest AS digest
           FROM images i
          WHERE NOT EXISTS (SELECT 1 FROM content c
                             WHERE c.namespace = i.namespace AND c.digest = i.target_digest)
          ORDER BY i.namespace, i.name`,
      ).all() as { namespace: string; name: string; digest: string }[];
      for (const image of images) {
        findings.push({
          severity: "info",
          kind: "missing image target",
          object: `${image.namespace}/${image.name}`,
          detail: `target ${
            image.digest || "(empty)"
          } has no content in namespace ${image.namespace}`,
        });
      }
    } finally {
      db.close();
    }
  } else {
    // Without the database nothing can be called referenced or missing; still report corruption.
    for (const [digest, path] of corrupt) {
      const finding: Finding = {
        severity: "error",
        kind: "corrupt blob",
        object: digest,
        detail: "content does not hash to its name",
      };
      if (repair) {
        await removeIfExists(path);
        finding.repaired = "removed the blob";
      }
      findings.push(finding);
    }
  }

  report.problems = findings.filter((f) => f.severity === "error" && f.repaired === undefined)
    .length;
  return report;
}

/** One finding as a line: `<severity> <kind> <object>: <detail>`. */
export function formatFinding(finding: Finding): string {
  return `${finding.severity} ${finding.kind} ${finding.object}: ${finding.detail}`;
}

/** The summary line of a report. */
export function formatSummary(report: FsckReport): string {
  const errors = report.findings.filter((f) => f.severity === "error").length;
  const infos = report.findings.length - errors;
  const repaired = report.findings.filter((f) => f.repaired !== undefined).length;
  const rows = report.metadata ? `${report.contentRows} content rows` : "no metadata database";
  return `fsck: ${report.blobs} blobs, ${report.ingests} ingests, ${rows} checked; ` +
    `${errors} problems, ${infos} notes, ${repaired} repaired; ` +
    (report.problems === 0 ? "clean" : `${report.problems} problems remain`);
}

/** Whether something accepts connections on the unix socket `path` (a serving daemon). */
export async function socketServing(path: string): Promise<boolean> {
  if (path === "") return false;
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

function flagString(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.values[name];
  return typeof value === "string" ? value : undefined;
}

/**
 * The `fsck` command: load the config (`-c`, `--root`, `-a`), refuse `--repair` beside a
 * serving daemon, run {@link fsck}, print findings (or JSON) and return the exit status.
 */
export async function runFsck(ctx: CommandContext): Promise<number> {
  const { config } = await loadConfig({
    config: flagString(ctx, "config"),
    root: flagString(ctx, "root"),
    address: flagString(ctx, "address"),
  }, ctx.env);
  const repair = ctx.values.repair === true;
  const json = ctx.values.json === true;
  if (repair && await socketServing(config.grpc.address)) {
    ctx.err(
      `containerd-ts: fsck --repair refused: a daemon is serving on ${config.grpc.address}; ` +
        "stop it first (fsck without --repair is read-only and may run beside it)\n",
    );
    return 2;
  }
  if (!(await exists(config.root))) {
    ctx.err(`containerd-ts: fsck: root ${config.root} does not exist\n`);
    return 2;
  }
  const report = await fsck({ root: config.root, repair });
  if (json) {
    ctx.out(`${JSON.stringify({ root: config.root, repair, ...report }, null, 2)}\n`);
  } else {
    for (const finding of report.findings) ctx.out(`${formatFinding(finding)}\n`);
    if (repair) {
      for (const finding of report.findings) {
        if (finding.repaired !== undefined) {
          ctx.out(`repaired ${finding.kind} ${finding.object}: ${finding.repaired}\n`);
        }
      }
    }
    ctx.out(`${formatSummary(report)}\n`);
  }
  return report.problems === 0 ? 0 : 1;
}
