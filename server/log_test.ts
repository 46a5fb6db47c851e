import assert from "node:assert/strict";
import { createLogger, formatLogfmt, isLogLevel } from "./log.ts";

const at = new Date("2026-01-02T03:04:05.000Z");

Deno.test("logfmt lines look like containerd's", () => {
  assert.equal(
    formatLogfmt(at, "info", 'loading plugin "io.containerd.grpc.v1.version"...', {
      type: "io.containerd.grpc.v1",
    }),
    'time="2026-01-02T03:04:05.000Z" level=info msg="loading plugin \\"io.containerd.grpc.v1.version\\"..." type=io.containerd.grpc.v1\n',
  );
  assert.match(formatLogfmt(at, "warn", "x", { error: new Error("a b") }), / error="a b"\n$/);
});

Deno.test("levels filter and child loggers add fields; json format", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "warn",
    format: "json",
    write: (l) => lines.push(l),
    now: () => at,
  });
  log.info("hidden");
  log.with({ id: "x" }).warn("shown", { n: 1 });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0] ?? ""), {
    time: "2026-01-02T03:04:05.000Z",
    level: "warn",
    msg: "shown",
    id: "x",
    n: 1,
  });
  assert.ok(log.enabled("error"));
  assert.ok(!log.enabled("debug"));
  assert.ok(isLogLevel("trace"));
  assert.ok(!isLogLevel("loud"));
});
