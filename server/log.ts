/**
 * Structured logging in containerd's shapes: logfmt (`time=… level=info msg="…" k=v`) or JSON.
 *
 * One Logger is made at boot from [debug] level/format and handed down; plugins get a child
 * with their `type` and `id` fields. Writes go to stderr synchronously so a crash never loses
 * the line that explains it.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ level: "info", format: "text" });
 * log.info("loading plugin", { id: "io.containerd.grpc.v1.version" });
 * ```
 * @module
 */

/** Levels in increasing severity, as containerd (logrus) names them. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "panic"] as const;
/** One of LOG_LEVELS. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Output shapes: `text` is logfmt, `json` one object per line. */
export type LogFormat = "text" | "json";
/** Extra key/value pairs of a log line. */
export type LogFields = Record<string, unknown>;

/** What the daemon and plugins log through. */
export interface Logger {
  trace(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
  /** Whether lines of `level` are written; lets callers skip costly field building. */
  enabled(level: LogLevel): boolean;
}

/** Options of createLogger. */
export interface LoggerOptions {
  /** Lowest level written. Default "info". */
  level?: LogLevel;
  /** Line shape. Default "text" (logfmt). */
  format?: LogFormat;
  /** Where lines go. Default: synchronous writes to stderr. */
  write?: (line: string) => void;
  /** Clock, for tests. Default `() => new Date()`. */
  now?: () => Date;
}

/** True when `value` names a log level; used to validate flags and config. */
export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line));
  } catch {
    // stderr closed (e.g. the parent went away): logging must never take the daemon down.
  }
}

/** Make the root logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const minimum = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "text";
  const write = options.write ?? writeStderr;
  const now = options.now ?? (() => new Date());
  const make = (base: LogFields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < minimum) return;
      const all = fields ? { ...base, ...fields } : base;
      write(
        format === "json"
          ? formatJson(now(), level, msg, all)
          : formatLogfmt(now(), level, msg, all),
      );
    };
    return {
      trace: (m, f) => emit("trace", m, f),
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      with: (fields) => make({ ...base, ...fields }),
      enabled: (level) => LOG_LEVELS.indexOf(level) >= minimum,
    };
  };
  return make({});
}

/** A logger that drops everything; for tests and tools that must stay quiet. */
export function silentLogger(): Logger {
  return createLogger({ level: "panic", write: () => {} });
}

function fieldText(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === "string") return value;
  if (value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function logfmtValue(text: string): string {
  return /^[^\s"=\\]+$/.test(text) ? text : JSON.stringify(text);
}

/** One logfmt line: `time="…" level=info msg="…" key=value`, as logrus prints it. */
export function formatLogfmt(time: Date, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `time="${time.toISOString()}" level=${level} msg=${JSON.stringify(msg)}`;
  for (const [key, value] of Object.entries(fields)) {
    line += ` ${key}=${logfmtValue(fieldText(value))}`;
  }
  return line + "\n";
}

/** One JSON line with time, level, msg and the fields. */
export function formatJson(time: Date, level: LogLevel, msg: string, fields: LogFields): string {
  const record: Record<string, unknown> = { time: time.toISOString(), level, msg };
  for (const [key, value] of Object.entries(fields)) {
    record[key] = value instanceof Error ? value.message : value;
  }
  return JSON.stringify(record) + "\n";
}
