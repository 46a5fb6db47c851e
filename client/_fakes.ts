/**
 * An in-memory daemon for the client's unit tests: the services the client wraps, served on
 * an in-process Connect router with the daemon's own error interceptor, so typed errors
 * travel as gRPC statuses exactly as from the real socket. Behaviour follows containerd
 * where the client depends on it (ingest offsets, commit checks, namespace headers).
 *
 * @example
 * ```ts
 * import { fakeDaemon } from "./_fakes.ts";
 * import { clientFromTransport } from "./mod.ts";
 * const fake = fakeDaemon();
 * const client = clientFromTransport(fake.transport);
 * console.log(await client.version.get()); // { version: "9.9.9", revision: "fake" }
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createRouterTransport, type HandlerContext, type Transport } from "@connectrpc/connect";
import { errorInterceptor } from "../server/interceptors.ts";
import { silentLogger } from "../server/log.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  UnavailableError,
} from "../server/errdefs.ts";
import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import {
  Introspection,
  type Plugin,
  PluginSchema,
} from "../proto/gen/containerd/services/introspection/v1/introspection_pb.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Serving,
} from "../proto/gen/grpc/health/v1/health_pb.ts";
import { Namespaces } from "../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import {
  Content,
  type WriteContentResponse,
  WriteContentResponseSchema,
} from "../proto/gen/containerd/services/content/v1/content_pb.ts";
import { Leases } from "../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import { StatusSchema } from "../proto/gen/google/rpc/status_pb.ts";
import { Events } from "../proto/gen/containerd/services/events/v1/events_pb.ts";
import { NamespaceCreateSchema } from "../proto/gen/containerd/events/namespace_pb.ts";
import { toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

/** sha256 of bytes as `sha256:<hex>`. */
export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** An ingest in the fake store. */
export interface FakeIngest {
  data: Uint8Array;
  total: number;
  expected: string;
  locked: boolean;
  /** Offsets of the WRITE messages received, in order (all writes of this ref). */
  writes: number[];
}

/** The fake daemon and what tests inspect. */
export interface FakeDaemon {
  readonly transport: Transport;
  /** Headers of the last request, by service/method. */
  readonly headers: Map<string, Headers>;
  /** Health status Check answers; Watch yields `watch` then ends. */
  health: { status: Serving; watch: Serving[]; checks: number; servingAfter: number };
  /** Namespaces and their labels. */
  readonly namespaces: Map<string, Record<string, string>>;
  /** Blobs by `<ns>/<digest>`. */
  readonly blobs: Map<string, Uint8Array>;
  /** Ingests by `<ns>/<ref>`. */
  readonly ingests: Map<string, FakeIngest>;
  /** Leases by `<ns>/<id>`. */
  readonly leases: Map<string, { labels: Record<string, string>; resources: string[] }>;
  /** Published events; Subscribe yields a NamespaceCreate, then these, then an unknown type. */
  readonly published: { namespace: string; topic: string; typeUrl: string; value: Uint8Array }[];
}

function namespaceOf(ctx: HandlerContext): string {
  const ns = ctx.requestHeader.get("containerd-namespace");
  if (ns === null || ns === "") throw new FailedPreconditionError("namespace is required");
  return ns;
}

function plugin(type: string, id: string, initErr?: { code: number; message: string }): Plugin {
  return create(PluginSchema, {
    type,
    id,
    ...(initErr ? { initErr: create(StatusSchema, initErr) } : {}),
  });
}

/**
 * Build a fake daemon; see the module example.
 *
 * @example
 * ```ts
 * import { fakeDaemon } from "./_fakes.ts";
 * const fake = fakeDaemon();
 * fake.namespaces.set("default", {});
 * ```
 */
export function fakeDaemon(): FakeDaemon {
  const headers = new Map<string, Headers>();
  const health = {
    status: Serving.SERVING,
    watch: [Serving.SERVING, Serving.NOT_SERVING],
    checks: 0,
    servingAfter: 0,
  };
  const namespaces = new Map<string, Record<string, string>>();
  const blobs = new Map<string, Uint8Array>();
  const ingests = new Map<string, FakeIngest>();
  const leases = new Map<string, { labels: Record<string, string>; resources: string[] }>();
  const published: FakeDaemon["published"] = [];
  const seen = (ctx: HandlerContext) =>
    headers.set(`${ctx.service.typeName}/${ctx.method.name}`, new Headers(ctx.requestHeader));
  const blob = (ns: string, digest: string): Uint8Array => {
    const data = blobs.get(`${ns}/${digest}`);
    if (!data) throw new NotFoundError(`content digest ${digest}`);
    return data;
  };
  const lease = (ns: string, id: string) => {
    const found = leases.get(`${ns}/${id}`);
    if (!found) throw new NotFoundError(`lease ${JSON.stringify(id)}`);
    return found;
  };
  const transport = createRouterTransport((router) => {
    router.service(Version, {
      version: (_req, ctx) => {
        seen(ctx);
        return { version: "9.9.9", revision: "fake" };
      },
    });
    router.service(Introspection, {
      plugins: (req, ctx) => {
        seen(ctx);
        const all = [
          plugin("io.containerd.grpc.v1", "version"),
          plugin("io.containerd.snapshotter.v1", "zfs", {
            code: 2,
            message: "zfs not found: skip plugin",
          }),
          plugin("io.containerd.content.v1", "broken", { code: 9, message: "disk on fire" }),
        ];
        if (req.filters.some((f) => f.includes("(("))) {
          throw new InvalidArgumentError(`filters: bad filter ${JSON.stringify(req.filters[0])}`);
        }
        const types = req.filters.map((f) => /^type==(.+)$/.exec(f)?.[1]);
        return {
          plugins: req.filters.length === 0 ? all : all.filter((p) => types.includes(p.type)),
        };
      },
      server: (_req, ctx) => {
        seen(ctx);
        return { uuid: "00000000-0000-4000-8000-000000000000", pid: 42n, pidns: 7n };
      },
    });
    router.service(Health, {
      check: (req, ctx) => {
        seen(ctx);
        health.checks++;
        if (req.service !== "") throw new NotFoundError(`unknown service ${req.service}`);
        if (health.checks <= health.servingAfter) return { status: Serving.NOT_SERVING };
        return { status: health.status };
      },
      async *watch(_req, ctx) {
        seen(ctx);
        for (const status of health.watch) {
          yield { status };
          await new Promise((r) => setTimeout(r, 1));
        }
      },
    });
    router.service(Namespaces, {
      get: (req, ctx) => {
        seen(ctx);
        // As containerd: a missing namespace reads as one without labels.
        return { namespace: { name: req.name, labels: namespaces.get(req.name) ?? {} } };
      },
      list: (_req, ctx) => {
        seen(ctx);
        return {
          namespaces: [...namespaces].map(([name, labels]) => ({ name, labels })),
        };
      },
      create: (req, ctx) => {
        seen(ctx);
        const name = req.namespace?.name ?? "";
        if (namespaces.has(name)) throw new AlreadyExistsError(`namespace ${name}`);
        namespaces.set(name, { ...req.namespace?.labels });
        return { namespace: { name, labels: { ...req.namespace?.labels } } };
      },
      update: (req, ctx) => {
        seen(ctx);
        const name = req.namespace?.name ?? "";
        const labels = namespaces.get(name);
        if (!labels) throw new NotFoundError(`namespace ${name}`);
        const paths = req.updateMask?.paths ?? [];
        if (paths.length === 0) {
          namespaces.set(name, { ...req.namespace?.labels });
        } else {
          for (const path of paths) {
            const key = path.replace(/^labels\./, "");
            const value = req.namespace?.labels[key] ?? "";
            if (value === "") delete labels[key];
            else labels[key] = value;
          }
        }
        return { namespace: { name, labels: { ...namespaces.get(name) } } };
      },
      delete: (req, ctx) => {
        seen(ctx);
        if (!namespaces.delete(req.name)) throw new NotFoundError(`namespace ${req.name}`);
        return {};
      },
    });
    router.service(Content, {
      info: (req, ctx) => {
        seen(ctx);
        const data = blob(namespaceOf(ctx), req.digest);
        return { info: { digest: req.digest, size: BigInt(data.length), labels: {} } };
      },
      async *list(_req, ctx) {
        seen(ctx);
        const ns = namespaceOf(ctx);
        const info = [...blobs].filter(([key]) => key.startsWith(`${ns}/`)).map((
          [key, data],
        ) => ({ digest: key.slice(ns.length + 1), size: BigInt(data.length), labels: {} }));
        yield { info: info.slice(0, 1) };
        yield { info: info.slice(1) };
      },
      delete: (req, ctx) => {
        seen(ctx);
        const ns = namespaceOf(ctx);
        blob(ns, req.digest);
        blobs.delete(`${ns}/${req.digest}`);
        return {};
      },
      async *read(req, ctx) {
        seen(ctx);
        const data = blob(namespaceOf(ctx), req.digest);
        const start = Number(req.offset);
        if (start > data.length) throw new OutOfRangeError(`offset ${start} past end`);
        const end = req.size > 0n ? Math.min(data.length, start + Number(req.size)) : data.length;
        for (let at = start; at < end; at += 1000) {
          yield { offset: BigInt(at), data: data.subarray(at, Math.min(end, at + 1000)) };
        }
      },
      status: (req, ctx) => {
        seen(ctx);
        const ingest = ingests.get(`${namespaceOf(ctx)}/${req.ref}`);
        if (!ingest) throw new NotFoundError(`ref ${req.ref}`);
        return {
          status: {
            ref: req.ref,
            offset: BigInt(ingest.data.length),
            total: BigInt(ingest.total),
            expected: ingest.expected,
          },
        };
      },
      listStatuses: (_req, ctx) => {
        seen(ctx);
        const ns = namespaceOf(ctx);
        return {
          statuses: [...ingests].filter(([key]) => key.startsWith(`${ns}/`)).map((
            [key, ingest],
          ) => ({
            ref: key.slice(ns.length + 1),
            offset: BigInt(ingest.data.length),
            total: BigInt(ingest.total),
            expected: ingest.expected,
          })),
        };
      },
      abort: (req, ctx) => {
        seen(ctx);
        if (!ingests.delete(`${namespaceOf(ctx)}/${req.ref}`)) {
          throw new NotFoundError(`ref ${req.ref}`);
        }
        return {};
      },
      async *write(requests, ctx) {
        seen(ctx);
        const ns = namespaceOf(ctx);
        let ingest: FakeIngest | undefined;
        let key = "";
        const answer = (
          action: number,
          extra: { digest?: string; offset?: bigint; total?: bigint } = {},
        ): WriteContentResponse =>
          create(WriteContentResponseSchema, {
            action,
            offset: BigInt(ingest?.data.length ?? 0),
            total: BigInt(ingest?.total ?? 0),
            ...extra,
          });
        try {
          for await (const req of requests) {
            if (!ingest) {
              if (req.ref === "") throw new InvalidArgumentError("first message must have a ref");
              if (req.expected !== "" && blobs.has(`${ns}/${req.expected}`)) {
                throw new AlreadyExistsError(`content ${req.expected}`);
              }
              key = `${ns}/${req.ref}`;
              ingest = ingests.get(key) ?? {
                data: new Uint8Array(),
                total: Number(req.total),
                expected: req.expected,
                locked: false,
                writes: [],
              };
              if (ingest.locked) throw new UnavailableError(`ref ${req.ref} locked`);
              ingest.locked = true;
              ingests.set(key, ingest);
            }
            const offset = Number(req.offset);
            if (req.action === 1 || (req.action === 2 && req.data.length > 0)) {
              if (offset !== 0 && offset !== ingest.data.length) {
                throw new OutOfRangeError(
                  `write offset ${offset} is not the ingest's offset ${ingest.data.length}`,
                );
              }
              ingest.writes.push(offset);
              const base = offset === 0 ? new Uint8Array() : ingest.data;
              const next = new Uint8Array(base.length + req.data.length);
              next.set(base);
              next.set(req.data, base.length);
              ingest.data = next;
            }
            if (req.action === 0 || req.action === 1) {
              yield answer(req.action);
              continue;
            }
            // COMMIT
            const size = ingest.data.length;
            if (req.total > 0n && Number(req.total) !== size) {
              throw new FailedPreconditionError(
                `unexpected commit size ${size}, expected ${req.total}`,
              );
            }
            const digest = sha256(ingest.data);
            if (req.expected !== "" && req.expected !== digest) {
              throw new FailedPreconditionError(
                `unexpected commit digest ${digest}, expected ${req.expected}`,
              );
            }
            ingests.delete(key);
            if (blobs.has(`${ns}/${digest}`)) throw new AlreadyExistsError(`content ${digest}`);
            blobs.set(`${ns}/${digest}`, ingest.data);
            yield answer(2, { digest, offset: BigInt(size), total: BigInt(size) });
          }
        } finally {
          if (ingest) ingest.locked = false;
        }
      },
    });
    router.service(Leases, {
      create: (req, ctx) => {
        seen(ctx);
        const ns = namespaceOf(ctx);
        const id = req.id || `gen-${leases.size + 1}`;
        if (leases.has(`${ns}/${id}`)) throw new AlreadyExistsError(`lease ${id}`);
        leases.set(`${ns}/${id}`, { labels: { ...req.labels }, resources: [] });
        return { lease: { id, labels: { ...req.labels } } };
      },
      delete: (req, ctx) => {
        seen(ctx);
        const ns = namespaceOf(ctx);
        lease(ns, req.id);
        leases.delete(`${ns}/${req.id}`);
        return {};
      },
      list: (_req, ctx) => {
        seen(ctx);
        const ns = namespaceOf(ctx);
        return {
          leases: [...leases].filter(([key]) => key.startsWith(`${ns}/`)).map(([key, l]) => ({
            id: key.slice(ns.length + 1),
            labels: l.labels,
          })),
        };
      },
      addResource: (req, ctx) => {
        seen(ctx);
        lease(namespaceOf(ctx), req.id).resources.push(
          `${req.resource?.type}/${req.resource?.id}`,
        );
        return {};
      },
      deleteResource: (req, ctx) => {
        seen(ctx);
        const l = lease(namespaceOf(ctx), req.id);
        l.resources = l.resources.filter((r) => r !== `${req.resource?.type}/${req.resource?.id}`);
        return {};
      },
      listResources: (req, ctx) => {
        seen(ctx);
        return {
          resources: lease(namespaceOf(ctx), req.id).resources.map((r) => {
            const slash = r.indexOf("/");
            return { type: r.slice(0, slash), id: r.slice(slash + 1) };
          }),
        };
      },
    });
    router.service(Events, {
      publish: (req, ctx) => {
        seen(ctx);
        published.push({
          namespace: namespaceOf(ctx),
          topic: req.topic,
          typeUrl: req.event?.typeUrl ?? "",
          value: req.event?.value ?? new Uint8Array(),
        });
        return {};
      },
      async *subscribe(req, ctx) {
        seen(ctx);
        if (req.filters.includes("((")) throw new InvalidArgumentError("filters: bad filter");
        const timestamp = timestampFromDate(new Date(0));
        const value = toBinary(
          NamespaceCreateSchema,
          create(NamespaceCreateSchema, { name: "n1" }),
        );
        yield {
          timestamp,
          namespace: "n1",
          topic: "/namespaces/create",
          event: { typeUrl: NamespaceCreateSchema.typeName, value },
        };
        for (const p of published) {
          yield { timestamp, namespace: p.namespace, topic: p.topic, event: p };
        }
        yield {
          timestamp,
          namespace: "n1",
          topic: "/custom",
          event: { typeUrl: "example.com/Unknown", value: new Uint8Array([1, 2]) },
        };
      },
    });
  }, { router: { interceptors: [errorInterceptor(silentLogger())] } });
  return { transport, headers, health, namespaces, blobs, ingests, leases, published };
}
