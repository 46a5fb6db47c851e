/**
 * The command line: flags, subcommands and exit codes.
 *
 * `containerd-ts [flags]` runs the daemon; `containerd-ts <command> [flags]` runs a tool such
 * as `config default` or `config dump`. Commands live in one table ({@link COMMANDS}), so a
 * new subcommand is one entry. The server module is imported only when the daemon runs, so
 * `--help`, `--version` and `config default` stay fast.
 *
 * Exit status: 0 on success; 2 for every user error (unknown flag or command, missing value,
 * bad config file or value), printed as one line `containerd-ts: <message>` with no stack
 * trace; 1 for an internal error or when the daemon fails to boot.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * Deno.exit(await main(Deno.args));
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Config,
  type ConfigEnv,
  configToToml,
  type ConfigToTomlOptions,
  decodePluginConfigs,
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  type Flags,
  hostEnv,
  loadConfig,
  type LoadedConfig,
} from "./config.ts";
import { LOG_LEVELS } from "./log.ts";
import { type Registration, registry } from "./plugin.ts";
import { ConfigError } from "./schema.ts";
import { REVISION, VERSION } from "./version.ts";

/** The program name used in messages and usage. */
export const PROGRAM = "containerd-ts";

/** Exit status for a user error (bad flag, command, config); see the module doc. */
export const EXIT_USAGE = 2;

/** Exit status for an internal error. */
export const EXIT_FAILURE = 1;

/** Where the CLI writes and what it runs against; tests replace each part. */
export interface CliIO {
  /** Default: synchronous writes to stdout. */
  stdout?(s: string): void;
  /** Default: synchronous writes to stderr. */
  stderr?(s: string): void;
  /** Default: {@link hostEnv}. */
  env?: ConfigEnv;
  /** Default: every registration in the daemon's registry. */
  registrations?: readonly Registration[];
}

/** A mistake in the command line; printed as one line, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

type OptionSpec = { type: "string" | "boolean"; short?: string };
type OptionSpecs = Record<string, OptionSpec>;
type Values = Record<string, string | boolean | undefined>;

/** What a command handler gets. */
export interface CommandContext {
  /** Parsed flag values by long name. */
  values: Values;
  out(s: string): void;
  err(s: string): void;
  env: ConfigEnv;
  registrations: readonly Registration[];
}

/** One entry of the command table. */
export interface Command {
  /** Arguments shown in the usage line after the command words, e.g. `[--explain]`. */
  args: string;
  /** One line for `--help`. */
  summary: string;
  /** Flags this command accepts besides --help and --version. */
  options: OptionSpecs;
  /** Run; returns the exit status. Throw UsageError or ConfigError for user errors. */
  run(ctx: CommandContext): Promise<number>;
}

/** Flags every command accepts. */
const GLOBAL_OPTIONS: OptionSpecs = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
};

/** The flags that choose and override the config: the daemon's and `config dump`'s. */
const CONFIG_OPTIONS: OptionSpecs = {
  config: { type: "string", short: "c" },
  "log-level": { type: "string", short: "l" },
  address: { type: "string", short: "a" },
  root: { type: "string" },
  state: { type: "string" },
};

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

function flagsOf(values: Values): Flags {
  return {
    config: str(values, "config"),
    logLevel: str(values, "log-level"),
    address: str(values, "address"),
    root: str(values, "root"),
    state: str(values, "state"),
  };
}

/** The config a command runs with, and its plugin sections decoded. */
async function loadAll(ctx: CommandContext): Promise<{
  loaded: LoadedConfig;
  pluginConfigs: Map<string, unknown>;
  warnings: string[];
}> {
  const loaded = await loadConfig(flagsOf(ctx.values), ctx.env);
  const decoded = decodePluginConfigs(loaded.config, ctx.registrations, {
    // Sections may belong to plugin_dir modules the server loads later; it checks those.
    unknownSections: loaded.config.plugin_dir ? "ignore" : "warn",
  });
  return {
    loaded,
    pluginConfigs: decoded.configs,
    warnings: [...loaded.warnings, ...decoded.warnings],
  };
}

/**
 * The command table: command words (space-separated; "" is the daemon itself) → handler.
 */
export const COMMANDS: Readonly<Record<string, Command>> = {
  "": {
    args: "",
    summary: "run the daemon",
    options: CONFIG_OPTIONS,
    async run(ctx) {
      const { loaded, pluginConfigs, warnings } = await loadAll(ctx);
      const { runDaemon } = await import("./server.ts");
      return await runDaemon({
        config: loaded.config,
        warnings,
        registrations: ctx.registrations,
        pluginConfigs,
      });
    },
  },
  "config default": {
    args: "",
    summary: "print the default config, with every plugin's section",
    options: {},
    run(ctx) {
      const config: Config = defaultConfig(ctx.env);
      ctx.out(configToToml(config, { registrations: ctx.registrations }));
      return Promise.resolve(0);
    },
  },
  "config dump": {
    args: "[--explain] [flags]",
    summary: "print the config in effect (--explain: where each value came from)",
    options: { ...CONFIG_OPTIONS, explain: { type: "boolean" } },
    async run(ctx) {
      const { loaded, warnings } = await loadAll(ctx);
      for (const warning of warnings) ctx.err(`${PROGRAM}: warning: ${warning}\n`);
      const options: ConfigToTomlOptions = { registrations: ctx.registrations };
      let header = "";
      if (ctx.values.explain === true) {
        options.sources = loaded.sources;
        const files = loaded.files.length > 0 ? loaded.files.join(", ") : "none";
        header = `# containerd-ts config dump --explain; files read: ${files}\n`;
      }
      ctx.out(header + configToToml(loaded.config, options));
      return 0;
    },
  },
  fsck: {
    args: "[--repair] [--json] [flags]",
    summary: "check blobs, ingests and content rows on disk (--repair: fix what is safe)",
    options: {
      config: { type: "string", short: "c" },
      address: { type: "string", short: "a" },
      root: { type: "string" },
      repair: { type: "boolean" },
      json: { type: "boolean" },
    },
    async run(ctx) {
      const { runFsck } = await import("./fsck.ts");
      return await runFsck(ctx);
    },
  },
  publish: {
    args: "--namespace NS --topic T [-a SOCK]",
    summary: "publish the event (a protobuf Any on stdin) to the daemon, as shims do",
    options: {
      config: { type: "string", short: "c" },
      address: { type: "string", short: "a" },
      namespace: { type: "string" },
      topic: { type: "string" },
    },
    async run(ctx) {
      const { runPublish } = await import("./publish.ts");
      return await runPublish(ctx);
    },
  },
  status: {
    args: "[-a SOCK] [flags]",
    summary: "whether the daemon serves; its version, uptime and plugins",
    options: {
      config: { type: "string", short: "c" },
      address: { type: "string", short: "a" },
      "debug-address": { type: "string" },
    },
    async run(ctx) {
      const { runStatus } = await import("./status.ts");
      return await runStatus(ctx);
    },
  },
};

/** The usage text of `--help`. */
export function usage(commands: Readonly<Record<string, Command>> = COMMANDS): string {
  const rows = Object.entries(commands)
    .filter(([name]) => name !== "")
    .map(([name, command]) => {
      const left = `${name}${command.args ? ` ${command.args}` : ""}`;
      return `  ${left.padEnd(31)} ${command.summary}\n`;
    });
  return `Usage: ${PROGRAM} [flags]              run the daemon
       ${PROGRAM} <command> [flags]    run a command

containerd's daemon, rebuilt in TypeScript.

Flags:
  -c, --config FILE       config file, default ${DEFAULT_CONFIG_PATH}
  -l, --log-level LEVEL   log level: ${LOG_LEVELS.join(", ")} (debug.level)
  -a, --address SOCKET    gRPC unix socket path (grpc.address)
      --root DIR          directory for persistent data (root)
      --state DIR         directory for runtime state (state)
  -v, --version           print the version and exit
  -h, --help              print this help and exit

Commands:
${rows.join("")}
Exit status: 0 on success, 2 for a usage or config error, 1 when the daemon fails.
`;
}

const encoder = new TextEncoder();

function writeAllSync(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

/** Turn node:util parseArgs' messages into one short line naming the flag. */
function parseArgsMessage(message: string, code: string): string {
  const flag = /'([^']+)'/.exec(message)?.[1] ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown flag ${flag}`;
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const name = flag.replace(/ <value>$/, "");
    if (/does not take an argument/.test(message)) return `flag ${name} takes no value`;
    return `flag ${name} needs a value`;
  }
  return (message.split("\n")[0] ?? message).replace(/^./, (c) => c.toLowerCase());
}

function parse(args: string[], options: OptionSpecs, strict: boolean) {
  try {
    return parseArgs({ args, options, strict, allowPositionals: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (err instanceof TypeError && typeof code === "string") {
      throw new UsageError(parseArgsMessage(err.message, code));
    }
    throw err;
  }
}

/** The command the positionals name: the longest match in the table. */
function findCommand(
  positionals: readonly string[],
  commands: Readonly<Record<string, Command>>,
): { name: string; command: Command } {
  for (let n = Math.min(positionals.length, 3); n >= 0; n--) {
    const name = positionals.slice(0, n).join(" ");
    const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
    if (command && (n > 0 || positionals.length === 0)) return { name, command };
  }
  const first = positionals[0] ?? "";
  const children = Object.keys(commands)
    .filter((name) => name.startsWith(`${first} `))
    .map((name) => name.slice(first.length + 1));
  if (children.length > 0) {
    const second = positionals[1];
    const choices = children.join(", ");
    throw new UsageError(
      second === undefined
        ? `${first}: missing subcommand (one of ${choices})`
        : `${first}: unknown subcommand ${JSON.stringify(second)} (one of ${choices})`,
    );
  }
  throw new UsageError(`unknown command ${JSON.stringify(first)}`);
}

/**
 * Run the command line; returns the exit status (main.ts exits with it). Never throws for a
 * user's mistake: it is printed as one line on stderr.
 */
export async function main(args: string[], io: CliIO = {}): Promise<number> {
  const out = io.stdout ?? ((s: string) => writeAllSync(Deno.stdout, s));
  const err = io.stderr ?? ((s: string) => writeAllSync(Deno.stderr, s));
  try {
    // First pass, lenient over every command's flags: find the command words.
    const everyOption: OptionSpecs = { ...GLOBAL_OPTIONS };
    for (const command of Object.values(COMMANDS)) Object.assign(everyOption, command.options);
    const loose = parse(args, everyOption, false);
    if (loose.values.help === true) {
      out(usage());
      return 0;
    }
    if (loose.values.version === true) {
      out(`${PROGRAM} ${VERSION} ${REVISION}\n`);
      return 0;
    }
    const { name, command } = findCommand(loose.positionals, COMMANDS);
    // Second pass, strict over this command's flags.
    const strict = parse(args, { ...GLOBAL_OPTIONS, ...command.options }, true);
    const words = name === "" ? [] : name.split(" ");
    const extra = strict.positionals.slice(words.length);
    if (extra.length > 0) {
      const where = name === "" ? "" : ` for ${name}`;
      throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}${where}`);
    }
    return await command.run({
      values: strict.values as Values,
      out,
      err,
      env: io.env ?? hostEnv(),
      registrations: io.registrations ?? registry.list(),
    });
  } catch (e) {
    if (e instanceof UsageError) {
      err(`${PROGRAM}: ${e.message} (see ${PROGRAM} --help)\n`);
      return EXIT_USAGE;
    }
    if (e instanceof ConfigError) {
      err(`${PROGRAM}: ${e.message}\n`);
      return EXIT_USAGE;
    }
    // Not the user's mistake: a bug or the machine. Keep the stack for whoever debugs it.
    const detail = e instanceof Error && e.stack ? `\n${e.stack}` : "";
    err(`${PROGRAM}: internal error: ${e instanceof Error ? e.message : String(e)}${detail}\n`);
    return EXIT_FAILURE;
  }
}
