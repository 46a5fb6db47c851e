/**
 * `grpc.health.v1.Health`: whether the daemon serves — a readiness probe for scripts and CI
 * (`waitServing`), and a watch that reports when the daemon begins to stop.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * await client.health.waitServing({ timeoutMs: 30_000 });
 * for await (const status of client.health.watch()) {
 *   console.log(status); // "SERVING", later "NOT_SERVING" when the daemon stops
 * }
 * ```
 * @module
 */
import { Health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { HealthCheckResponse_ServingStatus as Serving } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { DeadlineExceededError } from "../server/errdefs.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** The health states of grpc.health.v1, by name. */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

function statusName(status: Serving): ServingStatus {
  switch (status) {
    case Serving.SERVING:
      return "SERVING";
    case Serving.NOT_SERVING:
      return "NOT_SERVING";
    case Serving.SERVICE_UNKNOWN:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

/** Options of {@link HealthClient.check} and {@link HealthClient.watch}. */
export interface HealthOptions extends CallOptions {
  /** The service to ask about; "" (default) is the daemon as a whole. */
  service?: string;
}

/** Options of {@link HealthClient.waitServing}. */
export interface WaitServingOptions {
  /** Give up after this long. Default 30 000 ms. */
  timeoutMs?: number;
  /** Time between polls. Default 100 ms. */
  intervalMs?: number;
  /** Stop waiting early; rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The Health service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * if (await client.health.check() !== "SERVING") Deno.exit(1);
 * ```
 */
export class HealthClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.health`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * The current status. A daemon that cannot be reached rejects with UnavailableError.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const status = await client.health.check({ timeoutMs: 1000 });
   * ```
   */
  async check(options: HealthOptions = {}): Promise<ServingStatus> {
    const res = await this.#rpc.unary(
      Health.method.check,
      { service: options.service ?? "" },
      options,
    );
    return statusName(res.status);
  }

  /**
   * The current status, then each change, until the daemon closes the stream or the loop
   * ends (breaking out cancels the call).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for await (const status of client.health.watch()) if (status !== "SERVING") break;
   * ```
   */
  async *watch(options: HealthOptions = {}): AsyncGenerator<ServingStatus, void, undefined> {
    for await (
      const res of this.#rpc.serverStream(
        Health.method.watch,
        { service: options.service ?? "" },
        options,
      )
    ) {
      yield statusName(res.status);
    }
  }

  /**
   * Poll {@link check} until the daemon answers SERVING — the readiness wait of a script
   * that just started a daemon. Connection errors while the socket is not there yet are
   * retried; past the timeout it rejects with DeadlineExceededError naming the last answer.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.health.waitServing({ timeoutMs: 60_000 });
   * ```
   */
  async waitServing(options: WaitServingOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const intervalMs = options.intervalMs ?? 100;
    const deadline = Date.now() + timeoutMs;
    let last = "no answer";
    for (;;) {
      options.signal?.throwIfAborted();
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        const callOptions: CallOptions = { timeoutMs: Math.max(1, Math.min(left, 5000)) };
        if (options.signal) callOptions.signal = options.signal;
        const status = await this.check(callOptions);
        if (status === "SERVING") return;
        last = status;
      } catch (err) {
        options.signal?.throwIfAborted();
        last = err instanceof Error ? err.message : String(err);
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(intervalMs, deadline - Date.now()))
      );
    }
    throw new DeadlineExceededError(
      `daemon at ${this.#rpc.address} not serving after ${timeoutMs} ms (last: ${last})`,
    );
  }
}

/**
 * The definition `client.use()` builds {@link HealthClient} from.
 *
 * @example
 * ```ts
 * import { connect, healthService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const health = client.use(healthService); // same as client.health
 * ```
 */
export const healthService: ServiceDef<HealthClient> = defineService(
  "health",
  (rpc) => new HealthClient(rpc),
);
