import assert from "node:assert/strict";
import { CanceledError, connect, parseAddress, UnavailableError } from "./mod.ts";

Deno.test("parseAddress: unix paths, unix:// URLs and host:port", () => {
  assert.deepEqual(parseAddress("/run/x.sock"), { path: "/run/x.sock" });
  assert.deepEqual(parseAddress("unix:///run/x.sock"), { path: "/run/x.sock" });
  assert.deepEqual(parseAddress("x.sock"), { path: "x.sock" });
  assert.deepEqual(parseAddress("127.0.0.1:1234"), { host: "127.0.0.1", port: 1234 });
  assert.deepEqual(parseAddress("[::1]:80"), { host: "::1", port: 80 });
  assert.deepEqual(parseAddress("localhost:99999"), { path: "localhost:99999" });
});

Deno.test("connect: a missing socket rejects with UnavailableError naming it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const address = `${dir}/none.sock`;
    await using client = connect({ address, timeoutMs: 2000 });
    const err = await client.version.get().then(() => undefined, (e) => e);
    assert.ok(err instanceof UnavailableError, String(err));
    assert.equal(err.message, `connect to ${address}: no such socket`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connect: after close every call (derived clients too) rejects with CanceledError", async () => {
  const client = connect({ address: "/nonexistent/x.sock" });
  const derived = client.withNamespace("other");
  await client.close();
  await client.close(); // idempotent
  assert.equal(derived.closed, true);
  await assert.rejects(client.version.get(), CanceledError);
  await assert.rejects(derived.introspection.plugins(), CanceledError);
  const stream = derived.health.watch();
  await assert.rejects(stream.next(), CanceledError);
});
