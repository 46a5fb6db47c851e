/** Tests for the GC scheduler: when collections run, waiting for one, failures. */
import assert from "node:assert/strict";
import type { GCStats, MutationListener } from "../metadata/api.ts";
import { GCFailedError, GCScheduler, type SchedulerOptions } from "./scheduler.ts";

class FakeCollector {
  runs = 0;
  fail = false;
  delayMs = 0;
  readonly listeners = new Set<MutationListener>();
  onMutation(listener: MutationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async garbageCollect(): Promise<GCStats> {
    this.runs++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fail) throw new Error("disk on fire");
    return { metaMs: 1, backendMs: 0, removed: {}, blobsRemoved: 0, ingestsRemoved: 0 };
  }
  mutate(dirty: boolean): void {
    for (const l of this.listeners) l(dirty);
  }
}

const defaults: SchedulerOptions = {
  pauseThreshold: 0.02,
  deletionThreshold: 0,
  mutationThreshold: 100,
  scheduleDelayMs: 0,
  startupDelayMs: 0,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("the first collection runs after the startup delay", async () => {
  const c = new FakeCollector();
  const s = new GCScheduler(c, { ...defaults, startupDelayMs: 20 });
  try {
    assert.equal(c.runs, 0);
    await sleep(60);
    assert.equal(c.runs, 1);
  } finally {
    s.close();
  }
});

Deno.test("plain mutations below the threshold do not collect; a deletion does", async () => {
  const c = new FakeCollector();
  const s = new GCScheduler(c, defaults);
  try {
    for (let i = 0; i < 10; i++) c.mutate(false);
    await sleep(30);
    assert.equal(c.runs, 0);
    c.mutate(true);
    await sleep(30);
    assert.equal(c.runs, 1);
  } finally {
    s.close();
  }
});

Deno.test("reaching the mutation threshold collects", async () => {
  const c = new FakeCollector();
  const s = new GCScheduler(c, { ...defaults, mutationThreshold: 5 });
  try {
    for (let i = 0; i < 5; i++) c.mutate(false);
    await sleep(30);
    assert.equal(c.runs, 1);
  } finally {
    s.close();
  }
});

Deno.test("after a collection nothing runs until something is due, then paced", async () => {
  const c = new FakeCollector();
  // 1 ms collections with pause 0.02: at most one every 49 ms.
  const s = new GCScheduler(c, defaults);
  try {
    c.mutate(true);
    await sleep(20);
    assert.equal(c.runs, 1);
    assert.equal(s.stats.scheduled, false, "idle: no timer");
    c.mutate(true);
    assert.equal(s.stats.scheduled, true);
    await sleep(10);
    assert.equal(c.runs, 1, "not before the pause interval");
    await sleep(80);
    assert.equal(c.runs, 2);
    assert.equal(s.stats.scheduled, false);
  } finally {
    s.close();
  }
});

Deno.test("a sync request is not held back by the pause interval", async () => {
  const c = new FakeCollector();
  const s = new GCScheduler(c, defaults);
  try {
    await s.scheduleAndWait();
    const started = Date.now();
    await s.scheduleAndWait();
    assert.ok(Date.now() - started < 40, "ran at once");
    assert.equal(c.runs, 2);
  } finally {
    s.close();
  }
});

Deno.test("scheduleAndWait resolves with a collection that started after the call", async () => {
  const c = new FakeCollector();
  c.delayMs = 30;
  const s = new GCScheduler(c, defaults);
  try {
    c.mutate(true);
    await sleep(5); // a collection is running now
    assert.equal(c.runs, 1);
    const stats = await s.scheduleAndWait();
    assert.equal(stats.metaMs, 1);
    assert.equal(c.runs, 2, "a second run, not the one already in flight");
  } finally {
    s.close();
  }
});

Deno.test("a failed collection rejects its waiters and the next one runs", async () => {
  const c = new FakeCollector();
  c.fail = true;
  const s = new GCScheduler(c, defaults);
  try {
    await assert.rejects(() => s.scheduleAndWait(), GCFailedError);
    c.fail = false;
    await s.scheduleAndWait();
    assert.equal(c.runs, 2);
  } finally {
    s.close();
  }
});

Deno.test("waiting can be abandoned and close fails pending waiters", async () => {
  const c = new FakeCollector();
  c.delayMs = 50;
  const s = new GCScheduler(c, defaults);
  const controller = new AbortController();
  const abandoned = s.scheduleAndWait(controller.signal);
  controller.abort(new Error("gave up"));
  await assert.rejects(abandoned, /gave up/);
  await sleep(5);
  const pending = s.scheduleAndWait();
  s.close();
  await assert.rejects(pending, GCFailedError);
  await sleep(60);
  await assert.rejects(() => s.scheduleAndWait(), /closed/);
});
