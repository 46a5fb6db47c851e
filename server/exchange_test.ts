import assert from "node:assert/strict";
import { Exchange, validateTopic } from "./exchange.ts";

const event = (topic: string) => ({
  topic,
  namespace: "default",
  typeUrl: "t",
  value: new Uint8Array(),
});

Deno.test("subscribers receive what is published after they subscribe, filtered, in order", async () => {
  const exchange = new Exchange();
  const controller = new AbortController();
  const got: string[] = [];
  const reading = (async () => {
    for await (
      const e of exchange.subscribe({
        signal: controller.signal,
        accept: (e) => e.topic !== "/skip",
      })
    ) {
      got.push(e.topic);
      if (got.length === 2) controller.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 0));
  exchange.publish(event("/a"));
  exchange.publish(event("/skip"));
  exchange.publish(event("/b"));
  await reading;
  assert.deepEqual(got, ["/a", "/b"]);
  assert.equal(exchange.subscriberCount, 0);
});

Deno.test("a subscriber that falls behind is dropped with an error", async () => {
  const exchange = new Exchange({ maxQueue: 2 });
  const sub = exchange.subscribe();
  const first = sub.next();
  await new Promise((r) => setTimeout(r, 0));
  for (let i = 0; i < 5; i++) exchange.publish(event(`/e${i}`));
  assert.equal((await first).value?.topic, "/e0");
  await sub.next();
  await assert.rejects(sub.next(), /fell behind/);
});

Deno.test("topics must be absolute", () => {
  assert.equal(validateTopic("/tasks/exit"), undefined);
  assert.match(validateTopic("tasks") ?? "", /must start/);
});

Deno.test("an aborted subscriber is dropped even if its reader never resumes", async () => {
  const exchange = new Exchange();
  const controller = new AbortController();
  const sub = exchange.subscribe({ signal: controller.signal });
  const first = sub.next();
  await new Promise((r) => setTimeout(r, 0));
  exchange.publish(event("/a"));
  await first;
  assert.equal(exchange.subscriberCount, 1);
  controller.abort();
  assert.equal(exchange.subscriberCount, 0);
});
