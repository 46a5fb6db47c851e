import assert from "node:assert/strict";
import * as net from "node:net";
import { closeOnExecAll } from "./cloexec.ts";

Deno.test("a listening node:net socket is not inherited by a child after closeOnExecAll", async () => {
  const dir = await Deno.makeTempDir();
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(`${dir}/s.sock`, resolve));
  try {
    closeOnExecAll();
    const out = await new Deno.Command("sh", {
      args: ["-c", "ls -l /proc/$$/fd"],
      stdout: "piped",
    }).output();
    const listing = new TextDecoder().decode(out.stdout);
    assert.doesNotMatch(listing, /socket:/, listing);
    assert.equal(closeOnExecAll(), 0, "a second sweep finds nothing left to change");
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await Deno.remove(dir, { recursive: true });
  }
});
