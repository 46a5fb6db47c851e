/**
 * Test helpers: an in-memory {@link ContentStore} with the local store's contract (ref locks,
 * resumable ingests, AlreadyExists on commit of a blob that exists), and a metadata store
 * over it. Lets the metadata, GC and service tests run without a disk store.
 *
 * @module
 */
import { createRouterTransport, type Transport } from "@connectrpc/connect";
import {
  contextInterceptor,
  errorInterceptor,
  LEASE_HEADER,
  NAMESPACE_HEADER,
} from "../../server/interceptors.ts";
import { silentLogger } from "../../server/log.ts";
import { sha256Digest } from "../../server/digest.ts";
import type { ServiceSpec } from "../../server/rpc.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../../server/errdefs.ts";
import type {
  BlobInfo,
  CommitOptions,
  ContentStore,
  ContentWriter,
  IngestStatus,
  WriterOptions,
} from "../content/api.ts";
import type { ScopedContentStore } from "./api.ts";
import { SqliteMetadataStore } from "./store.ts";

/** `sha256:<hex>` of some bytes. */
export function sha256(data: Uint8Array | string): string {
  return sha256Digest(data);
}

interface MemoryIngest {
  data: Uint8Array;
  total: number;
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

/** An in-memory ContentStore; `blobs` and `ingests` are open for assertions. */
export class MemoryContentStore implements ContentStore {
  readonly root = "memory:";
  readonly blobs = new Map<string, { data: Uint8Array; createdAt: Date }>();
  readonly ingests = new Map<string, MemoryIngest>();
  readonly #locked = new Set<string>();

  info(digest: string): Promise<BlobInfo> {
    const blob = this.blobs.get(digest);
    if (!blob) return Promise.reject(new NotFoundError(`content digest ${digest}: not found`));
    return Promise.resolve({ digest, size: blob.data.length, createdAt: blob.createdAt });
  }

  async *read(
    digest: string,
    options: { offset?: number; size?: number; chunkSize?: number } = {},
  ): AsyncIterable<Uint8Array> {
    const blob = this.blobs.get(digest);
    if (!blob) throw new NotFoundError(`content digest ${digest}: not found`);
    const offset = options.offset ?? 0;
    const size = options.size && options.size > 0 ? options.size : blob.data.length - offset;
    const end = Math.min(offset + size, blob.data.length);
    const chunk = options.chunkSize ?? 1 << 20;
    for (let at = offset; at < end; at += chunk) {
      yield blob.data.slice(at, Math.min(at + chunk, end));
    }
  }

  delete(digest: string): Promise<void> {
    if (!this.blobs.delete(digest)) {
      return Promise.reject(new NotFoundError(`content digest ${digest}: not found`));
    }
    return Promise.resolve();
  }

  async *walk(): AsyncIterable<BlobInfo> {
    for (const [digest, blob] of [...this.blobs]) {
      yield { digest, size: blob.data.length, createdAt: blob.createdAt };
    }
  }

  writer(ref: string, options: WriterOptions = {}): Promise<ContentWriter> {
    if (this.#locked.has(ref)) return Promise.reject(new UnavailableError(`ref ${ref} locked`));
    let ingest = this.ingests.get(ref);
    if (!ingest) {
      const now = new Date();
      ingest = {
        data: new Uint8Array(0),
        total: options.total ?? 0,
        expected: options.expected ?? "",
        startedAt: now,
        updatedAt: now,
      };
      this.ingests.set(ref, ingest);
    } else if (options.total) {
      ingest.total = options.total;
    }
    this.#locked.add(ref);
    return Promise.resolve(this.#writer(ref, ingest));
  }

  status(ref: string): Promise<IngestStatus> {
    const ingest = this.ingests.get(ref);
    if (!ingest) return Promise.reject(new NotFoundError(`ref ${ref}: not found`));
    return Promise.resolve(statusOf(ref, ingest));
  }

  listStatuses(): Promise<IngestStatus[]> {
    return Promise.resolve([...this.ingests].map(([ref, ingest]) => statusOf(ref, ingest)));
  }

  abort(ref: string): Promise<void> {
    if (this.#locked.has(ref)) return Promise.reject(new UnavailableError(`ref ${ref} locked`));
    if (!this.ingests.delete(ref)) {
      return Promise.reject(new NotFoundError(`ref ${ref}: not found`));
    }
    return Promise.resolve();
  }

  /** True while a writer holds `ref`. */
  isLocked(ref: string): boolean {
    return this.#locked.has(ref);
  }

  #writer(ref: string, ingest: MemoryIngest): ContentWriter {
    let open = true;
    const check = () => {
      if (!open) throw new FailedPreconditionError(`writer for ${ref} is closed`);
    };
    return {
      ref,
      status: () => statusOf(ref, ingest),
      write: (data, offset) => {
        check();
        if (offset === 0) ingest.data = new Uint8Array(0);
        else if (offset !== ingest.data.length) {
          return Promise.reject(
            new InvalidArgumentError(`write at ${offset} but ingest is at ${ingest.data.length}`),
          );
        }
        const next = new Uint8Array(ingest.data.length + data.length);
        next.set(ingest.data);
        next.set(data, ingest.data.length);
        ingest.data = next;
        ingest.updatedAt = new Date();
        return Promise.resolve(data.length);
      },
      digest: () => sha256(ingest.data),
      commit: (options: CommitOptions = {}) => {
        check();
        const digest = sha256(ingest.data);
        if (
          options.size !== undefined && options.size !== 0 && options.size !== ingest.data.length
        ) {
          return Promise.reject(
            new FailedPreconditionError(
              `unexpected commit size ${ingest.data.length}, expected ${options.size}`,
            ),
          );
        }
        if (options.expected && options.expected !== digest) {
          return Promise.reject(
            new FailedPreconditionError(
              `unexpected commit digest ${digest}, expected ${options.expected}`,
            ),
          );
        }
        open = false;
        this.ingests.delete(ref);
        this.#locked.delete(ref);
        if (this.blobs.has(digest)) {
          return Promise.reject(new AlreadyExistsError(`content ${digest}: already exists`));
        }
        this.blobs.set(digest, { data: ingest.data, createdAt: new Date() });
        return Promise.resolve({ digest, size: ingest.data.length, createdAt: new Date() });
      },
      close: () => {
        if (open) {
          open = false;
          this.#locked.delete(ref);
        }
        return Promise.resolve();
      },
    };
  }
}

function statusOf(ref: string, ingest: MemoryIngest): IngestStatus {
  return {
    ref,
    offset: ingest.data.length,
    total: ingest.total,
    expected: ingest.expected,
    startedAt: ingest.startedAt,
    updatedAt: ingest.updatedAt,
  };
}

/** A metadata store on an in-memory database over a fresh in-memory content store. */
export function memoryMetadata(
  options: { path?: string; content?: MemoryContentStore; sharedContent?: boolean } = {},
): { md: SqliteMetadataStore; cs: MemoryContentStore } {
  const cs = options.content ?? new MemoryContentStore();
  const md = SqliteMetadataStore.open({
    path: options.path ?? ":memory:",
    content: cs,
    ...(options.sharedContent !== undefined ? { sharedContent: options.sharedContent } : {}),
  });
  return { md, cs };
}

/** Write `data` to ref in a scope and commit it; returns the digest. */
export async function ingest(
  store: ScopedContentStore,
  ref: string,
  data: Uint8Array | string,
  labels: Record<string, string> = {},
): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const writer = await store.writer(ref, { total: bytes.length });
  try {
    await writer.write(bytes, 0);
    const info = await writer.commit({ size: bytes.length, labels });
    return info.digest;
  } finally {
    await writer.close();
  }
}

/**
 * An in-process transport serving `specs` behind the daemon's context and error
 * interceptors, so service tests see the same headers handling and status codes as clients.
 */
export function serviceTransport(specs: readonly ServiceSpec[]): Transport {
  return createRouterTransport((router) => {
    for (const spec of specs) router.service(spec.service, spec.impl);
  }, { router: { interceptors: [contextInterceptor(), errorInterceptor(silentLogger())] } });
}

/** Call options carrying a namespace (and a lease) header. */
export function inNamespace(
  namespace: string,
  lease?: string,
): { headers: Record<string, string> } {
  const headers: Record<string, string> = { [NAMESPACE_HEADER]: namespace };
  if (lease !== undefined) headers[LEASE_HEADER] = lease;
  return { headers };
}

/**
 * A request stream the test feeds one message at a time, for bidi calls that must
 * interleave sends and receives (content Write).
 */
export class Feed<T> implements AsyncIterable<T> {
  readonly #queue: T[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  /** Queue one message. */
  push(message: T): void {
    this.#queue.push(message);
    this.#wake?.();
  }

  /** End the stream (the client closes its side). */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
