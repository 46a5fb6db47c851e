import assert from "node:assert/strict";
import { notify, sockaddrUnix } from "./notify.ts";

Deno.test("sockaddr_un for a path and an abstract name", () => {
  const path = sockaddrUnix("/run/x.sock");
  assert.equal(path.length, 2 + 11 + 1);
  assert.equal(path.bytes[0], 1);
  assert.equal(new TextDecoder().decode(path.bytes.subarray(2, 13)), "/run/x.sock");
  const abstract = sockaddrUnix("@abc");
  assert.equal(abstract.length, 2 + 4);
  assert.equal(abstract.bytes[2], 0);
  assert.throws(() => sockaddrUnix("x".repeat(200)), /too long/);
});

Deno.test("notify sends READY=1 to a unix datagram socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/notify.sock`;
  // Deno's datagram listener is unstable API: receive in a child process that enables it.
  const receiver = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--unstable-net",
      `const s = Deno.listenDatagram({ transport: "unixpacket", path: ${JSON.stringify(path)} });
       console.log("ready");
       const [data] = await s.receive();
       console.log(new TextDecoder().decode(data));`,
    ],
    stdout: "piped",
  }).spawn();
  const lines = receiver.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.equal((await lines.read()).value?.trim(), "ready");
    assert.equal(notify("READY=1", path), true);
    assert.equal((await lines.read()).value?.trim(), "READY=1");
  } finally {
    lines.releaseLock();
    await receiver.stdout.cancel().catch(() => {});
    await receiver.status;
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(notify("READY=1", ""), false);
});
