import assert from "node:assert/strict";
import {
  childKey,
  ConfigError,
  type ConfigOf,
  configSchema,
  describeValue,
  field,
  parseDuration,
  tomlKeyPath,
} from "./schema.ts";

const WHERE = 'plugins."io.containerd.gc.v1.scheduler"';

function gcSchema() {
  return configSchema({
    pause_threshold: field.number(0.02),
    deletion_threshold: field.integer(0, { min: 0 }),
    schedule_delay: field.duration("0s"),
    root_path: field.string(""),
    sync_remove: field.boolean(false),
    tags: field.stringArray([]),
    labels: field.stringMap({}),
    mode: field.oneOf(["fast", "safe"], "safe"),
  });
}

function throwsConfig(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("defaults are returned fresh each time", () => {
  const schema = gcSchema();
  const a = schema.defaults();
  a.tags.push("x");
  a.labels.k = "v";
  const b = schema.defaults();
  assert.deepEqual(b.tags, []);
  assert.deepEqual(b.labels, {});
  assert.deepEqual(b, {
    pause_threshold: 0.02,
    deletion_threshold: 0,
    schedule_delay: "0s",
    root_path: "",
    sync_remove: false,
    tags: [],
    labels: {},
    mode: "safe",
  });
});

Deno.test("decode overlays raw values on the defaults and types the result", () => {
  const schema = gcSchema();
  const { value, warnings } = schema.decode({
    pause_threshold: 0.5,
    schedule_delay: "1m30s",
    tags: ["a", "b"],
    labels: { team: "x" },
    mode: "fast",
  }, WHERE);
  const typed: ConfigOf<typeof schema> = value;
  assert.equal(typed.pause_threshold, 0.5);
  assert.equal(typed.schedule_delay, "1m30s");
  assert.equal(typed.deletion_threshold, 0);
  assert.deepEqual(typed.tags, ["a", "b"]);
  assert.deepEqual(typed.labels, { team: "x" });
  assert.equal(typed.mode, "fast");
  assert.deepEqual(warnings, []);
});

Deno.test("a wrong type names the full key and the expected type", () => {
  const schema = gcSchema();
  throwsConfig(
    () => schema.decode({ pause_threshold: "x" }, WHERE),
    `${WHERE}.pause_threshold: expected a number, got string "x"`,
  );
  throwsConfig(
    () => schema.decode({ sync_remove: 1 }, WHERE),
    `${WHERE}.sync_remove: expected a boolean, got integer 1`,
  );
  throwsConfig(
    () => schema.decode({ root_path: ["a"] }, WHERE),
    `${WHERE}.root_path: expected a string, got array`,
  );
  throwsConfig(
    () => schema.decode({ tags: ["a", 2] }, WHERE),
    `${WHERE}.tags[1]: expected a string, got integer 2`,
  );
  throwsConfig(
    () => schema.decode({ labels: { a: true } }, WHERE),
    `${WHERE}.labels.a: expected a string, got boolean true`,
  );
  throwsConfig(
    () => schema.decode({ mode: "slow" }, WHERE),
    `${WHERE}.mode: expected one of "fast", "safe", got string "slow"`,
  );
});

Deno.test("integers refuse floats and accept bigint within range", () => {
  const schema = gcSchema();
  throwsConfig(
    () => schema.decode({ deletion_threshold: 1.5 }, WHERE),
    `${WHERE}.deletion_threshold: expected an integer, got float 1.5`,
  );
  throwsConfig(
    () => schema.decode({ deletion_threshold: -1 }, WHERE),
    `${WHERE}.deletion_threshold: -1 is below the minimum 0`,
  );
  assert.equal(schema.decode({ deletion_threshold: 7n }, WHERE).value.deletion_threshold, 7);
  throwsConfig(
    () => schema.decode({ deletion_threshold: 2n ** 64n }, WHERE),
    `${WHERE}.deletion_threshold: ${2n ** 64n} is out of range`,
  );
  // A number field takes integers too, as TOML writes `1` for one.
  assert.equal(schema.decode({ pause_threshold: 1 }, WHERE).value.pause_threshold, 1);
  assert.equal(schema.decode({ pause_threshold: 3n }, WHERE).value.pause_threshold, 3);
});

Deno.test("durations are checked and kept as written", () => {
  const schema = gcSchema();
  throwsConfig(
    () => schema.decode({ schedule_delay: "soon" }, WHERE),
    `${WHERE}.schedule_delay: expected a duration such as "100ms" or "1m30s", got string "soon"`,
  );
  throwsConfig(
    () => schema.decode({ schedule_delay: 100 }, WHERE),
    `${WHERE}.schedule_delay: expected a duration string such as "1m30s", got integer 100`,
  );
  assert.throws(() => field.duration("bad"), ConfigError);
});

Deno.test("parseDuration reads Go durations as milliseconds", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0s"), 0);
  assert.equal(parseDuration("100ms"), 100);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("-2s"), -2000);
  assert.equal(parseDuration("1500us"), 1.5);
  assert.equal(parseDuration("1µs"), 0.001);
  assert.equal(parseDuration("2h45m"), 9_900_000);
  for (const bad of ["", "1", "s", "1x", "1s2", "--1s", "1 s", ".s"]) {
    assert.throws(() => parseDuration(bad), ConfigError, bad);
  }
});

Deno.test("unknown keys are warnings naming the full key, and are ignored", () => {
  const schema = gcSchema();
  const { value, warnings } = schema.decode({ foo: 1, "odd.key": 2 }, WHERE);
  assert.deepEqual(warnings, [
    `unknown key ${WHERE}.foo (ignored)`,
    `unknown key ${WHERE}."odd.key" (ignored)`,
  ]);
  assert.equal("foo" in value, false);
});

Deno.test("a non-table section is refused", () => {
  const schema = gcSchema();
  throwsConfig(
    () => schema.decode(5 as unknown as Record<string, unknown>, WHERE),
    `${WHERE}: expected a table, got integer 5`,
  );
});

Deno.test("custom fields validate with their own decoder", () => {
  const schema = configSchema({
    percent: field.custom(50, (raw, key) => {
      if (typeof raw !== "number" || raw < 0 || raw > 100) {
        throw new ConfigError(`${key}: expected a percentage 0..100, got ${describeValue(raw)}`);
      }
      return raw;
    }),
    pattern: field.custom(/^a/, (raw, key) => {
      if (typeof raw !== "string") throw new ConfigError(`${key}: expected a regexp`);
      return new RegExp(raw);
    }, { encode: (re) => re.source }),
  });
  assert.equal(schema.decode({ percent: 10 }, "x").value.percent, 10);
  throwsConfig(
    () => schema.decode({ percent: 200 }, "x"),
    "x.percent: expected a percentage 0..100, got integer 200",
  );
  const { value } = schema.decode({ pattern: "^b+" }, "x");
  assert.ok(value.pattern.test("bbb"));
  assert.deepEqual(schema.encode(value), { percent: 50, pattern: "^b+" });
});

Deno.test("nested tables merge per key and warn about their unknown keys", () => {
  const schema = configSchema({
    runtime: field.table({ name: field.string("runc"), options: field.stringMap({}) }),
  });
  const { value, warnings } = schema.decode({ runtime: { options: { a: "b" }, nope: 1 } }, "p");
  assert.deepEqual(value, { runtime: { name: "runc", options: { a: "b" } } });
  assert.deepEqual(warnings, ["unknown key p.runtime.nope (ignored)"]);
  throwsConfig(
    () => schema.decode({ runtime: "x" }, "p"),
    'p.runtime: expected a table, got string "x"',
  );
});

Deno.test("declaration mistakes fail at once", () => {
  assert.throws(() => field.integer(1.5), TypeError);
  assert.throws(() => field.oneOf(["a", "b"], "c" as "a"), TypeError);
});

Deno.test("keys are written the TOML way", () => {
  assert.equal(tomlKeyPath(["plugins", "io.containerd.gc.v1.scheduler", "x"]), WHERE + ".x");
  assert.equal(childKey("", "grpc"), "grpc");
  assert.equal(childKey("grpc", "uid"), "grpc.uid");
  assert.equal(
    describeValue(new Date("2020-01-01T00:00:00Z")),
    "datetime 2020-01-01T00:00:00.000Z",
  );
  assert.equal(describeValue({}), "table");
});
