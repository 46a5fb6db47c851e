/**
 * Typed config-section schemas: each plugin declares its `[plugins."<uri>"]` section once, with
 * defaults, and gets decoding, type checks and unknown-key warnings for free.
 *
 * A schema built here implements {@link ConfigSchema} from plugin.ts, so a registration can
 * hand it over as `config`; `config default` prints its defaults and the daemon decodes the
 * user's table with it before `init` runs. Values stay plain TOML data (strings, numbers,
 * booleans, arrays, tables) so a decoded section can be printed back by `config dump`.
 *
 * @example
 * ```ts
 * import { type ConfigOf, configSchema, field, parseDuration } from "./schema.ts";
 * const schema = configSchema({
 *   pause_threshold: field.number(0.02),
 *   schedule_delay: field.duration("0s"),
 *   mode: field.oneOf(["fast", "safe"], "safe"),
 * });
 * type GcConfig = ConfigOf<typeof schema>;
 * const { value, warnings } = schema.decode({ schedule_delay: "100ms" }, 'plugins."x.y"');
 * parseDuration(value.schedule_delay); // 100
 * ```
 * @module
 */
import type { ConfigSchema } from "./plugin.ts";

/**
 * A config value of the wrong type or out of range. The message is one line naming the full
 * key and the cause, so the CLI can print it as is (no stack trace for a user's mistake).
 */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** What a field's decoder may use besides the raw value: a sink for warnings. */
export interface DecodeContext {
  /** Report a non-fatal problem (e.g. an unknown key inside a nested table). */
  warn(message: string): void;
}

/**
 * One key of a section: its default and its decoder. Decoders throw ConfigError naming `key`
 * (the full dotted key, e.g. `plugins."io.containerd.gc.v1.scheduler".pause_threshold`).
 */
export interface Field<T> {
  /** A fresh copy of the default (never shared, so callers may mutate it). */
  defaultValue(): T;
  /** Check and convert a raw TOML value. */
  decode(raw: unknown, key: string, ctx: DecodeContext): T;
  /** The TOML value to print for `value`; identity for plain data. */
  encode(value: T): unknown;
}

/** The value type a field decodes to. */
export type FieldValue<F> = F extends Field<infer T> ? T : never;

/** A record of fields: one section's declaration. */
export type Fields = Record<string, Field<unknown>>;

/** The decoded section type of a fields record. */
export type ValueOf<F extends Fields> = { [K in keyof F]: FieldValue<F[K]> };

/** The decoded config type of a schema: `type C = ConfigOf<typeof schema>`. */
export type ConfigOf<S> = S extends ConfigSchema<infer C> ? C : never;

/** A schema made by {@link configSchema}: a ConfigSchema that also prints values back. */
export interface SectionSchema<C> extends ConfigSchema<C> {
  /** The declared fields, by key (for tools that list or document them). */
  readonly fields: Readonly<Record<string, Field<unknown>>>;
  /** The TOML table to print for a decoded value (`config default`, `config dump`). */
  encode(value: C): Record<string, unknown>;
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

/**
 * A key as TOML writes it: bare when it can be, else quoted. Shared so messages, `config dump`
 * and the sources map spell keys one way.
 */
export function tomlKey(key: string): string {
  return BARE_KEY.test(key) ? key : JSON.stringify(key);
}

/** A dotted TOML key path from its segments, e.g. `plugins."io.containerd.gc.v1.scheduler".x`. */
export function tomlKeyPath(segments: readonly string[]): string {
  return segments.map(tomlKey).join(".");
}

/** `where` + `.` + key, where `where` is already a TOML key path (or empty for the root). */
export function childKey(where: string, key: string): string {
  return where ? `${where}.${tomlKey(key)}` : tomlKey(key);
}

/** True for a TOML table (a plain or null-prototype object), false for arrays and dates. */
export function isTable(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  if (Array.isArray(value) || value instanceof Date) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || proto === Object.prototype;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * How a raw value reads in a message: `string "x"`, `integer 5`, `float 1.5`, `boolean true`,
 * `array`, `table`, `datetime …`. Names TOML's types, since that is what the user wrote.
 */
export function describeValue(value: unknown): string {
  if (typeof value === "string") return `string ${clip(JSON.stringify(value))}`;
  if (typeof value === "bigint") return `integer ${value}`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `integer ${value}` : `float ${value}`;
  }
  if (typeof value === "boolean") return `boolean ${value}`;
  if (Array.isArray(value)) return `array`;
  if (value instanceof Date) return `datetime ${value.toISOString()}`;
  if (isTable(value)) return "table";
  return typeof value;
}

function typeError(key: string, expected: string, raw: unknown): ConfigError {
  return new ConfigError(`${key}: expected ${expected}, got ${describeValue(raw)}`);
}

function cloneValue<T>(value: T): T {
  return structuredClone(value);
}

/**
 * A field from a default and a decoder; the building block of every `field.*` helper.
 * The default is cloned on each use, so arrays and maps are never shared between configs.
 */
function makeField<T>(
  defaultValue: T,
  decode: (raw: unknown, key: string, ctx: DecodeContext) => T,
  encode: (value: T) => unknown = (value) => value,
): Field<T> {
  return { defaultValue: () => cloneValue(defaultValue), decode, encode };
}

function decodeNumber(raw: unknown, key: string): number {
  if (typeof raw === "number") return raw;
  if (typeof raw === "bigint") {
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) throw new ConfigError(`${key}: ${raw} is out of range`);
    return n;
  }
  throw typeError(key, "a number", raw);
}

/** Bounds of {@link field.integer} and {@link field.number}; both inclusive. */
export interface RangeOptions {
  min?: number;
  max?: number;
}

function checkRange(value: number, key: string, range: RangeOptions): number {
  if (range.min !== undefined && value < range.min) {
    throw new ConfigError(`${key}: ${value} is below the minimum ${range.min}`);
  }
  if (range.max !== undefined && value > range.max) {
    throw new ConfigError(`${key}: ${value} is above the maximum ${range.max}`);
  }
  return value;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Milliseconds in a Go duration string (`"100ms"`, `"1m30s"`, `"-1.5h"`, `"0"`), the format
 * containerd's config uses for timeouts and delays. Throws ConfigError for anything else.
 */
export function parseDuration(text: string): number {
  const invalid = () =>
    new ConfigError(`invalid duration ${JSON.stringify(text)} (use Go syntax such as "1m30s")`);
  let rest = text;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") throw invalid();
  // Made per call: a sticky RegExp carries lastIndex, which must not be shared module state.
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < rest.length) {
    part.lastIndex = at;
    const match = part.exec(rest);
    if (!match) throw invalid();
    const [whole, amount, unit] = match;
    total += Number(amount) * (DURATION_UNITS[unit ?? ""] ?? NaN);
    at += whole.length;
  }
  if (!Number.isFinite(total)) throw invalid();
  return sign * total;
}

function decodeString(raw: unknown, key: string): string {
  if (typeof raw !== "string") throw typeError(key, "a string", raw);
  return raw;
}

function decodeDuration(raw: unknown, key: string): string {
  if (typeof raw !== "string") throw typeError(key, 'a duration string such as "1m30s"', raw);
  try {
    parseDuration(raw);
  } catch {
    throw new ConfigError(
      `${key}: expected a duration such as "100ms" or "1m30s", got string ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

/** The field builders; see the module example. */
export const field = {
  /** A number (integer or float). */
  number(defaultValue: number, range: RangeOptions = {}): Field<number> {
    return makeField(defaultValue, (raw, key) => checkRange(decodeNumber(raw, key), key, range));
  },

  /** A whole number; floats such as `1.5` are refused. */
  integer(defaultValue: number, range: RangeOptions = {}): Field<number> {
    if (!Number.isInteger(defaultValue)) {
      throw new TypeError(`field.integer: default ${defaultValue} is not an integer`);
    }
    return makeField(defaultValue, (raw, key) => {
      if (typeof raw === "number" && !Number.isInteger(raw)) {
        throw typeError(key, "an integer", raw);
      }
      if (typeof raw !== "number" && typeof raw !== "bigint") {
        throw typeError(key, "an integer", raw);
      }
      return checkRange(decodeNumber(raw, key), key, range);
    });
  },

  /** A string. */
  string(defaultValue: string): Field<string> {
    return makeField(defaultValue, decodeString);
  },

  /** A boolean. */
  boolean(defaultValue: boolean): Field<boolean> {
    return makeField(defaultValue, (raw, key) => {
      if (typeof raw !== "boolean") throw typeError(key, "a boolean", raw);
      return raw;
    });
  },

  /**
   * A Go duration string, checked but kept as written (so `config dump` shows what the user
   * wrote); read it with {@link parseDuration}.
   */
  duration(defaultValue: string): Field<string> {
    parseDuration(defaultValue); // a bad default is a programming mistake: fail at declaration
    return makeField(defaultValue, decodeDuration);
  },

  /** An array of strings. */
  stringArray(defaultValue: readonly string[]): Field<string[]> {
    return makeField([...defaultValue], (raw, key) => {
      if (!Array.isArray(raw)) throw typeError(key, "an array of strings", raw);
      return raw.map((item, i) => {
        if (typeof item !== "string") throw typeError(`${key}[${i}]`, "a string", item);
        return item;
      });
    });
  },

  /** A table of string values (labels, annotations); replaces the default table whole. */
  stringMap(defaultValue: Readonly<Record<string, string>>): Field<Record<string, string>> {
    return makeField({ ...defaultValue }, (raw, key) => {
      if (!isTable(raw)) throw typeError(key, "a table of strings", raw);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") throw typeError(childKey(key, k), "a string", v);
        Object.defineProperty(out, k, { value: v, enumerable: true, writable: true });
      }
      return out;
    });
  },

  /** One of a fixed set of strings (an enum). */
  oneOf<const V extends string>(values: readonly V[], defaultValue: NoInfer<V>): Field<V> {
    if (!values.includes(defaultValue)) {
      throw new TypeError(`field.oneOf: default ${JSON.stringify(defaultValue)} is not allowed`);
    }
    const expected = `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;
    return makeField<V>(defaultValue, (raw, key) => {
      if (typeof raw !== "string" || !(values as readonly string[]).includes(raw)) {
        throw typeError(key, expected, raw);
      }
      return raw as V;
    });
  },

  /** A nested table with its own fields, merged per key over its defaults. */
  table<F extends Fields>(fields: F): Field<ValueOf<F>> {
    const schema = configSchema(fields);
    return {
      defaultValue: () => schema.defaults(),
      decode(raw, key, ctx) {
        if (!isTable(raw)) throw typeError(key, "a table", raw);
        const { value, warnings } = schema.decode(raw, key);
        for (const warning of warnings) ctx.warn(warning);
        return value;
      },
      encode: (value) => schema.encode(value),
    };
  },

  /**
   * Anything else: a default and a decoder that throws ConfigError naming `key`. Give `encode`
   * when the decoded value is not plain TOML data (e.g. a RegExp), so dumps can print it.
   */
  custom<T>(
    defaultValue: T,
    decode: (raw: unknown, key: string) => T,
    options: { encode?: (value: T) => unknown } = {},
  ): Field<T> {
    return makeField(defaultValue, decode, options.encode);
  },
} as const;

/**
 * A section schema from its fields. `decode` overlays the raw table on the defaults, throws
 * ConfigError for a wrong type and warns about unknown keys (which are ignored).
 */
export function configSchema<F extends Fields>(fields: F): SectionSchema<ValueOf<F>> {
  const keys = Object.keys(fields);
  const defaults = (): ValueOf<F> => {
    const out: Record<string, unknown> = {};
    for (const key of keys) out[key] = fields[key]!.defaultValue();
    return out as ValueOf<F>;
  };
  return {
    fields,
    defaults,
    decode(raw, where) {
      if (!isTable(raw)) throw typeError(where || "config", "a table", raw);
      const warnings: string[] = [];
      const ctx: DecodeContext = { warn: (message) => warnings.push(message) };
      const value = defaults() as Record<string, unknown>;
      for (const [key, rawValue] of Object.entries(raw)) {
        const f = Object.hasOwn(fields, key) ? fields[key] : undefined;
        if (!f) {
          warnings.push(`unknown key ${childKey(where, key)} (ignored)`);
          continue;
        }
        value[key] = f.decode(rawValue, childKey(where, key), ctx);
      }
      return { value: value as ValueOf<F>, warnings };
    },
    encode(value) {
      const out: Record<string, unknown> = {};
      for (const key of keys) {
        const v = (value as Record<string, unknown>)[key];
        if (v !== undefined) out[key] = fields[key]!.encode(v);
      }
      return out;
    },
  };
}
