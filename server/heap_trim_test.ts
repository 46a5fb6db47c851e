import assert from "node:assert/strict";
import { createHeapTrimmer } from "./heap_trim.ts";

/** A hand-driven clock and scheduler: `advance` runs what falls due, in order. */
function fakeTime() {
  let t = 0;
  let pending: { at: number; fn: () => void }[] = [];
  return {
    now: () => t,
    schedule(fn: () => void, ms: number) {
      const entry = { at: t + ms, fn };
      pending.push(entry);
      return () => void (pending = pending.filter((e) => e !== entry));
    },
    advance(ms: number) {
      const until = t + ms;
      for (;;) {
        const next = pending.filter((e) => e.at <= until).sort((a, b) => a.at - b.at)[0];
        if (!next) break;
        pending = pending.filter((e) => e !== next);
        t = next.at;
        next.fn();
      }
      t = until;
    },
    get pending() {
      return pending.length;
    },
  };
}

/** A trimmer on fake time that counts its trims. */
function countingTrimmer(
  minBytes: number,
  idleMs: number,
  calls: { minCalls?: number; callIdleMs?: number } = {},
) {
  const time = fakeTime();
  const counted = { trims: 0 };
  const trimmer = createHeapTrimmer({
    minBytes,
    idleMs,
    ...calls,
    trim: () => counted.trims++,
    now: time.now,
    schedule: time.schedule,
  });
  return { time, trimmer, counted };
}

Deno.test("heap trim: once after enough traffic and a quiet spell, not before", () => {
  const { time, trimmer, counted } = countingTrimmer(100, 1000);
  trimmer.note(60);
  time.advance(5000);
  assert.equal(counted.trims, 0, "below minBytes");
  trimmer.note(60);
  // Traffic keeps coming: no trim while it does.
  for (let i = 0; i < 10; i++) {
    time.advance(500);
    trimmer.note(1);
  }
  assert.equal(counted.trims, 0, "still busy");
  time.advance(999);
  assert.equal(counted.trims, 0, "not quiet long enough");
  time.advance(1);
  assert.equal(counted.trims, 1, "after the quiet spell");
  time.advance(10_000);
  assert.equal(counted.trims, 1, "once per burst");
  assert.equal(time.pending, 0);
  trimmer.note(200);
  time.advance(1000);
  assert.equal(counted.trims, 2, "the next burst");
});

Deno.test("heap trim: close cancels a pending trim", () => {
  const { time, trimmer, counted } = countingTrimmer(1, 10);
  trimmer.note(10);
  assert.equal(time.pending, 1);
  trimmer.close();
  time.advance(100);
  assert.equal(counted.trims, 0);
  assert.equal(time.pending, 0);
});

Deno.test("heap trim: glibc's malloc_trim runs here without failing", async () => {
  const trimmer = createHeapTrimmer({ minBytes: 1, idleMs: 1 });
  trimmer.note(1);
  // The default timer is unref'd; wait for it explicitly.
  await new Promise((r) => setTimeout(r, 50));
  trimmer.close();
});

Deno.test("heap trim: after a known burst, once quiet for its own time, whatever was noted", () => {
  const { time, trimmer, counted } = countingTrimmer(1 << 20, 2000);
  trimmer.burstEnded(500);
  time.advance(499);
  assert.equal(counted.trims, 0, "not quiet long enough");
  time.advance(1);
  assert.equal(counted.trims, 1, "quiet for 500 ms: trimmed, though no bytes were noted");
  // Traffic right after it (a client's first calls) postpones it by the same quiet time.
  trimmer.burstEnded(500);
  time.advance(300);
  trimmer.note(10);
  time.advance(499);
  assert.equal(counted.trims, 1, "traffic came: quiet again for 500 ms first");
  time.advance(1);
  assert.equal(counted.trims, 2);
  time.advance(10_000);
  assert.equal(counted.trims, 2, "once");
  assert.equal(time.pending, 0);
});

Deno.test("heap trim: calls wait for their own, longer quiet; bulk bytes meanwhile shorten it", () => {
  const { time, trimmer, counted } = countingTrimmer(1000, 2000, {
    minCalls: 10,
    callIdleMs: 10_000,
  });
  for (let i = 0; i < 9; i++) trimmer.noteCall();
  time.advance(60_000);
  assert.equal(counted.trims, 0, "below minCalls");
  trimmer.noteCall();
  time.advance(9_999);
  assert.equal(counted.trims, 0, "calls alone wait 10 s");
  time.advance(1);
  assert.equal(counted.trims, 1);
  // A burst of calls, then bulk bytes: the bytes' 2 s apply from the last traffic.
  for (let i = 0; i < 10; i++) trimmer.noteCall();
  time.advance(1000);
  trimmer.note(1000);
  time.advance(1999);
  assert.equal(counted.trims, 1, "not quiet for 2 s yet");
  time.advance(1);
  assert.equal(counted.trims, 2, "bulk bytes: 2 s of quiet is enough");
  // Calls and bytes add up: 5 calls (half of minCalls) and 500 bytes (half of minBytes).
  for (let i = 0; i < 5; i++) trimmer.noteCall();
  trimmer.note(499);
  time.advance(60_000);
  assert.equal(counted.trims, 2, "not quite enough together");
  trimmer.note(1);
  time.advance(9_999);
  assert.equal(counted.trims, 2, "together, the calls' quiet time applies");
  time.advance(1);
  assert.equal(counted.trims, 3);
  time.advance(60_000);
  assert.equal(counted.trims, 3, "once");
  assert.equal(time.pending, 0);
});
