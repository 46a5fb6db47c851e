/**
 * io.containerd.grpc.v1.content: containerd.services.content.v1.Content over the metadata
 * store's namespaced content — `ctr content ingest/ls/get/label/rm/active`, image import and
 * pull. A thin translation of protobuf to {@link ScopedContentStore} calls, following
 * containerd's contentserver: the Write stream's STAT/WRITE/COMMIT protocol, AlreadyExists
 * when the namespace has the expected blob (clients count it as success), Unavailable while
 * another stream holds the ref, relative offsets on Read.
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { EmptySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { AlreadyExistsError, ErrdefsError, OutOfRangeError } from "../../server/errdefs.ts";
import type { Exchange } from "../../server/exchange.ts";
import { leaseOf, namespaceOf } from "../../server/interceptors.ts";
import type { Logger } from "../../server/log.ts";
import { register } from "../../server/plugin.ts";
import { type RpcServices, type ServiceSpec, serviceSpec } from "../../server/rpc.ts";
import { ContentDeleteSchema } from "../../proto/gen/containerd/events/content_pb.ts";
import {
  Content,
  type Info,
  InfoResponseSchema,
  InfoSchema,
  ListContentResponseSchema,
  ListStatusesResponseSchema,
  ReadContentResponseSchema,
  type Status,
  StatusResponseSchema,
  StatusSchema,
  UpdateResponseSchema,
  WriteAction,
  type WriteContentRequest,
  WriteContentResponseSchema,
} from "../../proto/gen/containerd/services/content/v1/content_pb.ts";
import type { IngestStatus } from "./api.ts";
import type { ContentInfo, MetadataStore, Scope } from "../metadata/api.ts";
import { publishEvent } from "../metadata/events.ts";
import { validateDigest } from "../metadata/validate.ts";
import { GRPCPlugin, MetadataPlugin } from "../types.ts";

/** Infos per List response message (containerd sends blocks of 100). */
export const LIST_BLOCK = 100;
/** Bytes per Read response message (containerd's 1 MiB copy buffer). */
export const READ_CHUNK = 1 << 20;

/** What the Content service needs. */
export interface ContentServiceDeps {
  metadata: MetadataStore;
  events: Exchange;
  log: Logger;
}

/** The request's namespace (required) and lease (optional). */
function scopeOf(ctx: HandlerContext): Scope {
  return { namespace: namespaceOf(ctx), lease: leaseOf(ctx) };
}

function infoToProto(info: ContentInfo): Info {
  return create(InfoSchema, {
    digest: info.digest,
    size: BigInt(info.size),
    createdAt: timestampFromDate(info.createdAt),
    updatedAt: timestampFromDate(info.updatedAt),
    labels: info.labels,
  });
}

function statusToProto(status: IngestStatus): Status {
  return create(StatusSchema, {
    startedAt: timestampFromDate(status.startedAt),
    updatedAt: timestampFromDate(status.updatedAt),
    ref: status.ref,
    offset: BigInt(status.offset),
    total: BigInt(status.total),
    expected: status.expected,
  });
}

/** A bigint field as a JS number (sizes and offsets stay far below 2^53). */
function num(value: bigint): number {
  return Number(value);
}

/** The Content service over the metadata store. */
export function contentService(deps: ContentServiceDeps): ServiceSpec {
  const { metadata, events, log } = deps;
  return serviceSpec(Content, {
    info(request, ctx) {
      validateDigest(request.digest);
      const info = metadata.content(scopeOf(ctx)).info(request.digest);
      return create(InfoResponseSchema, { info: infoToProto(info) });
    },

    update(request, ctx) {
      const digest = request.info?.digest ?? "";
      validateDigest(digest);
      const info = metadata.content(scopeOf(ctx)).update(
        { digest, labels: request.info?.labels ?? {} },
        request.updateMask?.paths ?? [],
      );
      return create(UpdateResponseSchema, { info: infoToProto(info) });
    },

    async *list(request, ctx) {
      const infos = metadata.content(scopeOf(ctx)).list(request.filters);
      for (let at = 0; at < infos.length; at += LIST_BLOCK) {
        yield create(ListContentResponseSchema, {
          info: infos.slice(at, at + LIST_BLOCK).map(infoToProto),
        });
      }
    },

    delete(request, ctx) {
      validateDigest(request.digest);
      const scope = scopeOf(ctx);
      metadata.content(scope).delete(request.digest);
      publishEvent(events, scope.namespace, "/content/delete", ContentDeleteSchema, {
        digest: request.digest,
      });
      return create(EmptySchema);
    },

    async *read(request, ctx) {
      validateDigest(request.digest);
      // One metadata lookup per call (ctr issues one Read per 32 KiB): the scoped store's read
      // checks the namespace has the blob, and the content store clamps `size` at the blob's
      // end (size <= 0 reads to the end) and refuses an offset past it (OutOfRange).
      const store = metadata.content(scopeOf(ctx));
      const offset = Math.max(num(request.offset), 0);
      const size = Math.max(num(request.size), 0);
      // As containerd, response offsets count from the start of this read.
      let at = 0;
      for await (
        const chunk of store.read(request.digest, { offset, size, chunkSize: READ_CHUNK })
      ) {
        yield create(ReadContentResponseSchema, { offset: BigInt(at), data: chunk });
        at += chunk.length;
        if (ctx.signal.aborted) return;
      }
      if (at === 0 && offset > 0) {
        // Nothing read: past the end unless the offset is exactly the end.
        const info = store.info(request.digest);
        if (offset > info.size) {
          throw new OutOfRangeError(`read past object length ${info.size} bytes`);
        }
      }
    },

    async status(request, ctx) {
      try {
        const status = await metadata.content(scopeOf(ctx)).status(request.ref);
        return create(StatusResponseSchema, { status: statusToProto(status) });
      } catch (err) {
        if (err instanceof ErrdefsError) {
          throw new ErrdefsError(
            err.code,
            `could not get status for ref ${JSON.stringify(request.ref)}: ${err.message}`,
            { cause: err },
          );
        }
        throw err;
      }
    },

    async listStatuses(request, ctx) {
      const statuses = await metadata.content(scopeOf(ctx)).listStatuses(request.filters);
      return create(ListStatusesResponseSchema, { statuses: statuses.map(statusToProto) });
    },

    write(requests, ctx) {
      return writeStream(metadata, requests, ctx, log);
    },

    async abort(request, ctx) {
      await metadata.content(scopeOf(ctx)).abort(request.ref);
      return create(EmptySchema);
    },
  });
}

/**
 * One Write stream, as containerd's contentserver runs it: the first message names the ref
 * and opens (locks) the ingest; each message is answered with the writer's state; COMMIT
 * ends the stream; the client closing its side leaves the ingest for a later resume.
 */
async function* writeStream(
  metadata: MetadataStore,
  requests: AsyncIterable<WriteContentRequest>,
  ctx: HandlerContext,
  log: Logger,
) {
  const scope = scopeOf(ctx);
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  let request = first.value;
  const ref = request.ref;
  if (ref === "") {
    throw new ConnectError("first message must have a reference", Code.InvalidArgument);
  }
  let total = num(request.total);
  let expected = request.expected;
  const store = metadata.content(scope);
  // Opening holds the ref's lock for the life of the stream (Unavailable while held).
  const writer = await store.writer(ref, { total, expected });
  // One response message, updated in place, as containerd does: fields set by a STAT stay.
  const msg = create(WriteContentResponseSchema);
  try {
    for (;;) {
      msg.action = request.action;
      const state = writer.status();
      msg.offset = BigInt(state.offset);
      if (request.expected !== "") {
        expected = request.expected;
        if (hasContent(metadata, scope, request.expected)) {
          await writer.close();
          await store.abort(ref).catch((err) =>
            log.debug("abort after existing content failed", { ref, error: err })
          );
          throw new AlreadyExistsError(
            `blob with expected digest ${request.expected} exists: already exists`,
          );
        }
      }
      if (request.total > 0n) total = num(request.total);

      if (request.action === WriteAction.STAT) {
        msg.digest = writer.digest();
        msg.startedAt = timestampFromDate(state.startedAt);
        msg.updatedAt = timestampFromDate(state.updatedAt);
        msg.total = BigInt(total);
      } else if (request.action === WriteAction.WRITE || request.action === WriteAction.COMMIT) {
        const offset = num(request.offset);
        if (offset > 0 && offset !== state.offset) {
          throw new OutOfRangeError(
            `write @${offset} must occur at current offset ${state.offset}`,
          );
        }
        let at = state.offset;
        if (offset === 0 && state.offset > 0) {
          // Offset 0 on a started ingest restarts it.
          at = 0;
          msg.offset = 0n;
          if (request.data.length === 0) await writer.write(new Uint8Array(0), 0);
        }
        if (request.data.length > 0) {
          const n = await writer.write(request.data, at);
          if (n !== request.data.length) {
            throw new ConnectError(`wrote ${n} of ${request.data.length} bytes`, Code.DataLoss);
          }
          msg.offset += BigInt(n);
        }
        if (request.action === WriteAction.COMMIT) {
          const info = await writer.commit({ size: total, expected, labels: request.labels });
          msg.digest = info.digest;
        } else {
          msg.digest = writer.digest();
        }
      }
      yield clone(WriteContentResponseSchema, msg);
      if (request.action === WriteAction.COMMIT) return;
      const next = await iterator.next();
      if (next.done) return;
      request = next.value;
    }
  } finally {
    await writer.close();
  }
}

function hasContent(metadata: MetadataStore, scope: Scope, digest: string): boolean {
  try {
    metadata.content(scope).info(digest);
    return true;
  } catch {
    return false;
  }
}

register({
  type: GRPCPlugin,
  id: "content",
  requires: [MetadataPlugin],
  init(ctx): RpcServices {
    const metadata = ctx.get(MetadataPlugin);
    return { services: [contentService({ metadata, events: ctx.events, log: ctx.log })] };
  },
});
