/**
 * containerd.services.events.v1.Events over the daemon's exchange: Publish and Forward put
 * envelopes on it, Subscribe streams them out (`ctr events`).
 *
 * As in containerd 1.6: Publish takes the namespace from the request (required) and stamps
 * the time; Forward takes an envelope as built elsewhere (a shim, another daemon) and checks
 * its namespace, topic and timestamp; Subscribe is not namespace-scoped — it sees every
 * namespace, and clients narrow it with filters such as `namespace==default`. Topics are
 * absolute paths whose components are identifiers (`/tasks/exec-added`).
 *
 * @example
 * ```ts
 * import { Exchange } from "../../server/exchange.ts";
 * import { eventsService } from "./service.ts";
 * const spec = eventsService({ exchange: new Exchange(), signal: new AbortController().signal });
 * ```
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type Any,
  AnySchema,
  EmptySchema,
  type Timestamp,
  timestampDate,
  timestampFromDate,
} from "@bufbuild/protobuf/wkt";
import type { Envelope as ExchangeEnvelope, Exchange } from "../../server/exchange.ts";
import { ErrdefsError, fromCode, InvalidArgumentError } from "../../server/errdefs.ts";
import { type Filter, parseAll } from "../../server/filters.ts";
import { namespaceOf, validateIdentifier } from "../../server/interceptors.ts";
import { type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import {
  type Envelope,
  EnvelopeSchema,
  Events,
} from "../../proto/gen/containerd/services/events/v1/events_pb.ts";
import { envelopeAdaptor } from "./registry.ts";

/** Seconds of Go's zero time (0001-01-01T00:00:00Z): what a Go client sends for "unset". */
const GO_ZERO_SECONDS = -62135596800n;

/**
 * Check a topic as containerd does: non-empty, absolute, at least one component, and every
 * component an identifier. Throws InvalidArgumentError naming the topic.
 */
export function validateEventTopic(topic: string): void {
  const fail = (reason: string, cause?: unknown): never => {
    throw new InvalidArgumentError(
      `envelope topic ${JSON.stringify(topic)}: ${reason}`,
      cause === undefined ? undefined : { cause },
    );
  };
  if (topic === "") fail("must not be empty");
  if (!topic.startsWith("/")) fail("must start with '/'");
  if (topic.length === 1) fail("must have at least one component");
  for (const component of topic.slice(1).split("/")) {
    try {
      validateIdentifier(component);
    } catch (err) {
      fail(
        `failed validation on component ${JSON.stringify(component)}: ${(err as Error).message}`,
        err,
      );
    }
  }
}

/** Re-throw a typed error with `prefix` before its message, keeping its kind. */
function wrapped(prefix: string, err: unknown): never {
  if (err instanceof ErrdefsError) {
    throw fromCode(err.code, `${prefix}: ${err.message}`);
  }
  throw err;
}

/** The Any an envelope must carry; InvalidArgument when missing or without a type URL. */
function requireEvent(event: Any | undefined, what: string): Any {
  if (event === undefined || event.typeUrl === "") {
    throw new InvalidArgumentError(`${what}: event must be set, with a type URL`);
  }
  return event;
}

/**
 * The fields of a forwarded envelope: containerd.services.events.v1.Envelope and the ttrpc
 * twin shims send (containerd.services.events.ttrpc.v1.Envelope) both have this shape.
 */
export interface EnvelopeFields {
  timestamp?: Timestamp | undefined;
  namespace: string;
  topic: string;
  event?: Any | undefined;
}

/**
 * Check a forwarded envelope (containerd's validateEnvelope) and turn it into the exchange's
 * form: namespace an identifier, topic valid, timestamp set (Go's zero time counts as unset),
 * event set. Used by the gRPC Forward and by the ttrpc Forward that shims call.
 */
export function envelopeFromProto(envelope: EnvelopeFields | undefined): ExchangeEnvelope {
  if (envelope === undefined) throw new InvalidArgumentError("envelope must be set");
  try {
    validateIdentifier(envelope.namespace);
  } catch (err) {
    wrapped("event envelope has invalid namespace", err);
  }
  validateEventTopic(envelope.topic);
  const timestamp: Timestamp | undefined = envelope.timestamp;
  if (
    timestamp === undefined ||
    (timestamp.seconds === GO_ZERO_SECONDS && timestamp.nanos === 0)
  ) {
    throw new InvalidArgumentError("timestamp must be set on forwarded event");
  }
  const event = requireEvent(envelope.event, "forwarded envelope");
  return {
    timestamp: timestampDate(timestamp),
    namespace: envelope.namespace,
    topic: envelope.topic,
    typeUrl: event.typeUrl,
    value: event.value,
  };
}

/** The wire form of an exchange envelope. */
export function envelopeToProto(envelope: ExchangeEnvelope): Envelope {
  return create(EnvelopeSchema, {
    timestamp: timestampFromDate(envelope.timestamp),
    namespace: envelope.namespace,
    topic: envelope.topic,
    event: create(AnySchema, { typeUrl: envelope.typeUrl, value: envelope.value }),
  });
}

/** What the Events service needs. */
export interface EventsServiceDeps {
  /** The exchange to publish on and subscribe to. */
  exchange: Exchange;
  /** Aborted when the daemon stops: every Subscribe stream then ends. */
  signal: AbortSignal;
}

/** The Events service over an exchange. */
export function eventsService(deps: EventsServiceDeps): ServiceSpec {
  const { exchange, signal: stopping } = deps;
  return serviceSpec(Events, {
    publish(request, ctx) {
      let namespace: string;
      try {
        namespace = namespaceOf(ctx);
      } catch (err) {
        wrapped("failed publishing event", err);
      }
      validateEventTopic(request.topic);
      const event = requireEvent(request.event, `event on topic ${JSON.stringify(request.topic)}`);
      exchange.publish({
        namespace,
        topic: request.topic,
        typeUrl: event.typeUrl,
        value: event.value,
      });
      return create(EmptySchema);
    },
    forward(request) {
      exchange.publish(envelopeFromProto(request.envelope));
      return create(EmptySchema);
    },
    async *subscribe(request, ctx) {
      let filter: Filter;
      try {
        filter = parseAll(request.filters);
      } catch (err) {
        wrapped("failed parsing subscription filters", err);
      }
      const signal = AbortSignal.any([ctx.signal, stopping]);
      const subscription = exchange.subscribe({
        signal,
        accept: (envelope) => filter.match(envelopeAdaptor(envelope)),
      });
      // A client that goes away stops pulling: this generator then stays suspended at its
      // `yield` and nothing resumes it, so the exchange's subscription (suspended at its own
      // yield) is ended from the abort itself; otherwise the subscriber would stay registered.
      const release = () => void subscription.return(undefined).catch(() => {});
      signal.addEventListener("abort", release, { once: true });
      try {
        for await (const envelope of subscription) yield envelopeToProto(envelope);
      } finally {
        signal.removeEventListener("abort", release);
      }
    },
  });
}
