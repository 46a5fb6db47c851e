/**
 * containerd.services.events.ttrpc.v1.Events over the daemon's exchange: the Forward a shim
 * calls on the daemon's ttrpc socket (`TTRPC_ADDRESS`) to deliver its `/tasks/*` events.
 *
 * As in containerd 1.6 (services/events/ttrpc.go): the envelope is authoritative — its
 * namespace, topic, timestamp and Any go into the exchange as sent, after the same checks
 * as the gRPC Forward (namespace an identifier, topic a valid path, timestamp set, event
 * set). The `containerd-namespace-ttrpc` metadata a shim also sends is not consulted, since
 * containerd does not consult it either; a bad envelope answers InvalidArgument.
 *
 * @example
 * ```ts
 * import { TtrpcServer } from "../../server/ttrpc.ts";
 * import { Exchange } from "../../server/exchange.ts";
 * import { eventsTtrpcService } from "./ttrpc.ts";
 * const spec = eventsTtrpcService({ exchange: new Exchange() });
 * new TtrpcServer().register(spec.service, spec.impl);
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import type { Exchange } from "../../server/exchange.ts";
import { type TtrpcServiceSpec, ttrpcServiceSpec } from "../../server/rpc.ts";
import { Events } from "../../proto/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { envelopeFromProto } from "./service.ts";

/** What the ttrpc Events service needs. */
export interface EventsTtrpcDeps {
  /** The exchange forwarded envelopes are published on. */
  exchange: Exchange;
}

/** The ttrpc Events service (Forward only, as containerd's) over an exchange. */
export function eventsTtrpcService(deps: EventsTtrpcDeps): TtrpcServiceSpec {
  const { exchange } = deps;
  return ttrpcServiceSpec(Events, {
    forward(request) {
      exchange.publish(envelopeFromProto(request.envelope));
      return create(EmptySchema);
    },
  });
}
