import assert from "node:assert/strict";
import {
  ALL,
  closePlugins,
  initPlugins,
  missingRequired,
  PluginRegistrationError,
  pluginType,
  Registry,
  SkipPluginError,
  uriOf,
} from "./plugin.ts";
import { Exchange } from "./exchange.ts";
import { silentLogger } from "./log.ts";

const Content = pluginType<{ read(): string }>("io.containerd.content.v1");
const Metadata = pluginType<{ db: string }>("io.containerd.metadata.v1");
const GRPC = pluginType<{ name: string }>("io.containerd.grpc.v1");
const Snap = pluginType<{ kind: string }>("io.containerd.snapshotter.v1");

function order(registry: Registry, disabled: string[] = []): string[] {
  return registry.graph((uri) => disabled.includes(uri)).map(uriOf);
}

function initOptions(registry: Registry, disabled: string[] = []) {
  return {
    ordered: registry.graph((uri) => disabled.includes(uri)),
    configs: new Map<string, unknown>(),
    properties: {
      rootDir: "/r",
      stateDir: "/s",
      grpcAddress: "/s/sock",
      ttrpcAddress: "/s/sock.ttrpc",
    },
    events: new Exchange(),
    log: silentLogger(),
    signal: new AbortController().signal,
  };
}

Deno.test("registration refuses empty ids, duplicates and * mixed with types", () => {
  const registry = new Registry();
  assert.throws(
    () => registry.register({ type: GRPC, id: "", init: () => ({ name: "" }) }),
    /empty id/,
  );
  registry.register({ type: GRPC, id: "a", init: () => ({ name: "a" }) });
  assert.throws(
    () => registry.register({ type: GRPC, id: "a", init: () => ({ name: "a" }) }),
    /io\.containerd\.grpc\.v1\.a: registered twice/,
  );
  assert.throws(
    () =>
      registry.register({
        type: GRPC,
        id: "b",
        requires: [ALL, Content],
        init: () => ({ name: "b" }),
      }),
    PluginRegistrationError,
  );
});

Deno.test("ordering keeps registration order and pulls requirements first", () => {
  const registry = new Registry();
  registry.register({ type: GRPC, id: "content", requires: [Content], init: () => ({ name: "" }) });
  registry.register({ type: GRPC, id: "version", init: () => ({ name: "" }) });
  registry.register({
    type: Content,
    id: "content",
    requires: [Metadata],
    init: () => ({ read: () => "" }),
  });
  registry.register({ type: Metadata, id: "sqlite", init: () => ({ db: "" }) });
  registry.register({
    type: GRPC,
    id: "introspection",
    requires: [ALL],
    init: () => ({ name: "" }),
  });
  registry.register({ type: Snap, id: "native", init: () => ({ kind: "" }) });
  assert.deepEqual(order(registry), [
    "io.containerd.metadata.v1.sqlite",
    "io.containerd.content.v1.content",
    "io.containerd.grpc.v1.content",
    "io.containerd.grpc.v1.version",
    "io.containerd.snapshotter.v1.native",
    "io.containerd.grpc.v1.introspection",
  ]);
});

Deno.test("disabled plugins are dropped from the graph", () => {
  const registry = new Registry();
  registry.register({ type: Metadata, id: "sqlite", init: () => ({ db: "" }) });
  registry.register({ type: GRPC, id: "version", init: () => ({ name: "" }) });
  assert.deepEqual(order(registry, ["io.containerd.metadata.v1.sqlite"]), [
    "io.containerd.grpc.v1.version",
  ]);
});

Deno.test("a requirement cycle fails, naming the cycle", () => {
  const registry = new Registry();
  registry.register({
    type: Content,
    id: "c",
    requires: [Metadata],
    init: () => ({ read: () => "" }),
  });
  registry.register({ type: Metadata, id: "m", requires: [Snap], init: () => ({ db: "" }) });
  registry.register({ type: Snap, id: "s", requires: [Content], init: () => ({ kind: "" }) });
  assert.throws(
    () => registry.graph(),
    /cycle: io\.containerd\.content\.v1\.c -> io\.containerd\.metadata\.v1\.m -> io\.containerd\.snapshotter\.v1\.s -> io\.containerd\.content\.v1\.c/,
  );
});

Deno.test("init records ok, skip and error; dependents name the chain", async () => {
  const registry = new Registry();
  registry.register({
    type: Content,
    id: "local",
    init: () => {
      throw new Error("disk on fire");
    },
  });
  registry.register({
    type: Snap,
    id: "zfs",
    init: () => {
      throw new SkipPluginError("no zfs pool");
    },
  });
  registry.register({
    type: Metadata,
    id: "sqlite",
    requires: [Content],
    init: (ctx) => ({ db: ctx.get(Content).read() }),
  });
  registry.register({ type: GRPC, id: "version", init: (ctx) => ({ name: ctx.uri }) });
  const set = await initPlugins(initOptions(registry));
  const byUri = new Map(set.records().map((r) => [r.uri, r]));
  assert.equal(byUri.get("io.containerd.content.v1.local")?.status, "error");
  assert.equal(byUri.get("io.containerd.snapshotter.v1.zfs")?.status, "skip");
  assert.equal(
    byUri.get("io.containerd.snapshotter.v1.zfs")?.error?.message,
    "no zfs pool: skip plugin",
  );
  assert.equal(
    byUri.get("io.containerd.metadata.v1.sqlite")?.error?.message,
    "requires io.containerd.content.v1: local failed: disk on fire",
  );
  assert.equal(set.get(GRPC).name, "io.containerd.grpc.v1.version");
  assert.equal(set.get(GRPC, "version").name, "io.containerd.grpc.v1.version");
  assert.throws(
    () => set.get(Snap),
    /requires io\.containerd\.snapshotter\.v1: zfs skipped: no zfs pool/,
  );
  assert.deepEqual(
    missingRequired(set, [
      "io.containerd.grpc.v1.version",
      "io.containerd.content.v1.local",
      "x.y",
    ]),
    ["io.containerd.content.v1.local: disk on fire", "x.y: not registered or disabled"],
  );
  for (const record of set.records()) assert.ok(record.initMs >= 0);
});

Deno.test("init context carries dirs, config defaults and properties", async () => {
  const registry = new Registry();
  let seen: unknown;
  registry.register({
    type: GRPC,
    id: "probe",
    config: {
      defaults: () => ({ depth: 3 }),
      decode: () => ({ value: { depth: 3 }, warnings: [] }),
    },
    init: (ctx) => {
      seen = {
        root: ctx.root,
        state: ctx.state,
        config: ctx.config,
        ttrpc: ctx.properties.ttrpcAddress,
      };
      return { name: "probe" };
    },
  });
  await initPlugins(initOptions(registry));
  assert.deepEqual(seen, {
    root: "/r/io.containerd.grpc.v1.probe",
    state: "/s/io.containerd.grpc.v1.probe",
    config: { depth: 3 },
    ttrpc: "/s/sock.ttrpc",
  });
});

Deno.test("close runs in reverse init order and goes on past failures", async () => {
  const registry = new Registry();
  const closed: string[] = [];
  const closer = (name: string, fail = false) => ({
    name,
    close: () => {
      closed.push(name);
      if (fail) throw new Error("stuck");
    },
  });
  registry.register({ type: GRPC, id: "a", init: () => closer("a") });
  registry.register({ type: GRPC, id: "b", init: () => closer("b", true) });
  registry.register({ type: GRPC, id: "c", init: () => closer("c") });
  const set = await initPlugins(initOptions(registry));
  const errors: string[] = [];
  await closePlugins(set, (uri) => errors.push(uri));
  assert.deepEqual(closed, ["c", "b", "a"]);
  assert.deepEqual(errors, ["io.containerd.grpc.v1.b"]);
});
