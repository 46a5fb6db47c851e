import assert from "node:assert/strict";
import { concatBytes } from "./bytes.ts";

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
