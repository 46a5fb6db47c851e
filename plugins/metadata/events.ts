/**
 * Publishing containerd events from the storage services: the envelope carries the type URL
 * `containerd.events.<Name>` (the message's full name) and the encoded message, as
 * containerd's exchange does, so `ctr events` decodes them.
 *
 * @module
 */
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { Exchange } from "../../server/exchange.ts";

/** Encode `value` as `schema` and publish it on `topic` in `namespace`. */
export function publishEvent<D extends DescMessage>(
  events: Exchange,
  namespace: string,
  topic: string,
  schema: D,
  value: MessageInitShape<D>,
): void {
  events.publish({
    topic,
    namespace,
    typeUrl: schema.typeName,
    value: toBinary(schema, create(schema, value)),
  });
}
