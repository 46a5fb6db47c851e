/**
 * The event plugins, as containerd registers them:
 *
 * - `io.containerd.event.v1.exchange`: the daemon's exchange (the one every plugin gets as
 *   `ctx.events`), listed so `ctr plugins ls` shows it and others can require it by type.
 * - `io.containerd.grpc.v1.events`: containerd.services.events.v1.Events over that exchange;
 *   its Subscribe streams end when the daemon stops. Like containerd's, the same plugin also
 *   serves containerd.services.events.ttrpc.v1.Events/Forward on the daemon's ttrpc socket,
 *   where shims deliver their events.
 *
 * @module
 */
import { register } from "../../server/plugin.ts";
import type { RpcServices } from "../../server/rpc.ts";
import type { Exchange } from "../../server/exchange.ts";
import { EventPlugin, GRPCPlugin } from "../types.ts";
import { eventsService } from "./service.ts";
import { eventsTtrpcService } from "./ttrpc.ts";

register({
  type: EventPlugin,
  id: "exchange",
  init(ctx): Exchange {
    return ctx.events;
  },
});

register({
  type: GRPCPlugin,
  id: "events",
  requires: [EventPlugin],
  init(ctx): RpcServices {
    const exchange = ctx.get(EventPlugin);
    return {
      services: [eventsService({ exchange, signal: ctx.signal })],
      ttrpc: [eventsTtrpcService({ exchange })],
    };
  },
});
