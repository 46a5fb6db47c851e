import assert from "node:assert/strict";
import { concatBytes, joinInto } from "./bytes.ts";

Deno.test("concatBytes joins parts in order, with or without a counted length", () => {
  const parts = [new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3, 4, 5]).subarray(1)];
  assert.deepEqual([...concatBytes(parts)], [1, 2, 4, 5]);
  assert.deepEqual([...concatBytes(parts, 4)], [1, 2, 4, 5]);
  assert.equal(concatBytes([]).byteLength, 0);
  const one = new Uint8Array([9]);
  const copy = concatBytes([one]);
  copy[0] = 0;
  assert.equal(one[0], 9, "always a new buffer");
});

Deno.test("joinInto fills the start of a reused buffer and returns that view", () => {
  const target = new Uint8Array(8).fill(7);
  const joined = joinInto(target, [new Uint8Array([1, 2]), new Uint8Array([3])], 3);
  assert.deepEqual([...joined], [1, 2, 3]);
  assert.equal(joined.buffer, target.buffer);
  assert.deepEqual([...target], [1, 2, 3, 7, 7, 7, 7, 7], "the rest is left as it was");
});
