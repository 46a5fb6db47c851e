/**
 * The event exchange: plugins publish envelopes, subscribers receive them as async iterators.
 *
 * containerd hands one exchange to every plugin through InitContext; the events plugin serves
 * it over gRPC. Delivery is in publish order per subscriber; a subscriber that falls behind by
 * more than `maxQueue` envelopes is dropped (its iterator ends with an error) so a stuck
 * client cannot grow the daemon's memory without bound.
 *
 * @example
 * ```ts
 * import { Exchange } from "./exchange.ts";
 * const exchange = new Exchange();
 * const sub = exchange.subscribe({ signal: AbortSignal.timeout(1000) });
 * exchange.publish({ topic: "/namespaces/create", namespace: "default", typeUrl: "x", value: new Uint8Array() });
 * ```
 * @module
 */

/** One event as it travels: when, where, what, and the encoded event (an Any). */
export interface Envelope {
  timestamp: Date;
  namespace: string;
  topic: string;
  /** Full type URL of the encoded event, e.g. `containerd.events.NamespaceCreate`. */
  typeUrl: string;
  value: Uint8Array;
}

/** What to publish; the exchange stamps the time. */
export type PublishInput = Omit<Envelope, "timestamp"> & { timestamp?: Date };

/** Options of Exchange.subscribe. */
export interface SubscribeOptions {
  /** Ends the subscription. */
  signal?: AbortSignal;
  /** Keeps only envelopes this accepts. Default: all. */
  accept?: (envelope: Envelope) => boolean;
}

interface Subscriber {
  queue: Envelope[];
  wake: (() => void) | undefined;
  accept: (envelope: Envelope) => boolean;
  failed: Error | undefined;
}

/** Topics must be absolute paths of plain segments, as containerd validates them. */
export function validateTopic(topic: string): string | undefined {
  if (!topic.startsWith("/")) return `topic ${JSON.stringify(topic)} must start with "/"`;
  if (topic.length === 1) return "topic must not be empty";
  return undefined;
}

/** A fan-out of envelopes to live subscribers. */
export class Exchange {
  readonly #subscribers = new Set<Subscriber>();
  readonly #maxQueue: number;

  /** `maxQueue`: envelopes a subscriber may lag behind before it is dropped (default 4096). */
  constructor(options: { maxQueue?: number } = {}) {
    this.#maxQueue = options.maxQueue ?? 4096;
  }

  /** Deliver an envelope to every subscriber that accepts it. */
  publish(input: PublishInput): Envelope {
    const envelope: Envelope = { ...input, timestamp: input.timestamp ?? new Date() };
    for (const sub of this.#subscribers) {
      if (sub.failed || !sub.accept(envelope)) continue;
      if (sub.queue.length >= this.#maxQueue) {
        sub.failed = new Error(`event subscriber fell behind by ${this.#maxQueue} events`);
      } else {
        sub.queue.push(envelope);
      }
      sub.wake?.();
    }
    return envelope;
  }

  /** Number of live subscribers (debug output). */
  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  /** Receive envelopes published from now on until the signal aborts. */
  async *subscribe(options: SubscribeOptions = {}): AsyncGenerator<Envelope> {
    const sub: Subscriber = {
      queue: [],
      wake: undefined,
      accept: options.accept ?? (() => true),
      failed: undefined,
    };
    const signal = options.signal;
    // Unregister on abort even when the consumer never resumes this generator (a client that
    // went away mid-stream), so a stuck reader cannot keep a subscriber alive.
    const onAbort = () => {
      this.#subscribers.delete(sub);
      sub.wake?.();
    };
    signal?.addEventListener("abort", onAbort);
    this.#subscribers.add(sub);
    try {
      while (!signal?.aborted) {
        const next = sub.queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (sub.failed) throw sub.failed;
        await new Promise<void>((resolve) => (sub.wake = resolve));
        sub.wake = undefined;
      }
    } finally {
      this.#subscribers.delete(sub);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}
