/**
 * Content digests (`sha256:<64 lowercase hex>`): parsing, validation and streaming hashing.
 *
 * Every layer that takes a digest from a request (the content store, the metadata layer, the
 * services) validates it here, so a malformed or unsupported digest is an InvalidArgumentError
 * with one wording everywhere, and a validated hex is safe to use as a file name. Only sha256
 * is supported, as containerd's canonical algorithm; sha384 and sha512 digests are well-formed
 * but refused as "unsupported digest algorithm".
 *
 * @example
 * ```ts
 * import { parseDigest, Sha256 } from "./digest.ts";
 * const hash = new Sha256();
 * hash.update(new TextEncoder().encode("hello"));
 * const { algorithm, hex } = parseDigest(hash.digest());
 * console.log(algorithm, hex.length); // sha256 64
 * ```
 * @module
 */
import type { Hash } from "node:crypto";
import { InvalidArgumentError } from "./errdefs.ts";

/** The one digest algorithm this daemon computes and accepts (containerd's canonical one). */
export const SHA256 = "sha256" as const;

/**
 * A new sha256 hash from node:crypto, which is loaded on the first hash rather than at import:
 * importing it costs ~15 ms of every boot (it loads node's streams), while a daemon hashes
 * nothing until content arrives.
 */
function createSha256(): Hash {
  return process.getBuiltinModule("node:crypto").createHash(SHA256);
}

/** A validated digest: the algorithm and its lowercase hex encoding. */
export interface ParsedDigest {
  /** Always `sha256`: nothing else is accepted. */
  algorithm: typeof SHA256;
  /** 64 lowercase hex characters; safe to use as a file name. */
  hex: string;
}

// go-digest's algorithm grammar: lowercase alphanumerics separated by one of `+._-`.
const ALGORITHM_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*$/;
const SHA256_HEX_RE = /^[a-f0-9]{64}$/;

function invalid(digest: string, reason: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `invalid digest ${JSON.stringify(digest)}: ${reason}: invalid argument`,
  );
}

/**
 * Parse and validate `sha256:<64 lowercase hex>`. Throws InvalidArgumentError naming the
 * digest and the reason: a missing or malformed algorithm or encoding, a wrong length, or an
 * algorithm other than sha256 ("unsupported digest algorithm").
 *
 * @example
 * ```ts
 * import { parseDigest } from "./digest.ts";
 * parseDigest("sha256:" + "a".repeat(64)).hex; // "aaaa…"
 * ```
 */
export function parseDigest(digest: string): ParsedDigest {
  const colon = digest.indexOf(":");
  if (colon <= 0 || colon === digest.length - 1) {
    throw invalid(digest, "invalid checksum digest format");
  }
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (!ALGORITHM_RE.test(algorithm)) throw invalid(digest, "invalid checksum digest format");
  // sha384, sha512 and the like are well-formed, but this daemon only computes sha256.
  if (algorithm !== SHA256) throw invalid(digest, "unsupported digest algorithm");
  if (hex.length !== 64) throw invalid(digest, "invalid checksum digest length");
  if (!SHA256_HEX_RE.test(hex)) throw invalid(digest, "invalid checksum digest format");
  return { algorithm: SHA256, hex };
}

/** True when `digest` parses (see {@link parseDigest}); for branches that must not throw. */
export function isDigest(digest: string): boolean {
  try {
    parseDigest(digest);
    return true;
  } catch {
    return false;
  }
}

/**
 * A streaming sha256: feed chunks with `update`, read the running digest at any point with
 * `digest()` without ending the stream. Lets writers hash data as it passes instead of
 * re-reading (or buffering) whole blobs.
 *
 * @example
 * ```ts
 * import { Sha256 } from "./digest.ts";
 * const h = new Sha256().update(new TextEncoder().encode("ab"));
 * h.update(new TextEncoder().encode("c"));
 * h.digest(); // "sha256:ba7816bf…"
 * ```
 */
export class Sha256 {
  #hash: Hash = createSha256();
  #length = 0;

  /** Add `data` to the hash; returns this for chaining. */
  update(data: Uint8Array): this {
    this.#hash.update(data);
    this.#length += data.byteLength;
    return this;
  }

  /** Bytes hashed so far. */
  get length(): number {
    return this.#length;
  }

  /** The digest of everything hashed so far, as `sha256:<hex>`; hashing may continue. */
  digest(): string {
    return `${SHA256}:${this.hex()}`;
  }

  /** The lowercase hex of everything hashed so far; hashing may continue. */
  hex(): string {
    return this.#hash.copy().digest("hex");
  }

  /** Forget everything hashed (a writer restarting at offset 0). */
  reset(): void {
    this.#hash = createSha256();
    this.#length = 0;
  }
}

/** The `sha256:<hex>` digest of a whole buffer or string (UTF-8); for small data and tests. */
export function sha256Digest(data: Uint8Array | string): string {
  return `${SHA256}:${sha256Hex(data)}`;
}

/** The lowercase sha256 hex of a buffer or string (UTF-8); e.g. to name a dir after a ref. */
export function sha256Hex(data: Uint8Array | string): string {
  return createSha256().update(data).digest("hex");
}

/**
 * The digest of a stream of chunks (e.g. a file's readable or a content read), hashed as it
 * arrives so memory stays at one chunk whatever the size.
 */
export async function sha256OfStream(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<{ digest: string; size: number }> {
  const hash = new Sha256();
  for await (const chunk of chunks) hash.update(chunk);
  return { digest: hash.digest(), size: hash.length };
}
