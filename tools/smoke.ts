/**
 * `deno task smoke`: boot the real daemon on temp dirs, drive a short scripted session
 * through the client, stop it, and check every answer — the one command CI runs to know a
 * build works.
 *
 * Steps: boot `bin/containerd-ts` (config with `[debug] address` and any
 * `--required-plugin`), wait for Health SERVING, Version, Introspection Server and Plugins
 * (every plugin ok or skip; errors are printed and fail the run, except those containerd
 * itself reports on a stock machine, {@link EXPECTED_ERRORS}, and `--allow-error URI`), then — when the daemon
 * serves them — a namespace create/get/label/list/delete, a leased blob round trip through
 * content (write with progress, read back, digest compare, namespace isolation), a lease
 * lifecycle, and an event subscription; `containerd-ts status` against it; SIGTERM, exit
 * status 0 and the socket removed. Services the daemon does not serve are reported as
 * `skip` with the reason.
 *
 * Output: one line per step (`ok`, `skip`), then `smoke: PASS ...`; on any failure the daemon
 * log's tail, then one line `smoke: FAIL: <step>: <reason>` on stderr and exit status 1
 * (2 for a bad flag).
 *
 * ```sh
 * deno task smoke                                             # the check
 * deno task smoke --required-plugin io.containerd.nope.v1.missing   # must fail
 * deno task smoke --keep                                      # leave the daemon's dirs
 * deno task smoke --allow-error io.containerd.x.v1.y          # tolerate a known failure
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  connect,
  type EventEnvelope,
  NotFoundError,
  type PluginInfo,
} from "../client/mod.ts";

/** Absolute path of the repository. */
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Options of {@link runSmoke}. */
export interface SmokeOptions {
  /** Plugin URIs written to the config's `required_plugins`. */
  requiredPlugins?: string[];
  /**
   * Plugins whose init error does not fail the run (still printed). Default
   * {@link EXPECTED_ERRORS}.
   */
  allowedErrors?: string[];
  /** Leave the temp dir (config, root, state, log) in place. Default false. */
  keep?: boolean;
  /** How long to wait for SERVING. Default 60 000 ms. */
  bootTimeoutMs?: number;
  /** The launcher. Default `<repo>/bin/containerd-ts`. */
  launcher?: string;
  /** Where step lines go. Default stdout. */
  out?: (line: string) => void;
}

/**
 * Plugins containerd itself reports as `error` on a stock machine: devmapper without a
 * `pool_name` (containerd 1.6 fails it rather than skipping it).
 */
export const EXPECTED_ERRORS: readonly string[] = ["io.containerd.snapshotter.v1.devmapper"];

/** Why a step failed; the message is the one line the run ends with. */
export class SmokeFailure extends Error {
  constructor(step: string, message: string) {
    super(`${step}: ${message}`);
    this.name = "SmokeFailure";
  }
}

/** Fields of one logfmt line (`key=value`, `key="quoted \"value\""`). */
export function parseLogfmt(line: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const m of line.matchAll(/([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const [, key = "", raw = ""] = m;
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw.slice(1, -1);
      }
    }
    fields[key] = value;
  }
  return fields;
}

/**
 * The daemon's last error or fatal log line as "msg: error", or its last line when there is
 * none — what a failed boot is explained by.
 *
 * @example
 * ```ts
 * import { lastError } from "./smoke.ts";
 * lastError('time="x" level=error msg="boot failed" error="disk full"\n'); // "boot failed: disk full"
 * ```
 */
export function lastError(log: string): string {
  const lines = log.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  for (let i = lines.length - 1; i >= 0; i--) {
    const fields = parseLogfmt(lines[i] ?? "");
    if (fields.level === "error" || fields.level === "fatal" || fields.level === "panic") {
      return [fields.msg, fields.error].filter((x) => x).join(": ");
    }
  }
  return lines.at(-1) ?? "(no output)";
}

/** A daemon booted by the smoke run. */
interface Daemon {
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  log(): string;
}

function boot(launcher: string, args: string[], logPath: string): Daemon {
  const process = new Deno.Command(launcher, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { DENO_BIN: Deno.execPath() },
  }).spawn();
  let text = "";
  const pump = (async () => {
    const file = await Deno.open(logPath, { write: true, create: true, truncate: true });
    try {
      const decoder = new TextDecoder();
      for await (const chunk of process.stderr) {
        text += decoder.decode(chunk, { stream: true });
        await file.write(chunk);
      }
    } finally {
      file.close();
    }
  })();
  const exited = process.status.then(async (status) => {
    await pump.catch(() => {});
    return status;
  });
  return { process, exited, log: () => text };
}

function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

async function sha256(data: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function check(step: string, condition: boolean, message: string): asserts condition {
  if (!condition) throw new SmokeFailure(step, message);
}

/** Run `fn`; a thrown error becomes a SmokeFailure of `step` naming its class. */
async function step<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SmokeFailure) throw err;
    const name = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    throw new SmokeFailure(step, name);
  }
}

async function expectNotFound(what: string, call: Promise<unknown>): Promise<void> {
  const err = await call.then(() => undefined, (e) => e);
  check(what, err instanceof NotFoundError, `expected NotFoundError, got ${err ?? "success"}`);
}

/** Wait for the first of `promise` and the daemon's exit (which is a failure). */
async function whileRunning<T>(daemon: Daemon, what: string, promise: Promise<T>): Promise<T> {
  const exited = daemon.exited.then((status) => {
    throw new SmokeFailure(
      what,
      `daemon exited with status ${status.code} before serving: ${lastError(daemon.log())}`,
    );
  });
  return await Promise.race([promise, exited]);
}

async function namespacesSession(client: Client, say: (s: string) => void): Promise<void> {
  const name = `smoke-${crypto.randomUUID().slice(0, 8)}`;
  await step("namespaces", async () => {
    const created = await client.namespaces.create(name, { labels: { smoke: "1" } });
    check("namespaces", created.name === name, `create answered ${JSON.stringify(created)}`);
    const got = await client.namespaces.get(name);
    check("namespaces", got.labels.smoke === "1", `get answered labels ${JSON.stringify(got)}`);
    await client.namespaces.update(name, { smoke: "2" }, { fields: ["labels.smoke"] });
    const updated = await client.namespaces.get(name);
    check("namespaces", updated.labels.smoke === "2", `update left ${JSON.stringify(updated)}`);
    const listed = (await client.namespaces.list()).map((n) => n.name);
    check("namespaces", listed.includes(name), `list ${JSON.stringify(listed)} lacks ${name}`);
    await client.namespaces.delete(name);
    const left = (await client.namespaces.list()).map((n) => n.name);
    check("namespaces", !left.includes(name), `${name} still listed after delete`);
    await expectNotFound("namespaces", client.namespaces.delete(name));
  });
  say(`ok   namespaces: create/get/label/list/delete ${name}; deleting again is NotFound`);
}

async function contentSession(
  client: Client,
  leased: boolean,
  say: (s: string) => void,
): Promise<void> {
  const size = 3 * 1024 * 1024 + 12345;
  const data = randomBytes(size);
  const expected = await sha256(data);
  const ns = client.withNamespace(`smoke-content-${crypto.randomUUID().slice(0, 8)}`);
  await step("content", async () => {
    await using lease = leased ? await ns.leases.create({ expiresInMs: 600_000 }) : undefined;
    const writer = lease ? ns.withLease(lease) : ns;
    const offsets: number[] = [];
    const result = await writer.content.write(`smoke-${Date.now()}`, data, {
      expected,
      onProgress: (p) => offsets.push(p.offset),
    });
    check("content", result.digest === expected, `committed ${result.digest}, sent ${expected}`);
    check("content", result.size === size, `committed ${result.size} bytes, sent ${size}`);
    check(
      "content",
      offsets.length >= 4 && offsets.at(-1) === size &&
        offsets.every((o, i) => i === 0 || o >= (offsets[i - 1] ?? 0)),
      `progress offsets ${JSON.stringify(offsets)} do not climb to ${size}`,
    );
    const info = await ns.content.info(expected);
    check("content", info.size === size, `info says ${info.size} bytes, wrote ${size}`);
    const back = new Uint8Array(await new Response(ns.content.read(expected)).arrayBuffer());
    const got = await sha256(back);
    check("content", got === expected, `read back ${back.length} bytes with digest ${got}`);
    await expectNotFound("content", client.withNamespace("default").content.info(expected));
    await ns.content.delete(expected);
    await expectNotFound("content", ns.content.info(expected));
  });
  say(
    `ok   content: ${size} bytes written${leased ? " under a lease" : ""}, read back, digest ` +
      `${expected.slice(0, 19)}… matches, invisible from another namespace, deleted`,
  );
}

async function leasesSession(client: Client, say: (s: string) => void): Promise<void> {
  const id = `smoke-${crypto.randomUUID().slice(0, 8)}`;
  await step("leases", async () => {
    {
      await using lease = await client.leases.create({ id, labels: { smoke: "1" } });
      check("leases", lease.id === id, `create answered id ${lease.id}`);
      const ids = (await client.leases.list()).map((l) => l.id);
      check("leases", ids.includes(id), `list ${JSON.stringify(ids)} lacks ${id}`);
    }
    const after = (await client.leases.list()).map((l) => l.id);
    check("leases", !after.includes(id), `lease ${id} still listed after dispose`);
  });
  say(`ok   leases: create ${id}, list, delete on dispose`);
}

async function eventsSession(
  client: Client,
  withNamespaces: boolean,
  say: (s: string) => void,
): Promise<void> {
  const name = `smoke-ev-${crypto.randomUUID().slice(0, 8)}`;
  const filters = [`topic=="/smoke/ping",namespace==${client.namespace}`];
  if (withNamespaces) filters.push('topic=="/namespaces/create"');
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10_000);
  const events = client.events.subscribe({ filters, signal: abort.signal });
  let sawNamespace = false;
  try {
    await step("events", async () => {
      // Publish pings until one comes back: then the subscription is live for sure.
      const first = events.next();
      let got: IteratorResult<EventEnvelope, void> | undefined;
      first.then((r) => (got = r), () => {});
      while (got === undefined && !abort.signal.aborted) {
        await client.events.publish("/smoke/ping", { schema: EmptySchema }).catch(() => {});
        await Promise.race([first.catch(() => {}), new Promise((r) => setTimeout(r, 100))]);
      }
      const ping = await first;
      check("events", !ping.done && ping.value.topic === "/smoke/ping", "no ping came back");
      if (!withNamespaces) return;
      await client.namespaces.create(name);
      for (;;) {
        const next = await events.next();
        check("events", !next.done, "subscription ended");
        if (next.value.topic !== "/namespaces/create") continue;
        const event = next.value.event as { name?: string } | undefined;
        if (event?.name === name) break;
      }
      sawNamespace = true;
      await client.namespaces.delete(name);
    });
  } finally {
    clearTimeout(timer);
    await events.return();
  }
  say(
    `ok   events: subscription live (published /smoke/ping came back)` +
      (sawNamespace ? `, /namespaces/create for ${name} decoded` : ""),
  );
}

/**
 * Run the smoke session; resolves with the number of checks passed and skipped, rejects
 * with a {@link SmokeFailure} (or another error) on the first failure.
 *
 * @example
 * ```ts
 * import { runSmoke } from "./smoke.ts";
 * const { passed } = await runSmoke({ out: console.log });
 * ```
 */
export async function runSmoke(
  options: SmokeOptions = {},
): Promise<{ passed: number; skipped: number }> {
  const say = options.out ?? ((line: string) => console.log(line));
  const launcher = options.launcher ?? `${REPO}/bin/containerd-ts`;
  const dir = await Deno.makeTempDir({ prefix: "cts-smoke-" });
  const address = `${dir}/containerd-ts.sock`;
  const debugAddress = `${dir}/debug.sock`;
  const required = options.requiredPlugins ?? [];
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    [
      "version = 2",
      `required_plugins = ${JSON.stringify(required)}`,
      "",
      "[debug]",
      `  address = ${JSON.stringify(debugAddress)}`,
      "",
    ].join("\n"),
  );
  const daemon = boot(launcher, [
    "--config",
    `${dir}/config.toml`,
    "--root",
    `${dir}/root`,
    "--state",
    `${dir}/state`,
    "--address",
    address,
  ], `${dir}/daemon.log`);
  const client = connect({ address, timeoutMs: 10_000 });
  let passed = 0;
  let skipped = 0;
  const ok = (line: string) => {
    passed++;
    say(line);
  };
  const skip = (line: string) => {
    skipped++;
    say(line);
  };
  let stopped = false;
  try {
    await step(
      "boot",
      () =>
        whileRunning(
          daemon,
          "boot",
          client.health.waitServing({ timeoutMs: options.bootTimeoutMs ?? 60_000 }),
        ),
    );
    ok(`ok   boot: Health SERVING on ${address}`);

    const version = await step("version", () => client.version.get());
    check("version", /^\d+\.\d+\.\d+/.test(version.version), `version ${version.version}`);
    check("version", version.revision !== "", "empty revision");
    ok(`ok   version: ${version.version} (revision ${version.revision})`);

    const server = await step("server", () => client.introspection.server());
    check("server", /^[0-9a-f-]{36}$/.test(server.uuid), `uuid ${JSON.stringify(server.uuid)}`);
    check("server", server.pid > 0, `pid ${server.pid}`);
    ok(`ok   server: uuid ${server.uuid}, pid ${server.pid}`);

    const plugins = await step("plugins", () => client.introspection.plugins());
    const allowed = new Set(options.allowedErrors ?? EXPECTED_ERRORS);
    const failed = plugins.filter((p) => p.status === "error" && !allowed.has(p.uri));
    for (const p of plugins.filter((p) => p.status !== "ok")) {
      const label = p.status === "skip" ? "skip" : allowed.has(p.uri) ? "error (allowed)" : "ERROR";
      say(`     plugin ${p.uri}: ${label}: ${p.error?.message ?? ""}`);
    }
    check(
      "plugins",
      failed.length === 0,
      `${failed.length} plugin(s) failed: ${failed.map((p) => p.uri).join(", ")}`,
    );
    const counts = `${plugins.length} plugins, ` +
      `${plugins.filter((p) => p.status === "ok").length} ok, ` +
      `${plugins.filter((p) => p.status === "skip").length} skip, ` +
      `${plugins.filter((p) => p.status === "error").length - failed.length} allowed error`;
    ok(`ok   plugins: ${counts}`);

    const serving = (id: string): PluginInfo | undefined =>
      plugins.find((p) => p.uri === `io.containerd.grpc.v1.${id}` && p.status === "ok");
    const absent = (id: string) =>
      `skip ${id}: io.containerd.grpc.v1.${id} is not served by this daemon`;

    if (serving("namespaces")) {
      await namespacesSession(client, ok);
    } else skip(absent("namespaces"));

    if (serving("content")) {
      await contentSession(client, serving("leases") !== undefined, ok);
    } else skip(absent("content"));

    if (serving("leases")) {
      await leasesSession(client, ok);
    } else skip(absent("leases"));

    if (serving("events")) {
      await eventsSession(client, serving("namespaces") !== undefined, ok);
    } else skip(absent("events"));

    const status = await step("status", async () => {
      const out = await new Deno.Command(launcher, {
        args: ["status", "--address", address, "--debug-address", debugAddress],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { DENO_BIN: Deno.execPath() },
      }).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    });
    check(
      "status",
      status.code === 0 && /serving/.test(status.stdout),
      `containerd-ts status exited ${status.code}: ${
        (status.stderr || status.stdout).trim().split("\n")[0]
      }`,
    );
    ok("ok   status: `containerd-ts status` exits 0 and says serving");

    await client.close();
    stopped = true;
    daemon.process.kill("SIGTERM");
    const exit = await step(
      "shutdown",
      () =>
        Promise.race([
          daemon.exited,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error("still running 20 s after SIGTERM")), 20_000)
          ),
        ]),
    );
    check("shutdown", exit.code === 0, `exit status ${exit.code}: ${lastError(daemon.log())}`);
    const socketLeft = await Deno.stat(address).then(() => true, () => false);
    check("shutdown", !socketLeft, `socket ${address} still exists after exit`);
    ok("ok   shutdown: SIGTERM, exit status 0, socket removed");
    return { passed, skipped };
  } catch (err) {
    const log = daemon.log().trimEnd().split("\n").slice(-15);
    if (log.length > 0 && log[0] !== "") {
      console.error("smoke: daemon log (last lines):");
      for (const line of log) console.error(`  ${line}`);
    }
    throw err;
  } finally {
    await client.close();
    try {
      daemon.process.kill(stopped ? "SIGKILL" : "SIGTERM");
    } catch {
      // already gone
    }
    const gone = await Promise.race([
      daemon.exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    if (!gone) {
      try {
        daemon.process.kill("SIGKILL");
      } catch {
        // already gone
      }
      await daemon.exited;
    }
    if (options.keep) say(`smoke: kept ${dir} (config.toml, root/, state/, daemon.log)`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const USAGE = "usage: deno task smoke [--required-plugin URI]... [--allow-error URI]... " +
  "[--keep] [--boot-timeout-ms N]";

/** The command line; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        "required-plugin": { type: "string", multiple: true },
        "allow-error": { type: "string", multiple: true },
        keep: { type: "boolean" },
        "boot-timeout-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`smoke: ${(err as Error).message.split("\n")[0]}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const bootTimeoutMs = values["boot-timeout-ms"] === undefined
    ? undefined
    : Number(values["boot-timeout-ms"]);
  if (bootTimeoutMs !== undefined && !(bootTimeoutMs > 0)) {
    console.error(`smoke: --boot-timeout-ms must be a positive number\n${USAGE}`);
    return 2;
  }
  const started = performance.now();
  try {
    const { passed, skipped } = await runSmoke({
      requiredPlugins: values["required-plugin"] ?? [],
      allowedErrors: [...EXPECTED_ERRORS, ...(values["allow-error"] ?? [])],
      keep: values.keep ?? false,
      ...(bootTimeoutMs === undefined ? {} : { bootTimeoutMs }),
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`smoke: PASS (${passed} checks, ${skipped} skipped, ${seconds}s)`);
    return 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`smoke: FAIL: ${message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
