/** Tests for the lease manager: generated ids, sync deletes. */
import assert from "node:assert/strict";
import { memoryMetadata } from "../metadata/testing.ts";
import { generateLeaseId, MetadataLeaseManager } from "./manager.ts";

Deno.test("generated lease ids look like containerd's: <nanos>-<base64url of 3 bytes>", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const id = generateLeaseId();
    assert.match(id, /^\d{1,9}-[A-Za-z0-9_-]{4}$/);
    seen.add(id);
  }
  assert.ok(seen.size > 90);
  assert.equal(generateLeaseId(1_700_000_000_123.5).split("-")[0], "123500000");
});

Deno.test("create without an id generates one; a sync delete waits for a collection", async () => {
  const { md } = memoryMetadata();
  let collections = 0;
  const manager = new MetadataLeaseManager(md.leases, async () => {
    collections++;
    return await md.garbageCollect();
  });
  try {
    const lease = manager.create("ns", { labels: { a: "b" } });
    assert.match(lease.id, /^\d+-/);
    await manager.delete("ns", lease.id);
    assert.equal(collections, 0);
    const other = manager.create("ns", { id: "mine" });
    assert.equal(other.id, "mine");
    await manager.delete("ns", "mine", { sync: true });
    assert.equal(collections, 1);
    await assert.rejects(() => manager.delete("ns", "mine", { sync: true }), /not found/);
    assert.equal(collections, 1, "no collection when the delete failed");
  } finally {
    await md.close();
  }
});
