/**
 * `containerd.services.events.v1.Events`: subscribe to the daemon's events as an async
 * iterator (`ctr events`), and publish events.
 *
 * Subscribe is not namespace-scoped: it sees every namespace; narrow it with filters such as
 * `namespace==default` or `topic~=^/content/`. Each envelope's event is decoded when its type
 * is one of containerd's event messages (containerd/events/*.proto and the image events);
 * others keep only their type URL and bytes.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * for await (const e of client.events.subscribe({ filters: ["topic~=^/namespaces/"] })) {
 *   console.log(e.timestamp, e.namespace, e.topic, e.event);
 * }
 * ```
 * @module
 */
import {
  create as createMessage,
  createRegistry,
  type DescMessage,
  fromBinary,
  type Message,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Events } from "../proto/gen/containerd/services/events/v1/events_pb.ts";
import { file_containerd_events_container } from "../proto/gen/containerd/events/container_pb.ts";
import { file_containerd_events_content } from "../proto/gen/containerd/events/content_pb.ts";
import { file_containerd_events_namespace } from "../proto/gen/containerd/events/namespace_pb.ts";
import { file_containerd_events_snapshot } from "../proto/gen/containerd/events/snapshot_pb.ts";
import { file_containerd_events_task } from "../proto/gen/containerd/events/task_pb.ts";
import { file_containerd_services_images_v1_image_events } from "../proto/gen/containerd/services/images/v1/image_events_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** containerd's event messages, by full name (read-only). */
const EVENT_TYPES = createRegistry(
  file_containerd_events_container,
  file_containerd_events_content,
  file_containerd_events_namespace,
  file_containerd_events_snapshot,
  file_containerd_events_task,
  file_containerd_services_images_v1_image_events,
);

/** One event as the daemon delivered it. */
export interface EventEnvelope {
  /** When it was published. */
  timestamp?: Date;
  /** The namespace it happened in. */
  namespace: string;
  /** e.g. `/namespaces/create`. */
  topic: string;
  /** The event's type: its message's full name, e.g. `containerd.events.NamespaceCreate`. */
  typeUrl: string;
  /** The event's protobuf bytes. */
  value: Uint8Array;
  /** The decoded event when its type is one of containerd's events. */
  event?: Message;
}

/** An event to publish: its message type and fields. */
export interface PublishEvent<D extends DescMessage> {
  /** The generated schema, e.g. `ContentDeleteSchema`; its full name becomes the type URL. */
  schema: D;
  /** The event's fields. Default: none set. */
  value?: MessageInitShape<D>;
}

/** Options of {@link EventsClient.subscribe}. */
export interface SubscribeOptions extends CallOptions {
  /** containerd filters on `topic`, `namespace` and `event.*`; OR-ed. Default: everything. */
  filters?: string[];
}

/** Decode an Any's payload when its (bare or prefixed) type URL names a known event. */
function decode(typeUrl: string, value: Uint8Array): Message | undefined {
  const name = typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
  const desc = EVENT_TYPES.getMessage(name);
  if (desc === undefined) return undefined;
  try {
    return fromBinary(desc, value);
  } catch {
    return undefined;
  }
}

/**
 * The Events service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * import { NamespaceCreateSchema } from "../proto/gen/containerd/events/namespace_pb.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * await client.events.publish("/my/topic", { schema: NamespaceCreateSchema, value: { name: "x" } });
 * ```
 */
export class EventsClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.events`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Events from now on, until the loop ends (breaking out cancels the subscription) or the
   * signal aborts (then it rejects with CanceledError). A malformed filter rejects with
   * InvalidArgumentError.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for await (const e of client.events.subscribe({ filters: ["namespace==default"] })) {
   *   console.log(e.topic);
   *   break;
   * }
   * ```
   */
  async *subscribe(options: SubscribeOptions = {}): AsyncGenerator<EventEnvelope, void, undefined> {
    const stream = this.#rpc.serverStream(
      Events.method.subscribe,
      { filters: options.filters ?? [] },
      options,
    );
    for await (const envelope of stream) {
      const out: EventEnvelope = {
        namespace: envelope.namespace,
        topic: envelope.topic,
        typeUrl: envelope.event?.typeUrl ?? "",
        value: envelope.event?.value ?? new Uint8Array(),
      };
      if (envelope.timestamp !== undefined) out.timestamp = timestampDate(envelope.timestamp);
      const event = decode(out.typeUrl, out.value);
      if (event !== undefined) out.event = event;
      yield out;
    }
  }

  /**
   * Publish an event in the client's namespace. The type URL is the message's bare full
   * name, as containerd's typeurl writes it, so `ctr events` decodes it.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * import { ContentDeleteSchema } from "../proto/gen/containerd/events/content_pb.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.events.publish("/content/delete", {
   *   schema: ContentDeleteSchema,
   *   value: { digest: "sha256:0" },
   * });
   * ```
   */
  async publish<D extends DescMessage>(
    topic: string,
    event: PublishEvent<D>,
    options: CallOptions = {},
  ): Promise<void> {
    const { schema } = event;
    const value = toBinary(schema, createMessage(schema, event.value));
    await this.#rpc.unary(
      Events.method.publish,
      { topic, event: { typeUrl: schema.typeName, value } },
      options,
    );
  }
}

/**
 * The definition `client.use()` builds {@link EventsClient} from.
 *
 * @example
 * ```ts
 * import { connect, eventsService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const events = client.use(eventsService); // same as client.events
 * ```
 */
export const eventsService: ServiceDef<EventsClient> = defineService(
  "events",
  (rpc) => new EventsClient(rpc),
);
