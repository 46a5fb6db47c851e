/**
 * Print the daemon's events as they happen, one line each (ctr events).
 *
 * ```sh
 * deno run -A examples/watch-events.ts --address /run/containerd-ts/containerd-ts.sock
 * deno run -A examples/watch-events.ts -a /tmp/x.sock --filter 'topic~="^/namespaces/"' --count 1
 * ```
 * Prints `ready` on stderr once subscribed; stops after `--count` events (default: never).
 * @module
 */
import { parseArgs } from "node:util";
import { connect } from "../client/mod.ts";

const { values } = parseArgs({
  options: {
    address: { type: "string", short: "a", default: "/run/containerd-ts/containerd-ts.sock" },
    filter: { type: "string", multiple: true },
    count: { type: "string" },
  },
});

const limit = values.count === undefined ? Infinity : Number(values.count);
await using client = connect({ address: values.address });
try {
  // Start the subscription, then make one call so the connection is known to be up.
  const events = client.events.subscribe({ filters: values.filter ?? [] });
  const first = events.next();
  first.catch(() => {}); // reported where it is awaited below
  await client.health.check();
  console.error("ready");
  let next = await first;
  for (let seen = 0; !next.done;) {
    const e = next.value;
    const body = e.event
      ? JSON.stringify(e.event, (k, v) => (k === "$typeName" ? undefined : v))
      : "";
    console.log(
      `${e.timestamp?.toISOString() ?? "-"} ${e.namespace} ${e.topic} ${e.typeUrl} ${body}`,
    );
    if (++seen >= limit) break;
    next = await events.next();
  }
  await events.return();
} catch (err) {
  console.error(`watch-events: ${err instanceof Error ? err.message : err}`);
  Deno.exitCode = 1;
}
