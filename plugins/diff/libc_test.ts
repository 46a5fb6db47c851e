import assert from "node:assert/strict";
import { ErrnoError, makeFifo } from "./libc.ts";

Deno.test("makeFifo creates a FIFO with the mode asked (under the umask); EEXIST names the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fifo = `${dir}/log`;
    makeFifo(fifo, 0o700);
    const info = await Deno.lstat(fifo);
    assert.equal(info.isFifo, true);
    assert.equal(info.mode! & 0o777, 0o700);
    assert.throws(
      () => makeFifo(fifo, 0o700),
      (err: unknown) =>
        err instanceof ErrnoError && err.code === "EEXIST" && err.message.includes(fifo),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
