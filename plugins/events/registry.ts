/**
 * The event types the daemon knows, and the filter adaptor over envelopes that uses them.
 *
 * **Type URLs.** containerd 1.6 packs events with typeurl v1, which names a protobuf message by
 * its bare full name: an Any's `type_url` is `containerd.events.NamespaceCreate`, with no
 * `type.googleapis.com/` prefix. `ctr events` decodes an envelope's event by looking that exact
 * string up in its registry (typeurl's own registry, then gogo's message registry) and skips
 * the event with a warning when it is unknown — so publishers here must use the bare name
 * (`schema.typeName`). Image events are the exception to the `containerd.events.` package:
 * they are `containerd.services.images.v1.ImageCreate|ImageUpdate|ImageDelete`.
 *
 * **Filters.** Subscribe filters see an envelope as containerd's `Envelope.Field` does:
 * `topic` and `namespace` (present when non-empty), and `event.<path>` read from the decoded
 * event. Decoding follows the rules of containerd's generated `Field` methods: string fields
 * (present when non-empty), bool fields (always present, `true`/`false`), a map field named
 * `labels` (rest of the path joined with `.` is the key), singular message fields (recursed
 * into when set; Timestamps excepted) and Any fields (decoded and recursed into). Numbers,
 * enums, lists and timestamps are never present, and neither is anything of an unknown type.
 * Unlike typeurl, a prefixed URL (`type.googleapis.com/<name>`) is also resolved by its last
 * segment: it costs nothing and only makes more filters match.
 *
 * @example
 * ```ts
 * import { create, toBinary } from "@bufbuild/protobuf";
 * import { NamespaceCreateSchema } from "../../proto/gen/containerd/events/namespace_pb.ts";
 * import { envelopeAdaptor } from "./registry.ts";
 * import { parseAll } from "../../server/filters.ts";
 *
 * const value = toBinary(NamespaceCreateSchema, create(NamespaceCreateSchema, { name: "x" }));
 * const adaptor = envelopeAdaptor({
 *   timestamp: new Date(),
 *   namespace: "default",
 *   topic: "/namespaces/create",
 *   typeUrl: NamespaceCreateSchema.typeName,
 *   value,
 * });
 * parseAll(["event.name==x,topic~=^/namespaces/"]).match(adaptor); // true
 * ```
 * @module
 */
import {
  createRegistry,
  type DescMessage,
  fromBinary,
  type Message,
  type Registry,
  ScalarType,
} from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Adaptor } from "../../server/filters.ts";
import type { Envelope } from "../../server/exchange.ts";
import { file_containerd_events_container } from "../../proto/gen/containerd/events/container_pb.ts";
import { file_containerd_events_content } from "../../proto/gen/containerd/events/content_pb.ts";
import { file_containerd_events_namespace } from "../../proto/gen/containerd/events/namespace_pb.ts";
import { file_containerd_events_snapshot } from "../../proto/gen/containerd/events/snapshot_pb.ts";
import { file_containerd_events_task } from "../../proto/gen/containerd/events/task_pb.ts";
import { file_containerd_services_images_v1_image_events } from "../../proto/gen/containerd/services/images/v1/image_events_pb.ts";

/**
 * Every event message containerd 1.6 publishes (api/events), by full name. Built once at
 * import and never changed.
 */
export const eventRegistry: Registry = createRegistry(
  file_containerd_events_container,
  file_containerd_events_content,
  file_containerd_events_namespace,
  file_containerd_events_snapshot,
  file_containerd_events_task,
  file_containerd_services_images_v1_image_events,
);

/** An event decoded from an Any: its descriptor and message. */
export interface DecodedEvent {
  readonly desc: DescMessage;
  readonly message: Message;
}

/**
 * The message name a type URL designates: the URL itself when it has no `/` (containerd's
 * form), else its last segment.
 */
export function typeNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf("/");
  return slash < 0 ? typeUrl : typeUrl.slice(slash + 1);
}

/**
 * Decode an event when its type is in `registry` (default: {@link eventRegistry}); undefined
 * when the type is unknown or the bytes do not parse.
 */
export function decodeEvent(
  typeUrl: string,
  value: Uint8Array,
  registry: Registry = eventRegistry,
): DecodedEvent | undefined {
  const desc = registry.getMessage(typeNameOf(typeUrl));
  if (desc === undefined) return undefined;
  try {
    return { desc, message: fromBinary(desc, value) };
  } catch {
    return undefined;
  }
}

const ABSENT = Object.freeze({ value: "", present: false });

/**
 * The value at `fieldpath` in a decoded message, by containerd's fieldpath rules (see the
 * module doc); field names are the proto names (`container_id`, not `containerId`).
 */
export function messageField(
  event: DecodedEvent,
  fieldpath: readonly string[],
  registry: Registry = eventRegistry,
): { value: string; present: boolean } {
  const [head, ...rest] = fieldpath;
  if (head === undefined) return ABSENT;
  const field = event.desc.fields.find((f) => f.name === head);
  if (field === undefined) return ABSENT;
  const value = (event.message as Record<string, unknown>)[field.localName];
  switch (field.fieldKind) {
    case "scalar":
      if (field.scalar === ScalarType.STRING) {
        const text = typeof value === "string" ? value : "";
        return { value: text, present: text.length > 0 };
      }
      if (field.scalar === ScalarType.BOOL) return { value: String(value === true), present: true };
      return ABSENT;
    case "map": {
      if (field.name !== "labels" || field.mapKind !== "scalar") return ABSENT;
      if (field.scalar !== ScalarType.STRING || field.mapKey !== ScalarType.STRING) return ABSENT;
      const map = value as Record<string, string> | undefined;
      const key = rest.join(".");
      if (map === undefined || !Object.hasOwn(map, key)) return ABSENT;
      return { value: map[key] ?? "", present: true };
    }
    case "message": {
      if (value === undefined) return ABSENT;
      if (field.message.typeName === "google.protobuf.Any") {
        const any = value as Any;
        const inner = decodeEvent(any.typeUrl, any.value, registry);
        return inner === undefined ? ABSENT : messageField(inner, rest, registry);
      }
      if (field.message.typeName === "google.protobuf.Timestamp") return ABSENT;
      return messageField({ desc: field.message, message: value as Message }, rest, registry);
    }
    default:
      // Lists and enums: containerd's fieldpath generator leaves them unhandled.
      return ABSENT;
  }
}

/**
 * A filter adaptor over an envelope: `topic`, `namespace` and `event.<path>`. The event is
 * decoded at most once, on the first `event.*` lookup.
 */
export function envelopeAdaptor(envelope: Envelope, registry: Registry = eventRegistry): Adaptor {
  let decoded: DecodedEvent | null | undefined;
  return (fieldpath) => {
    const [head, ...rest] = fieldpath;
    switch (head) {
      case "topic":
        return { value: envelope.topic, present: envelope.topic.length > 0 };
      case "namespace":
        return { value: envelope.namespace, present: envelope.namespace.length > 0 };
      case "event":
        if (decoded === undefined) {
          decoded = decodeEvent(envelope.typeUrl, envelope.value, registry) ?? null;
        }
        return decoded === null ? ABSENT : messageField(decoded, rest, registry);
      default:
        return ABSENT;
    }
  };
}
