/** Tests for the readers–writer lock that keeps the GC's disk sweep away from commits. */
import assert from "node:assert/strict";
import { RWLock } from "./rwlock.ts";

const tick = () => new Promise((r) => setTimeout(r, 1));

Deno.test("readers share; a writer waits for them and holds back later readers", async () => {
  const lock = new RWLock();
  const log: string[] = [];
  let releaseA!: () => void;
  const a = lock.shared(() => new Promise<void>((r) => (releaseA = () => r()))).then(() =>
    log.push("a done")
  );
  const b = lock.shared(() => log.push("b ran"));
  await tick();
  assert.deepEqual(log, ["b ran"], "readers run together");
  const w = lock.exclusive(() => log.push("writer ran"));
  const c = lock.shared(() => log.push("c ran"));
  await tick();
  assert.deepEqual(log, ["b ran"], "writer waits for reader a; reader c waits for the writer");
  log.push("a releases");
  releaseA();
  await Promise.all([a, b, w, c]);
  assert.deepEqual(log.filter((l) => l !== "a done"), [
    "b ran",
    "a releases",
    "writer ran",
    "c ran",
  ]);
  assert.deepEqual(lock.state, { readers: 0, writer: false, waiting: 0 });
});

Deno.test("a throwing holder releases the lock", async () => {
  const lock = new RWLock();
  await assert.rejects(() => lock.exclusive(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await lock.shared(() => 42), 42);
});
