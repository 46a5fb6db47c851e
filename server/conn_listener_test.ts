import assert from "node:assert/strict";
import { concatBytes } from "./bytes.ts";
import { ConnListener } from "./conn_listener.ts";

async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(1024);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

Deno.test("ConnListener hands each connection over; a callback that throws drops only that one", async () => {
  let accepted = 0;
  const listener = new ConnListener(Deno.listen({ hostname: "127.0.0.1", port: 0 }), (conn) => {
    accepted++;
    if (accepted === 2) throw new Error("cannot take this one");
    void conn.write(new TextEncoder().encode(`hello ${accepted}`)).finally(() => conn.close());
  });
  const { port } = listener.addr as Deno.NetAddr;
  try {
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      answers.push(await readAll(conn));
      conn.close();
    }
    assert.deepEqual(answers, ["hello 1", "", "hello 3"]);
  } finally {
    await listener.close();
    await listener.close(); // twice is fine
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), /refused/i);
});
