/**
 * The daemon's configuration: containerd's config.toml version 2, its defaults, the file and
 * its imports, flag overrides, validation, and the per-plugin sections.
 *
 * Precedence, lowest first: {@link defaultConfig} < the config file < its imports (breadth
 * first, each file once, later wins) < flags. Every value remembers where it came from
 * (`sources`), which `config dump --explain` prints. Plugin sections stay raw tables here;
 * {@link decodePluginConfigs} decodes them with each plugin's own schema once the set of
 * registrations is known.
 *
 * @example
 * ```ts
 * import { decodePluginConfigs, loadConfig } from "./config.ts";
 * import { registry } from "./plugin.ts";
 * const { config, warnings } = await loadConfig({ config: "/etc/containerd-ts/config.toml" });
 * const { configs } = decodePluginConfigs(config, registry.list());
 * ```
 * @module
 */
import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import { LOG_LEVELS } from "./log.ts";
import { type Registration, uriOf } from "./plugin.ts";
import {
  childKey,
  ConfigError,
  describeValue,
  type Field,
  field,
  isTable,
  tomlKey,
  tomlKeyPath,
} from "./schema.ts";

export { ConfigError };

/** The daemon's config, as containerd's config.toml version 2 spells it. */
export interface Config {
  version: number;
  root: string;
  state: string;
  temp: string;
  plugin_dir: string;
  disabled_plugins: string[];
  required_plugins: string[];
  oom_score: number;
  imports: string[];
  grpc: {
    address: string;
    tcp_address: string;
    tcp_tls_ca: string;
    tcp_tls_cert: string;
    tcp_tls_key: string;
    uid: number;
    gid: number;
    max_recv_message_size: number;
    max_send_message_size: number;
  };
  ttrpc: { address: string; uid: number; gid: number };
  debug: { address: string; uid: number; gid: number; level: string; format: string };
  metrics: { address: string; grpc_histogram: boolean };
  cgroup: { path: string };
  /** Go duration strings by timeout name (`io.containerd.timeout.shim.load`). */
  timeouts: Record<string, string>;
  /**
   * Raw tables keyed by plugin URI (`io.containerd.gc.v1.scheduler`), decoded later by each
   * plugin's schema ({@link decodePluginConfigs}).
   */
  plugins: Record<string, Record<string, unknown>>;
}

/** Command-line overrides; each one wins over every file. */
export interface Flags {
  /** Config file; when set it must exist. */
  config?: string | undefined;
  /** Overrides debug.level. */
  logLevel?: string | undefined;
  /** Overrides grpc.address. */
  address?: string | undefined;
  /** Overrides root. */
  root?: string | undefined;
  /** Overrides state. */
  state?: string | undefined;
}

/** The facts of the environment the defaults depend on; tests pass their own. */
export interface ConfigEnv {
  /** Effective uid: 0 gets system paths, others XDG paths. */
  uid: number;
  home?: string | undefined;
  xdgDataHome?: string | undefined;
  xdgRuntimeDir?: string | undefined;
  /** Where to look for a config file when no --config is given; {@link DEFAULT_CONFIG_PATH}. */
  defaultConfigPath?: string | undefined;
}

/** The config file read when --config is not given; it may be absent. */
export const DEFAULT_CONFIG_PATH = "/etc/containerd-ts/config.toml";

/** The config version this daemon reads (containerd's current format). */
export const CONFIG_VERSION = 2;

/** Where a value came from, for `--explain`: "default", a file path, or "flag --x". */
export type Source = string;

/** A loaded, validated config and what was learnt while loading it. */
export interface LoadedConfig {
  config: Config;
  /** Non-fatal problems (unknown keys), one line each. */
  warnings: string[];
  /** Dotted key (`grpc.address`, `plugins."uri".key`) → where its value came from. */
  sources: Map<string, Source>;
  /** Files read, in merge order (the main file first); empty when none was found. */
  files: string[];
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no env permission: behave as if unset
  }
}

/** The real environment: the process uid, HOME and the XDG dirs. */
export function hostEnv(): ConfigEnv {
  return {
    uid: Deno.uid() ?? 0,
    home: readEnv("HOME"),
    xdgDataHome: readEnv("XDG_DATA_HOME"),
    xdgRuntimeDir: readEnv("XDG_RUNTIME_DIR"),
  };
}

/** `${VAR:-fallback}` for a directory: empty or relative values count as unset (XDG's rule). */
function dirOr(value: string | undefined, fallback: string): string {
  return value && isAbsolute(value) ? value : fallback;
}

/**
 * The defaults: system paths for root, per-user XDG paths otherwise (so a rootless daemon
 * needs no flags). Always a fresh object.
 */
export function defaultConfig(env: ConfigEnv = hostEnv()): Config {
  let root: string;
  let state: string;
  let address: string;
  if (env.uid === 0) {
    root = "/var/lib/containerd-ts";
    state = "/run/containerd-ts";
    address = "/run/containerd-ts/containerd-ts.sock";
  } else {
    const home = env.home && isAbsolute(env.home) ? join(env.home, ".local/share") : "";
    const dataHome = dirOr(env.xdgDataHome, home);
    root = dataHome ? join(dataHome, "containerd-ts") : "";
    state = join(dirOr(env.xdgRuntimeDir, `/tmp/containerd-ts-${env.uid}`), "containerd-ts");
    address = join(state, "containerd-ts.sock");
  }
  return {
    version: CONFIG_VERSION,
    root,
    state,
    temp: "",
    plugin_dir: "",
    disabled_plugins: [],
    required_plugins: [],
    oom_score: 0,
    imports: [],
    grpc: {
      address,
      tcp_address: "",
      tcp_tls_ca: "",
      tcp_tls_cert: "",
      tcp_tls_key: "",
      uid: 0,
      gid: 0,
      max_recv_message_size: 16 * 1024 * 1024,
      max_send_message_size: 16 * 1024 * 1024,
    },
    ttrpc: { address: "", uid: 0, gid: 0 },
    debug: { address: "", uid: 0, gid: 0, level: "info", format: "text" },
    metrics: { address: "", grpc_histogram: false },
    cgroup: { path: "" },
    timeouts: {
      "io.containerd.timeout.bolt.open": "0s",
      "io.containerd.timeout.shim.cleanup": "5s",
      "io.containerd.timeout.shim.load": "5s",
      "io.containerd.timeout.shim.shutdown": "3s",
      "io.containerd.timeout.task.state": "2s",
    },
    plugins: {},
  };
}

// Type checkers for the known keys. Only `decode` is used: defaults come from defaultConfig,
// which depends on the environment.
const SCALARS: Record<string, Field<unknown>> = {
  root: field.string(""),
  state: field.string(""),
  temp: field.string(""),
  plugin_dir: field.string(""),
  oom_score: field.integer(0, { min: -1000, max: 1000 }),
};

const LISTS: Record<string, Field<string[]>> = {
  disabled_plugins: field.stringArray([]),
  required_plugins: field.stringArray([]),
};

const ID = { min: 0 };
const SECTIONS: Record<string, Record<string, Field<unknown>>> = {
  grpc: {
    address: field.string(""),
    tcp_address: field.string(""),
    tcp_tls_ca: field.string(""),
    tcp_tls_cert: field.string(""),
    tcp_tls_key: field.string(""),
    uid: field.integer(0, ID),
    gid: field.integer(0, ID),
    max_recv_message_size: field.integer(0, { min: 0 }),
    max_send_message_size: field.integer(0, { min: 0 }),
  },
  ttrpc: { address: field.string(""), uid: field.integer(0, ID), gid: field.integer(0, ID) },
  debug: {
    address: field.string(""),
    uid: field.integer(0, ID),
    gid: field.integer(0, ID),
    level: field.oneOf(LOG_LEVELS, "info"),
    format: field.oneOf(["text", "json"], "text"),
  },
  metrics: { address: field.string(""), grpc_histogram: field.boolean(false) },
  cgroup: { path: field.string("") },
};

const VERSION_FIELD = field.integer(CONFIG_VERSION);
const IMPORTS_FIELD = field.stringArray([]);
const TIMEOUT_FIELD = field.duration("0s");

/** Every key of a default config mapped to "default" (plugin keys are added as set). */
function defaultSources(config: Config): Map<string, Source> {
  const sources = new Map<string, Source>();
  const walk = (path: string[], value: unknown) => {
    if (isTable(value) && path[0] !== "plugins") {
      for (const [k, v] of Object.entries(value)) walk([...path, k], v);
    } else if (path.length > 0 && path[0] !== "plugins") {
      sources.set(tomlKeyPath(path), "default");
    }
  };
  walk([], config);
  return sources;
}

/** A deep copy of parsed TOML with plain objects (smol-toml gives null-prototype tables). */
function toPlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toPlain);
  if (isTable(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, {
        value: toPlain(v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function tableOf(raw: unknown, key: string): Record<string, unknown> {
  if (!isTable(raw)) throw new ConfigError(`${key}: expected a table, got ${describeValue(raw)}`);
  return raw;
}

function appendUnique(list: string[], items: readonly string[]): void {
  for (const item of items) if (!list.includes(item)) list.push(item);
}

/** The state one load threads through its files. */
interface Merge {
  config: Config;
  sources: Map<string, Source>;
  warnings: string[];
}

function noteListSource(merge: Merge, key: string, file: string): void {
  const previous = merge.sources.get(key);
  if (previous === undefined || previous === "default") merge.sources.set(key, file);
  else if (!previous.split(", ").includes(file)) merge.sources.set(key, `${previous}, ${file}`);
}

/**
 * Merge one parsed file into the config: scalars override, lists append (each item once),
 * known tables merge per key, plugin tables merge per key. Returns the file's `imports`. Throws ConfigError
 * without the file name (the caller adds it).
 */
function mergeFile(merge: Merge, raw: Record<string, unknown>, file: string): string[] {
  const { config, sources, warnings } = merge;
  const unknown = (key: string) => warnings.push(`unknown key "${key}" in ${file} (ignored)`);
  // The version first: a version 1 file would otherwise fail on some other key, less clearly.
  // A file without `version` is read as version 2 (containerd would read it as version 1,
  // which this daemon does not support at all).
  if (Object.hasOwn(raw, "version")) {
    const version = VERSION_FIELD.decode(raw.version, "version", { warn: () => {} });
    if (version !== CONFIG_VERSION) {
      throw new ConfigError(
        `version ${version}: only config version ${CONFIG_VERSION} is supported`,
      );
    }
    sources.set("version", file);
  }
  let imports: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (key === "version") {
      continue;
    } else if (Object.hasOwn(SCALARS, key)) {
      setOwn(
        config as unknown as Record<string, unknown>,
        key,
        SCALARS[key]!.decode(value, key, { warn: unknown }),
      );
      sources.set(key, file);
    } else if (Object.hasOwn(LISTS, key)) {
      const items = LISTS[key]!.decode(value, key, { warn: unknown });
      appendUnique((config as unknown as Record<string, string[]>)[key]!, items);
      noteListSource(merge, key, file);
    } else if (key === "imports") {
      imports = IMPORTS_FIELD.decode(value, key, { warn: unknown });
    } else if (Object.hasOwn(SECTIONS, key)) {
      const fields = SECTIONS[key]!;
      const section = (config as unknown as Record<string, Record<string, unknown>>)[key]!;
      for (const [k, v] of Object.entries(tableOf(value, key))) {
        const dotted = childKey(key, k);
        const f = Object.hasOwn(fields, k) ? fields[k] : undefined;
        if (!f) {
          unknown(dotted);
          continue;
        }
        setOwn(section, k, f.decode(v, dotted, { warn: unknown }));
        sources.set(dotted, file);
      }
    } else if (key === "timeouts") {
      for (const [k, v] of Object.entries(tableOf(value, key))) {
        const dotted = childKey(key, k);
        setOwn(config.timeouts, k, TIMEOUT_FIELD.decode(v, dotted, { warn: unknown }));
        sources.set(dotted, file);
      }
    } else if (key === "plugins") {
      // Deliberate difference from containerd, which replaces a plugin's table whole when an
      // import sets it: here each key of a plugin table is merged on its own, so an import can
      // change one setting without repeating the plugin's whole section.
      for (const [uri, table] of Object.entries(tableOf(value, key))) {
        const where = childKey(key, uri);
        const entries = tableOf(table, where);
        if (!Object.hasOwn(config.plugins, uri)) setOwn(config.plugins, uri, {});
        const target = config.plugins[uri]!;
        for (const [k, v] of Object.entries(entries)) {
          setOwn(target, k, toPlain(v));
          sources.set(childKey(where, k), file);
        }
      }
    } else {
      unknown(tomlKey(key));
    }
  }
  if (imports.length > 0) noteListSource(merge, "imports", file);
  return imports;
}

/** `<file>:<line>:<col>: <reason>` for a TOML syntax error; the parsed table otherwise. */
function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return parse(text, { integersAsBigInt: "asNeeded", unsafeKeyBehaviour: "throw" });
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = (err.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      throw new ConfigError(`${file}:${err.line}:${err.column}: ${reason}`, { cause: err });
    }
    throw err;
  }
}

/** The text of a config file; undefined when it is absent and `optional`. */
async function readConfigFile(path: string, optional: boolean): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      if (optional) return undefined;
      throw new ConfigError(`config file ${path} does not exist`, { cause: err });
    }
    throw new ConfigError(`config file ${path}: cannot read: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** A RegExp for one path segment where `*` matches any run of characters but `/`. */
function segmentPattern(segment: string): RegExp {
  const body = segment.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${body.join("[^/]*")}$`);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** The files an import names: one existing file for a plain path, sorted matches for a glob. */
async function expandImport(spec: string, fromFile: string): Promise<string[]> {
  const absolute = resolve(dirname(fromFile), spec);
  if (!absolute.includes("*")) {
    if (await isFile(absolute)) return [absolute];
    const why = (await isDirectory(absolute)) ? "is a directory" : "no such file";
    throw new ConfigError(`${fromFile}: import ${JSON.stringify(spec)}: ${absolute}: ${why}`);
  }
  let candidates = ["/"];
  const segments = absolute.split("/").filter((s) => s !== "");
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    const next: string[] = [];
    for (const dir of candidates) {
      if (!segment.includes("*")) {
        next.push(join(dir, segment));
        continue;
      }
      const pattern = segmentPattern(segment);
      const names: string[] = [];
      try {
        for await (const entry of Deno.readDir(dir)) {
          if (pattern.test(entry.name)) names.push(entry.name);
        }
      } catch {
        continue; // a missing or unreadable dir matches nothing, as a shell glob would
      }
      names.sort();
      for (const name of names) next.push(join(dir, name));
    }
    candidates = last ? next : await filterAsync(next, isDirectory);
  }
  return await filterAsync(candidates, isFile);
}

async function filterAsync(
  items: readonly string[],
  keep: (item: string) => Promise<boolean>,
): Promise<string[]> {
  const verdicts = await Promise.all(items.map(keep));
  return items.filter((_, i) => verdicts[i]);
}

function samePath(a: string, b: string): boolean {
  const clean = (p: string) => normalize(p).replace(/(.)\/+$/, "$1");
  return clean(a) === clean(b);
}

function from(sources: ReadonlyMap<string, Source>, key: string): string {
  const source = sources.get(key);
  return source && source !== "default" ? ` (from ${source})` : "";
}

/**
 * Check what the daemon cannot start without: root and state set, absolute and different,
 * grpc.address set, debug level and format known. Throws ConfigError naming the key, the
 * value and where it came from.
 */
export function validateConfig(
  config: Config,
  sources: ReadonlyMap<string, Source> = new Map(),
): void {
  for (const key of ["root", "state"] as const) {
    const value = config[key];
    if (!value) {
      throw new ConfigError(`${key}: must be set to an absolute path${from(sources, key)}`);
    }
    if (!isAbsolute(value)) {
      throw new ConfigError(
        `${key} ${JSON.stringify(value)}${from(sources, key)}: must be an absolute path`,
      );
    }
  }
  if (samePath(config.root, config.state)) {
    throw new ConfigError(
      `root and state must be different paths, both are ${JSON.stringify(config.root)}`,
    );
  }
  if (!config.grpc.address) {
    throw new ConfigError(`grpc.address: must be set${from(sources, "grpc.address")}`);
  }
  const level = SECTIONS.debug!.level!;
  const format = SECTIONS.debug!.format!;
  level.decode(config.debug.level, "debug.level", { warn: () => {} });
  format.decode(config.debug.format, "debug.format", { warn: () => {} });
}

function applyFlags(merge: Merge, flags: Flags): void {
  const { config, sources } = merge;
  if (flags.address !== undefined) {
    config.grpc.address = flags.address;
    sources.set("grpc.address", "flag --address");
  }
  if (flags.root !== undefined) {
    config.root = flags.root;
    sources.set("root", "flag --root");
  }
  if (flags.state !== undefined) {
    config.state = flags.state;
    sources.set("state", "flag --state");
  }
  if (flags.logLevel !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(flags.logLevel)) {
      throw new ConfigError(
        `flag --log-level: ${JSON.stringify(flags.logLevel)} is not a log level (use one of ${
          LOG_LEVELS.join(", ")
        })`,
      );
    }
    config.debug.level = flags.logLevel;
    sources.set("debug.level", "flag --log-level");
  }
}

/**
 * Load the effective config: defaults, then the config file (--config, which must exist, or
 * the default path, which may be absent), then its imports, then flags; validated. Throws
 * ConfigError (one line naming the file, key and cause) for anything the user must fix.
 */
export async function loadConfig(flags: Flags, env: ConfigEnv = hostEnv()): Promise<LoadedConfig> {
  const config = defaultConfig(env);
  const merge: Merge = { config, sources: defaultSources(config), warnings: [] };
  const files: string[] = [];
  const main = resolve(flags.config ?? env.defaultConfigPath ?? DEFAULT_CONFIG_PATH);
  const mainText = await readConfigFile(main, flags.config === undefined);
  if (mainText !== undefined) {
    // Breadth first, each file once (a cycle or a repeated import is read only the first time).
    const queue: { path: string; text?: string }[] = [{ path: main, text: mainText }];
    const seen = new Set([main]);
    const imported: string[] = [];
    for (let item = queue.shift(); item; item = queue.shift()) {
      const text = item.text ?? await readConfigFile(item.path, false);
      if (text === undefined) continue;
      const raw = parseToml(text, item.path);
      let imports: string[];
      try {
        imports = mergeFile(merge, raw, item.path);
      } catch (err) {
        if (err instanceof ConfigError) {
          throw new ConfigError(`${item.path}: ${err.message}`, { cause: err });
        }
        throw err;
      }
      files.push(item.path);
      if (item.path !== main) imported.push(item.path);
      for (const spec of imports) {
        for (const path of await expandImport(spec, item.path)) {
          if (seen.has(path)) continue;
          seen.add(path);
          queue.push({ path });
        }
      }
    }
    // Like containerd, `imports` ends up listing the files actually imported (absolute, in
    // merge order, the main file excluded), so a dump shows what was read.
    config.imports = imported;
  }
  applyFlags(merge, flags);
  validateConfig(config, merge.sources);
  return { config, warnings: merge.warnings, sources: merge.sources, files };
}

/** Options of decodePluginConfigs. */
export interface DecodePluginOptions {
  /**
   * What to do with a `[plugins."uri"]` section no registration claims: "warn" (default) or
   * "ignore" (when more plugins may come later, e.g. from plugin_dir).
   */
  unknownSections?: "warn" | "ignore";
}

/**
 * Decode each registered plugin's section with its schema (defaults when absent). Disabled
 * plugins are skipped. Wrong types throw ConfigError naming the key; unknown keys and
 * sections no plugin claims come back as warnings.
 */
export function decodePluginConfigs(
  config: Config,
  registrations: readonly Registration[],
  options: DecodePluginOptions = {},
): { configs: Map<string, unknown>; warnings: string[] } {
  const configs = new Map<string, unknown>();
  const warnings: string[] = [];
  const disabled = new Set(config.disabled_plugins);
  const known = new Set<string>();
  for (const reg of registrations) {
    const uri = uriOf(reg);
    known.add(uri);
    if (disabled.has(uri)) continue;
    const raw = Object.hasOwn(config.plugins, uri) ? config.plugins[uri] : undefined;
    const where = childKey("plugins", uri);
    if (!reg.config) {
      if (raw && Object.keys(raw).length > 0) {
        warnings.push(`${where}: plugin ${uri} takes no configuration (ignored)`);
      }
      continue;
    }
    const decoded = reg.config.decode(raw ?? {}, where);
    configs.set(uri, decoded.value);
    warnings.push(...decoded.warnings);
  }
  if ((options.unknownSections ?? "warn") === "warn") {
    for (const uri of Object.keys(config.plugins)) {
      if (!known.has(uri)) {
        warnings.push(
          `unknown plugin section ${
            childKey("plugins", uri)
          }: no such plugin is registered (ignored)`,
        );
      }
    }
  }
  return { configs, warnings };
}

/** Options of configToToml. */
export interface ConfigToTomlOptions {
  /** Print every registered plugin's section: decoded values, or defaults when unset. */
  registrations?: readonly Registration[];
  /** Add `# from: <source>` after each value (`config dump --explain`). */
  sources?: ReadonlyMap<string, Source>;
}

function pluginSection(reg: Registration, raw: Record<string, unknown> | undefined, uri: string) {
  const schema = reg.config!;
  let value: unknown;
  try {
    value = raw ? schema.decode(raw, childKey("plugins", uri)).value : schema.defaults();
  } catch (err) {
    // A disabled plugin's section is never decoded at boot; print it as written.
    if (err instanceof ConfigError && raw) return raw;
    throw err;
  }
  const encode = (schema as { encode?: (v: unknown) => Record<string, unknown> }).encode;
  return typeof encode === "function" ? encode.call(schema, value) : value;
}

/**
 * The whole config as TOML that loads back to the same config: `config default` and
 * `config dump`. With registrations, each plugin's section is filled in; with sources, each
 * value is followed by where it came from.
 */
export function configToToml(config: Config, options: ConfigToTomlOptions = {}): string {
  const plugins: Record<string, unknown> = {};
  const claimed = new Set<string>();
  for (const reg of options.registrations ?? []) {
    const uri = uriOf(reg);
    if (!reg.config) continue;
    claimed.add(uri);
    const raw = Object.hasOwn(config.plugins, uri) ? config.plugins[uri] : undefined;
    setOwn(plugins, uri, pluginSection(reg, raw, uri));
  }
  for (const [uri, raw] of Object.entries(config.plugins)) {
    if (!claimed.has(uri)) setOwn(plugins, uri, raw);
  }
  const doc = { ...config, plugins } as Record<string, unknown>;
  const sources = options.sources;
  const note = sources
    ? (path: readonly string[]) => {
      for (let n = path.length; n > 0; n--) {
        const source = sources.get(tomlKeyPath(path.slice(0, n)));
        if (source !== undefined) return `from: ${source}`;
      }
      return "from: default";
    }
    : undefined;
  return renderToml(doc, note);
}

/** A TOML value written inline: strings, numbers, booleans, dates, arrays, inline tables. */
function renderValue(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value).replace(/\x7f/g, "\\u007f");
  }
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "nan";
    if (value === Infinity) return "inf";
    if (value === -Infinity) return "-inf";
    return String(value);
  }
  if (typeof value === "bigint" || typeof value === "boolean") return String(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return `[${value.map(renderValue).join(", ")}]`;
  if (isTable(value)) {
    const items = Object.entries(value).map(([k, v]) => `${tomlKey(k)} = ${renderValue(v)}`);
    return items.length ? `{ ${items.join(", ")} }` : "{}";
  }
  throw new TypeError(`cannot write ${describeValue(value)} as TOML`);
}

/** A document: root keys first, then one `[table]` per table (headers only where needed). */
function renderToml(
  root: Record<string, unknown>,
  note?: (path: readonly string[]) => string,
): string {
  const lines: string[] = [];
  const emit = (path: string[], table: Record<string, unknown>) => {
    const entries = Object.entries(table).filter(([, v]) => v !== undefined);
    const values = entries.filter(([, v]) => !isTable(v));
    const tables = entries.filter(([, v]) => isTable(v));
    if (path.length > 0 && (values.length > 0 || tables.length === 0)) {
      if (lines.length > 0) lines.push("");
      lines.push(`[${tomlKeyPath(path)}]`);
    }
    for (const [k, v] of values) {
      const comment = note ? ` # ${note([...path, k])}` : "";
      lines.push(`${tomlKey(k)} = ${renderValue(v)}${comment}`);
    }
    for (const [k, v] of tables) emit([...path, k], v as Record<string, unknown>);
  };
  emit([], root);
  return lines.join("\n") + "\n";
}
