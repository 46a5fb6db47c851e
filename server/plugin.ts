/**
 * The plugin system: registrations as plain data, ordering by requirements, initialisation
 * with a typed InitContext, and the PluginSet that keeps every result (failures included).
 *
 * A capability is a module that calls {@link register} when imported; plugins/mod.ts is the
 * one list of built-in modules. Boot asks the registry for a {@link Registry.graph} (stable,
 * requirements first, disabled ones dropped), then {@link initPlugins} runs each `init` in
 * that order. Lookups are typed by {@link PluginType} tokens, so no call site casts.
 *
 * @example
 * ```ts
 * import { pluginType, Registry } from "./plugin.ts";
 * const Greeter = pluginType<{ hello(): string }>("io.example.greeter.v1");
 * const registry = new Registry();
 * registry.register({ type: Greeter, id: "en", init: () => ({ hello: () => "hi" }) });
 * ```
 * @module
 */
import type { Exchange } from "./exchange.ts";
import { type HeapTrimmer, NO_HEAP_TRIM } from "./heap_trim.ts";
import type { Logger } from "./log.ts";

/**
 * A plugin type, carrying the TypeScript type of its instances. `name` is containerd's type
 * string (e.g. `io.containerd.content.v1`).
 */
export interface PluginType<T> {
  readonly name: string;
  /** Phantom field: never set, only carries T. */
  readonly __instance?: T;
}

/** Make a plugin type token. */
export function pluginType<T>(name: string): PluginType<T> {
  return { name };
}

/** `requires: [ALL]` means: initialise after every other plugin (containerd's "*"). */
export const ALL = "*" as const;

/** A config section decoder: defaults plus validation, owned by each plugin. */
export interface ConfigSchema<C> {
  /** A fresh copy of the defaults; `config default` prints these. */
  defaults(): C;
  /**
   * Decode a raw TOML table over the defaults. Throws a ConfigError naming the key and the
   * expected type; unknown keys come back as warnings naming them. `where` names the table
   * for messages, e.g. `plugins."io.containerd.gc.v1.scheduler"`.
   */
  decode(raw: Record<string, unknown>, where: string): { value: C; warnings: string[] };
}

/** The platform a plugin serves, reported by introspection. */
export interface PluginPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** What a plugin tells introspection about itself; `init` fills it through ctx.meta. */
export interface PluginMeta {
  exports: Record<string, string>;
  capabilities: string[];
  platforms: PluginPlatform[];
}

/** Daemon-wide facts a plugin may need (containerd's InitContext.Properties). */
export interface PluginProperties {
  /** The daemon's root dir (`<root>`). */
  rootDir: string;
  /** The daemon's state dir. */
  stateDir: string;
  /** The gRPC unix socket path. */
  grpcAddress: string;
  /** The ttrpc unix socket path. */
  ttrpcAddress: string;
}

/** What `init` receives. */
export interface InitContext<C> {
  /** `<type>.<id>`, e.g. `io.containerd.grpc.v1.version`. */
  readonly uri: string;
  /** `<root>/<type>.<id>`: this plugin's persistent dir (not created for it). */
  readonly root: string;
  /** `<state>/<type>.<id>`: this plugin's runtime dir (not created for it). */
  readonly state: string;
  /** This plugin's decoded config section. */
  readonly config: C;
  readonly properties: PluginProperties;
  /** The event exchange every plugin publishes to and subscribes on. */
  readonly events: Exchange;
  /**
   * The daemon's heap trimmer: a plugin that moves bulk data through memory notes the bytes,
   * so the memory goes back to the OS once the burst pauses (heap_trim.ts).
   */
  readonly heapTrimmer: HeapTrimmer;
  /** A logger tagged with this plugin's type and id. */
  readonly log: Logger;
  /** Aborted when the daemon shuts down. */
  readonly signal: AbortSignal;
  /** Exports, capabilities and platforms to report through introspection. */
  readonly meta: PluginMeta;
  /**
   * The instance of a plugin initialised before this one: by type (the first that loaded)
   * or by type and id. Throws NotFoundError naming the chain when it failed or skipped.
   */
  get<T>(type: PluginType<T>, id?: string): T;
  /** Every loaded instance of a type, by id, in init order. */
  getAll<T>(type: PluginType<T>): Map<string, T>;
  /** Every plugin record so far (introspection reads this). */
  readonly plugins: PluginSet;
}

/** A plugin registration: plain data plus the init function. */
export interface Registration<T = unknown, C = unknown> {
  readonly type: PluginType<T>;
  readonly id: string;
  /** Types that must initialise first; `[ALL]` = after all others. */
  readonly requires?: readonly (PluginType<unknown> | typeof ALL)[];
  /** This plugin's config section; omit when it takes none. */
  readonly config?: ConfigSchema<C>;
  init(ctx: InitContext<C>): T | Promise<T>;
}

/** Thrown by init to say "not on this machine": listed as skip, never as failure. */
export class SkipPluginError extends Error {
  constructor(reason: string) {
    // containerd's clients classify a plugin as skipped when the message says "skip plugin".
    super(`${reason}: skip plugin`);
    this.name = "SkipPluginError";
  }
}

/** A registration or ordering mistake; boot refuses to start on one. */
export class PluginRegistrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PluginRegistrationError";
  }
}

/** `<type>.<id>` of a registration. */
export function uriOf(reg: { type: PluginType<unknown>; id: string }): string {
  return `${reg.type.name}.${reg.id}`;
}

function requiredTypes(reg: Registration): readonly (PluginType<unknown> | typeof ALL)[] {
  return reg.requires ?? [];
}

function requiresAll(reg: Registration): boolean {
  return requiredTypes(reg).includes(ALL);
}

/**
 * An ordered set of registrations. The daemon uses one (below); tests make their own.
 */
export class Registry {
  #registrations: Registration[] = [];

  /** Add a registration; refuses an empty id, a duplicate, or `*` mixed with other types. */
  register<T, C>(reg: Registration<T, C>): void {
    if (!reg.id) throw new PluginRegistrationError(`plugin of type ${reg.type.name}: empty id`);
    if (!reg.type.name) throw new PluginRegistrationError(`plugin ${reg.id}: empty type`);
    const uri = uriOf(reg);
    if (this.#registrations.some((r) => uriOf(r) === uri)) {
      throw new PluginRegistrationError(`plugin ${uri}: registered twice`);
    }
    const requires = reg.requires ?? [];
    if (requires.includes(ALL) && requires.length > 1) {
      throw new PluginRegistrationError(`plugin ${uri}: "*" cannot be mixed with other requires`);
    }
    this.#registrations.push(reg as Registration);
  }

  /** Every registration in registration order. */
  list(): readonly Registration[] {
    return this.#registrations;
  }

  /**
   * Registrations in init order: registration order, each preceded by what it requires
   * (recursively); those `isDisabled` accepts are dropped. A requirement cycle throws,
   * naming the cycle.
   */
  graph(isDisabled: (uri: string) => boolean = () => false): Registration[] {
    const enabled = this.#registrations.filter((r) => !isDisabled(uriOf(r)));
    const ordered: Registration[] = [];
    const added = new Set<string>();
    const visiting: string[] = [];
    const visit = (reg: Registration) => {
      const uri = uriOf(reg);
      if (added.has(uri)) return;
      const at = visiting.indexOf(uri);
      if (at >= 0) {
        const cycle = [...visiting.slice(at), uri].join(" -> ");
        throw new PluginRegistrationError(`plugin requirement cycle: ${cycle}`);
      }
      visiting.push(uri);
      for (const required of requiredTypes(reg)) {
        for (const dep of enabled) {
          if (dep === reg) continue;
          const matches = required === ALL
            // Two "*" plugins are peers: each waits for all others but not for the other.
            ? !requiresAll(dep)
            : dep.type.name === required.name;
          if (matches) visit(dep);
        }
      }
      visiting.pop();
      added.add(uri);
      ordered.push(reg);
    };
    for (const reg of enabled) if (!requiresAll(reg)) visit(reg);
    for (const reg of enabled) visit(reg);
    return ordered;
  }
}

/** The daemon's registry: the one piece of module-level mutable state in the project. */
export const registry: Registry = new Registry();

/** Register a built-in plugin with the daemon's registry; called at import by plugin modules. */
export function register<T, C>(reg: Registration<T, C>): void {
  registry.register(reg);
}

/** Outcome of one plugin's init. */
export type PluginStatus = "ok" | "skip" | "error";

/** One plugin's init result, kept for introspection, status and debug output. */
export interface PluginRecord {
  readonly registration: Registration;
  readonly uri: string;
  readonly status: PluginStatus;
  /** Set when status is "ok". */
  readonly instance?: unknown;
  /** Set when status is "skip" or "error": the reason, with its cause chain. */
  readonly error?: Error;
  readonly meta: PluginMeta;
  /** Milliseconds init took. */
  readonly initMs: number;
}

/** The results of init, in init order; lookups name the chain when a dependency is missing. */
export class PluginSet {
  readonly #records: PluginRecord[] = [];

  /** Record a result (used by initPlugins). */
  add(record: PluginRecord): void {
    this.#records.push(record);
  }

  /** Every record in init order. */
  records(): readonly PluginRecord[] {
    return this.#records;
  }

  /** See {@link InitContext.get}. */
  get<T>(type: PluginType<T>, id?: string): T {
    const candidates = this.#records.filter((r) =>
      r.registration.type.name === type.name && (id === undefined || r.registration.id === id)
    );
    const loaded = candidates.find((r) => r.status === "ok");
    if (loaded) return loaded.instance as T;
    const wanted = id === undefined ? type.name : `${type.name}.${id}`;
    if (candidates.length === 0) {
      throw new PluginNotFoundError(`requires ${wanted}: no such plugin is loaded`);
    }
    const reasons = candidates.map((r) =>
      `${r.registration.id} ${r.status === "skip" ? "skipped" : "failed"}: ${r.error?.message}`
    );
    throw new PluginNotFoundError(`requires ${wanted}: ${reasons.join("; ")}`);
  }

  /** See {@link InitContext.getAll}. */
  getAll<T>(type: PluginType<T>): Map<string, T> {
    const out = new Map<string, T>();
    for (const r of this.#records) {
      if (r.registration.type.name === type.name && r.status === "ok") {
        out.set(r.registration.id, r.instance as T);
      }
    }
    return out;
  }
}

/** A lookup of a plugin that did not load; the message names the chain of causes. */
export class PluginNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PluginNotFoundError";
  }
}

/** Inputs of initPlugins. */
export interface InitPluginsOptions {
  /** Registrations in init order (from Registry.graph). */
  ordered: readonly Registration[];
  /** Decoded config per plugin URI; a plugin without an entry gets its schema's defaults. */
  configs: ReadonlyMap<string, unknown>;
  properties: PluginProperties;
  events: Exchange;
  log: Logger;
  signal: AbortSignal;
  /** The daemon's heap trimmer; default: one that never trims. */
  heapTrimmer?: HeapTrimmer;
  /** Called before each plugin's init with its URI, e.g. to log "loading plugin". */
  onStart?: (uri: string) => void;
  /** Called after each plugin's init, e.g. to log skips and failures. */
  onResult?: (record: PluginRecord) => void;
}

/**
 * Initialise plugins in order. Never throws for a plugin's failure: each result is recorded;
 * the caller decides (required_plugins) whether boot goes on.
 */
export async function initPlugins(options: InitPluginsOptions): Promise<PluginSet> {
  const set = new PluginSet();
  const { rootDir, stateDir } = options.properties;
  for (const reg of options.ordered) {
    const uri = uriOf(reg);
    const meta: PluginMeta = { exports: {}, capabilities: [], platforms: [] };
    const log = options.log.with({ type: reg.type.name, id: reg.id });
    const config = options.configs.has(uri) ? options.configs.get(uri) : reg.config?.defaults();
    const ctx: InitContext<unknown> = {
      uri,
      root: `${rootDir}/${uri}`,
      state: `${stateDir}/${uri}`,
      config,
      properties: options.properties,
      events: options.events,
      heapTrimmer: options.heapTrimmer ?? NO_HEAP_TRIM,
      log,
      signal: options.signal,
      meta,
      get: (type, id) => set.get(type, id),
      getAll: (type) => set.getAll(type),
      plugins: set,
    };
    options.onStart?.(uri);
    const started = performance.now();
    let record: PluginRecord;
    try {
      const instance = await reg.init(ctx);
      record = { registration: reg, uri, status: "ok", instance, meta, initMs: 0 };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      // By name too, so plugin_dir modules can skip without importing this module.
      const skipped = err instanceof SkipPluginError || error.name === "SkipPluginError";
      const status: PluginStatus = skipped ? "skip" : "error";
      record = { registration: reg, uri, status, error, meta, initMs: 0 };
    }
    record = { ...record, initMs: performance.now() - started };
    set.add(record);
    options.onResult?.(record);
  }
  return set;
}

/** The `required_plugins` that did not load, each with its reason; empty when all did. */
export function missingRequired(set: PluginSet, required: readonly string[]): string[] {
  const missing: string[] = [];
  for (const uri of required) {
    const record = set.records().find((r) => r.uri === uri);
    if (!record) missing.push(`${uri}: not registered or disabled`);
    else if (record.status !== "ok") missing.push(`${uri}: ${record.error?.message}`);
  }
  return missing;
}

/**
 * Close every loaded instance that has a `close()` method, in reverse init order. Errors are
 * reported through `onError` and do not stop the others from closing.
 */
export async function closePlugins(
  set: PluginSet,
  onError: (uri: string, err: unknown) => void,
): Promise<void> {
  const records = [...set.records()].reverse();
  for (const record of records) {
    const instance = record.instance as { close?: () => unknown } | undefined;
    if (record.status !== "ok" || typeof instance?.close !== "function") continue;
    try {
      await instance.close();
    } catch (err) {
      onError(record.uri, err);
    }
  }
}
