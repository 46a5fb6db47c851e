/**
 * containerd's filter language: one parser and one matcher shared by every List RPC
 * (plugins, images, content, leases, containers, snapshots, events), so that a filter
 * means the same thing whichever service receives it.
 *
 * A filter is a comma-separated list of selectors, all of which must hold (AND); a List
 * request carries several filters, any of which may hold (OR):
 *
 * ```text
 * selectors := selector ("," selector)*
 * selector  := fieldpath [operator value]       no operator: "the field is present"
 * fieldpath := field ("." field)*
 * field     := [A-Za-z0-9_-]+ | "double-quoted"
 * operator  := "==" | "!=" | "~="               ~= is an unanchored regular expression
 * value     := run of characters up to "," or whitespace | "quoted" | /regexp/ | |regexp|
 * ```
 *
 * Quoted text uses Go's escapes (`\" \\ \n \t \xNN \NNN \uNNNN \UNNNNNNNN`, plus the
 * delimiter itself); `/…/` and `|…|` are only accepted as the value of `~=`. Whitespace
 * is allowed around every token. Objects are reached through an {@link Adaptor}, which
 * {@link adaptRecord} builds for the common "string fields plus label maps" shape.
 *
 * Every malformed filter is rejected with an `InvalidArgumentError` whose message names
 * the filter, the 0-based offset (in UTF-16 code units) and what was expected there. The
 * parser makes one left-to-right pass, so its cost is linear in the input.
 *
 * @example
 * ```ts
 * import { adaptRecord, parseAll } from "./filters.ts";
 * const filter = parseAll(["name==redis,labels.env==prod", "labels.\"a.b/c\""]);
 * filter.match(adaptRecord({ name: "redis" }, { labels: { env: "prod" } })); // true
 * ```
 * @module
 */
import { InvalidArgumentError } from "./errdefs.ts";

/**
 * What a matcher asks an object: the value at a field path, and whether it is present.
 *
 * Filters know nothing about images, containers or leases; each List RPC supplies an
 * adaptor that maps field paths (`["name"]`, `["labels", "a.b"]`) onto its own objects.
 * An absent field should report `value: ""`; the matcher treats it as empty either way.
 *
 * @example
 * ```ts
 * const adaptor: Adaptor = (path) =>
 *   path.length === 1 && path[0] === "id"
 *     ? { value: lease.id, present: lease.id !== "" }
 *     : { value: "", present: false };
 * ```
 */
export type Adaptor = (fieldpath: readonly string[]) => { value: string; present: boolean };

/**
 * A parsed filter, ready to test many objects; parsing once per request keeps regular
 * expressions compiled once rather than once per object.
 *
 * @example
 * ```ts
 * const filter: Filter = parse("name~=^redis");
 * const kept = images.filter((img) => filter.match(adaptRecord({ name: img.name })));
 * ```
 */
export interface Filter {
  /** True when the object behind `adaptor` satisfies the filter. */
  match(adaptor: Adaptor): boolean;
}

/** The filter that keeps everything: what an empty filter string or an empty list means. */
const MATCH_ALL: Filter = Object.freeze({ match: () => true });

/**
 * Parses one filter string (selectors joined by commas, all of which must match).
 *
 * It exists so each service turns user text into a matcher the same way, with the same
 * errors; the empty string matches every object, as in containerd.
 *
 * @throws {InvalidArgumentError} when the text is malformed or a `~=` pattern does not
 *   compile; the message gives the 0-based offset and what was expected there.
 *
 * @example
 * ```ts
 * const filter = parse(`name==redis, labels."app.kind"!=cache`);
 * filter.match(adaptRecord({ name: "redis" }, { labels: { "app.kind": "db" } })); // true
 * parse("labels.a==");
 * // throws InvalidArgumentError: "filters: parse error at offset 10 (0-based) in [labels.a==]:
 * //   expected a value or a quoted value, found end of input: invalid argument"
 * ```
 */
export function parse(filter: string): Filter {
  if (typeof filter !== "string") {
    throw new InvalidArgumentError(`filters: filter must be a string, got ${typeof filter}`);
  }
  if (filter === "") return MATCH_ALL;
  return new Parser(filter).parse();
}

/**
 * Parses the `filters` field of a List request: the object matches when any one filter
 * matches (OR), and no filters at all — or an empty string among them — match everything.
 *
 * It exists because every List RPC takes a repeated filter field with these semantics.
 *
 * @throws {InvalidArgumentError} for the first malformed filter (its text is in the message).
 *
 * @example
 * ```ts
 * const filter = parseAll(["name==a", "name==b"]);
 * filter.match(adaptRecord({ name: "b" })); // true
 * parseAll([]).match(adaptRecord({})); // true
 * ```
 */
export function parseAll(filters: readonly string[]): Filter {
  // Every filter is parsed, even after one that matches all, so none goes unvalidated.
  const parsed = filters.map(parse);
  if (parsed.length === 0 || parsed.includes(MATCH_ALL)) return MATCH_ALL;
  if (parsed.length === 1) return parsed[0] as Filter;
  return { match: (adaptor) => parsed.some((f) => f.match(adaptor)) };
}

/**
 * Builds an adaptor from a plain record of top-level string fields plus label maps; a
 * helper most List RPCs need, so they need not each write their own path switch.
 *
 * - A one-element path `[f]` reads `fields[f]`; it is present when defined and non-empty
 *   (containerd's adaptors treat an empty name or digest as absent).
 * - A longer path whose first element names one of `maps` reads that map at the rest of the
 *   path joined with "." (`labels.a.b` and `labels."a.b"` both read key `a.b`); a key that
 *   exists is present even when its value is empty, as for containerd's labels.
 * - Any other longer path reads `fields` at the whole path joined with ".", so nested
 *   fields can be flattened into keys such as `"target.digest"`; absent unless given.
 *
 * Only own properties are consulted, so paths such as `labels.constructor` are absent.
 *
 * @example
 * ```ts
 * const adaptor = adaptRecord(
 *   { name: "docker.io/library/redis:7", "target.digest": "sha256:…" },
 *   { labels: { "io.cri.pinned": "pinned" } },
 * );
 * parse("labels.\"io.cri.pinned\",target.digest~=^sha256:").match(adaptor); // true
 * ```
 */
export function adaptRecord(
  fields: Record<string, string | undefined>,
  maps?: Record<string, Record<string, string> | undefined>,
): Adaptor {
  return (fieldpath) => {
    const head = fieldpath[0];
    if (head === undefined) return { value: "", present: false };
    if (fieldpath.length > 1 && maps !== undefined && Object.hasOwn(maps, head)) {
      const map = maps[head];
      const key = fieldpath.slice(1).join(".");
      if (map === undefined || !Object.hasOwn(map, key)) return { value: "", present: false };
      const value = map[key];
      return typeof value === "string" ? { value, present: true } : { value: "", present: false };
    }
    const key = fieldpath.length === 1 ? head : fieldpath.join(".");
    const value = Object.hasOwn(fields, key) ? fields[key] : undefined;
    return typeof value === "string" && value !== ""
      ? { value, present: true }
      : { value: "", present: false };
  };
}

// ---------------------------------------------------------------------------------------
// Matchers

type Operator = "==" | "!=" | "~=";

/** A single `fieldpath[op value]` test; absent fields are seen as "" by every operator. */
function selector(
  fieldpath: readonly string[],
  test: (value: string, present: boolean) => boolean,
): Filter {
  const path = Object.freeze([...fieldpath]);
  return {
    match(adaptor) {
      const { value, present } = adaptor(path);
      return test(present ? value : "", present);
    },
  };
}

function allOf(filters: readonly Filter[]): Filter {
  if (filters.length === 1) return filters[0] as Filter;
  return { match: (adaptor) => filters.every((f) => f.match(adaptor)) };
}

// ---------------------------------------------------------------------------------------
// Character classes

const CH_TAB = 0x09;
const CH_LF = 0x0a;
const CH_CR = 0x0d;
const CH_SPACE = 0x20;
const CH_DQUOTE = 0x22;
const CH_COMMA = 0x2c;
const CH_DOT = 0x2e;
const CH_SLASH = 0x2f;
const CH_BACKSLASH = 0x5c;
const CH_PIPE = 0x7c;

const WHITE_SPACE = /^\p{White_Space}$/u;

function isSpace(cp: number): boolean {
  if (cp === CH_SPACE || (cp >= CH_TAB && cp <= CH_CR)) return true;
  return cp >= 0x80 && WHITE_SPACE.test(String.fromCodePoint(cp));
}

function isFieldChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x5f || c === 0x2d;
}

function isOperatorChar(c: number): boolean {
  return c === 0x3d || c === 0x21 || c === 0x7e; // = ! ~
}

function isControl(cp: number): boolean {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

function isLoneSurrogate(cp: number): boolean {
  return cp >= 0xd800 && cp <= 0xdfff;
}

/** Single-character escapes shared by every quote style (the delimiter is handled apart). */
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = Object.freeze({
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
});

const HEX = /^[0-9A-Fa-f]+$/;
const OCTAL = /^[0-7]{3}$/;

/** Go's leading inline flags, `(?i)` and friends; JS takes them as RegExp flags instead. */
const INLINE_FLAGS = /^\(\?([ims]+)\)/;

/** How much of the filter an error message shows on each side of the offending offset. */
const CONTEXT_CHARS = 40;

// ---------------------------------------------------------------------------------------
// Parser

/** One pass over one filter string; never backtracks, so it runs in linear time. */
class Parser {
  readonly #src: string;
  #pos = 0;

  constructor(src: string) {
    this.#src = src;
  }

  parse(): Filter {
    const selectors: Filter[] = [];
    for (;;) {
      selectors.push(this.#selector());
      this.#skipSpace();
      if (this.#atEnd()) break;
      if (this.#code() !== CH_COMMA) throw this.#expected(this.#pos, "',' or end of input");
      this.#pos++;
    }
    return allOf(selectors);
  }

  #selector(): Filter {
    this.#skipSpace();
    const path = this.#fieldpath();
    this.#skipSpace();
    if (this.#atEnd() || this.#code() === CH_COMMA) return selector(path, (_, present) => present);
    if (!isOperatorChar(this.#code())) {
      const what = "an operator (==, != or ~=), ',' or end of input";
      if (isFieldChar(this.#code())) throw this.#expected(this.#pos, what);
      // Most often an unquoted label key such as containerd.io/gc.ref: say how to write it.
      throw this.#fail(
        this.#pos,
        `expected ${what}, found ${this.#found(this.#pos)}; ` +
          `field names holding other characters must be double-quoted, e.g. labels."a/b"`,
      );
    }
    const op = this.#operator();
    this.#skipSpace();
    const valueAt = this.#pos;
    const value = this.#value(op);
    switch (op) {
      case "==":
        return selector(path, (v, present) => present && v === value);
      case "!=":
        return selector(path, (v) => v !== value);
      case "~=": {
        const re = this.#compile(value, valueAt);
        return selector(path, (v) => re.test(v));
      }
    }
  }

  #fieldpath(): string[] {
    const path = [this.#field()];
    for (;;) {
      this.#skipSpace();
      if (this.#atEnd() || this.#code() !== CH_DOT) return path;
      this.#pos++;
      this.#skipSpace();
      path.push(this.#field());
    }
  }

  #field(): string {
    const start = this.#pos;
    if (this.#atEnd()) throw this.#expected(start, "a field name or a double-quoted field");
    const c = this.#code();
    if (c === CH_DQUOTE) return this.#quoted();
    if (c === CH_SLASH || c === CH_PIPE) {
      throw this.#fail(
        start,
        `field names may only be quoted with '"', found ${this.#found(start)}`,
      );
    }
    while (!this.#atEnd() && isFieldChar(this.#code())) this.#pos++;
    if (this.#pos === start) throw this.#expected(start, "a field name or a double-quoted field");
    return this.#src.slice(start, this.#pos);
  }

  #operator(): Operator {
    const start = this.#pos;
    while (!this.#atEnd() && isOperatorChar(this.#code())) this.#pos++;
    const op = this.#src.slice(start, this.#pos);
    if (op === "==" || op === "!=" || op === "~=") return op;
    const shown = op.length > 10 ? `${op.slice(0, 10)}…` : op;
    throw this.#fail(start, `unsupported operator "${shown}", expected ==, != or ~=`);
  }

  #value(op: Operator): string {
    const start = this.#pos;
    if (this.#atEnd()) throw this.#expected(start, "a value or a quoted value");
    const c = this.#code();
    if (c === CH_DQUOTE) return this.#quoted();
    if (c === CH_SLASH || c === CH_PIPE) {
      if (op === "~=") return this.#quoted();
      throw this.#fail(
        start,
        `quoting with '${String.fromCharCode(c)}' is only allowed after ~=; ` +
          `use '"' or an unquoted value with ${op}`,
      );
    }
    // An unquoted value runs to a comma or whitespace; control characters end it too, and
    // are then reported by the caller as unexpected input.
    while (!this.#atEnd()) {
      const cp = this.#src.codePointAt(this.#pos) as number;
      if (cp === CH_COMMA || isSpace(cp) || isControl(cp) || isLoneSurrogate(cp)) break;
      this.#pos += cp > 0xffff ? 2 : 1;
    }
    if (this.#pos === start) throw this.#expected(start, "a value or a quoted value");
    return this.#src.slice(start, this.#pos);
  }

  /**
   * Reads a quoted string starting at the delimiter under the cursor and returns its
   * decoded text. `\xNN` and octal escapes give raw bytes which, as in Go, are read as
   * UTF-8 together with their neighbours (`"\xc3\xa9"` is "é").
   */
  #quoted(): string {
    const src = this.#src;
    const start = this.#pos;
    const delimiter = src.charCodeAt(start);
    let out = "";
    let bytes: number[] = [];
    let decoder: TextDecoder | undefined;
    const flushBytes = () => {
      if (bytes.length === 0) return;
      decoder ??= new TextDecoder();
      out += decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    const appendText = (text: string) => {
      if (text === "") return;
      flushBytes();
      out += text;
    };

    let i = start + 1;
    let run = i;
    for (;;) {
      if (i >= src.length) throw this.#fail(start, "quoted literal not terminated");
      const c = src.charCodeAt(i);
      if (c === delimiter) {
        appendText(src.slice(run, i));
        flushBytes();
        this.#pos = i + 1;
        return out;
      }
      if (c === CH_LF) throw this.#fail(start, "quoted literal not terminated (newline in quotes)");
      if (c === 0) throw this.#fail(i, "unexpected NUL character in quoted literal");
      if (c !== CH_BACKSLASH) {
        i++;
        continue;
      }

      appendText(src.slice(run, i));
      const escape = src[i + 1];
      if (escape === undefined) throw this.#fail(start, "quoted literal not terminated");
      const simple = Object.hasOwn(SIMPLE_ESCAPES, escape) ? SIMPLE_ESCAPES[escape] : undefined;
      if (simple !== undefined) {
        appendText(simple);
        i += 2;
      } else if (escape.charCodeAt(0) === delimiter) {
        appendText(escape);
        i += 2;
      } else if (escape >= "0" && escape <= "7") {
        const digits = src.slice(i + 1, i + 4);
        const byte = OCTAL.test(digits) ? parseInt(digits, 8) : 256;
        if (byte > 255) {
          throw this.#fail(i, "illegal octal escape sequence, expected \\000 to \\377");
        }
        bytes.push(byte);
        i += 4;
      } else if (escape === "x" || escape === "u" || escape === "U") {
        const width = escape === "x" ? 2 : escape === "u" ? 4 : 8;
        const digits = src.slice(i + 2, i + 2 + width);
        if (digits.length !== width || !HEX.test(digits)) {
          throw this.#fail(
            i,
            `illegal numeric escape sequence, expected \\${escape} and ${width} hex digits`,
          );
        }
        const value = parseInt(digits, 16);
        if (escape === "x") {
          bytes.push(value);
        } else if (value > 0x10ffff || isLoneSurrogate(value)) {
          throw this.#fail(i, `escape \\${escape}${digits} is not a valid Unicode code point`);
        } else {
          appendText(String.fromCodePoint(value));
        }
        i += 2 + width;
      } else {
        throw this.#fail(i, `illegal escape sequence ${this.#found(i + 1)} after '\\'`);
      }
      run = i;
    }
  }

  /**
   * Compiles a `~=` pattern. Patterns are written for Go's RE2; a leading `(?i)`-style
   * group becomes JS flags, and patterns that unicode mode rejects (RE2 lets any
   * punctuation be escaped, e.g. `\-`) are retried without it.
   */
  #compile(pattern: string, at: number): RegExp {
    let body = pattern;
    let flags = "";
    const inline = INLINE_FLAGS.exec(pattern);
    if (inline !== null) {
      flags = [...new Set(inline[1])].join("");
      body = pattern.slice(inline[0].length);
    }
    try {
      return new RegExp(body, flags + "u");
    } catch {
      // fall through to the non-unicode attempt
    }
    try {
      return new RegExp(body, flags);
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err))
        .replace(/^Invalid regular expression: /, "");
      const shown = reason.length > 200 ? `${reason.slice(0, 200)}…` : reason;
      throw this.#fail(at, `invalid regular expression: ${shown}`);
    }
  }

  #atEnd(): boolean {
    return this.#pos >= this.#src.length;
  }

  #code(): number {
    return this.#src.charCodeAt(this.#pos);
  }

  #skipSpace(): void {
    while (!this.#atEnd()) {
      const cp = this.#src.codePointAt(this.#pos) as number;
      if (!isSpace(cp)) return;
      this.#pos += cp > 0xffff ? 2 : 1;
    }
  }

  /** Describes the character at `at` for an error message. */
  #found(at: number): string {
    if (at >= this.#src.length) return "end of input";
    const cp = this.#src.codePointAt(at) as number;
    if (isControl(cp) || isLoneSurrogate(cp) || isSpace(cp)) {
      return `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    }
    return `'${String.fromCodePoint(cp)}'`;
  }

  #expected(at: number, what: string): InvalidArgumentError {
    return this.#fail(at, `expected ${what}, found ${this.#found(at)}`);
  }

  /**
   * The error for a problem at offset `at`: the 0-based offset, then the filter marked as
   * containerd does (`[before >|here|< after]`), then the reason. Long filters are cut to a
   * window around the offset and control characters are escaped.
   */
  #fail(at: number, reason: string): InvalidArgumentError {
    const src = this.#src;
    let context: string;
    if (at < src.length) {
      const width = (src.codePointAt(at) as number) > 0xffff ? 2 : 1;
      const beforeFrom = Math.max(0, at - CONTEXT_CHARS);
      const afterTo = Math.min(src.length, at + width + CONTEXT_CHARS);
      const before = (beforeFrom > 0 ? "…" : "") + src.slice(beforeFrom, at);
      const after = src.slice(at + width, afterTo) + (afterTo < src.length ? "…" : "");
      const here = src.slice(at, at + width);
      context = `[${visible(before)} >|${visible(here)}|< ${visible(after)}]`;
    } else {
      const from = Math.max(0, src.length - CONTEXT_CHARS);
      context = `[${from > 0 ? "…" : ""}${visible(src.slice(from))}]`;
    }
    return new InvalidArgumentError(
      `filters: parse error at offset ${at} (0-based) in ${context}: ${reason}: invalid argument`,
    );
  }
}

/** Escapes control characters and lone surrogates so an error message stays one clean line. */
function visible(text: string): string {
  let out = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    out += isControl(cp) || isLoneSurrogate(cp) ? `\\u${cp.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}
