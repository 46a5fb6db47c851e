/**
 * The validation rules containerd applies to names, labels and digests before anything is
 * stored, in one place so every service rejects the same input with the same message.
 *
 * @example
 * ```ts
 * import { validateIdentifier, validateLabels } from "./validate.ts";
 * validateIdentifier("default");            // ok
 * validateLabels({ "a": "b" }, "namespace.Labels"); // ok
 * ```
 * @module
 */
import { InvalidArgumentError } from "../../server/errdefs.ts";
import { validateIdentifier } from "../../server/interceptors.ts";
import { isDigest as isValidDigest, parseDigest } from "../../server/digest.ts";

/** containerd's identifier rule, shared with the request interceptor (one wording). */
export { validateIdentifier };

/** A label's key plus value may not exceed this many bytes (UTF-8). */
export const MAX_LABEL_SIZE = 4096;

const encoder = new TextEncoder();

/**
 * Check one label against the 4096-byte limit on key plus value, as containerd does, so a
 * label that containerd would refuse is refused here too.
 *
 * @throws {InvalidArgumentError} naming (the start of) the key.
 */
export function validateLabel(key: string, value: string, where = "labels"): void {
  const size = encoder.encode(key).length + encoder.encode(value).length;
  if (size > MAX_LABEL_SIZE) {
    throw new InvalidArgumentError(
      `${where}: label key and value greater than maximum size (${MAX_LABEL_SIZE} bytes), key: ${
        key.slice(0, 10)
      }: invalid argument`,
    );
  }
}

/** {@link validateLabel} for every entry of a label map. */
export function validateLabels(labels: Readonly<Record<string, string>>, where = "labels"): void {
  for (const [key, value] of Object.entries(labels)) validateLabel(key, value, where);
}

/**
 * Check a digest string as the shared digest module does (go-digest's rules, sha256 only),
 * so a malformed digest is an InvalidArgument and never reaches the disk store.
 *
 * @throws {InvalidArgumentError} naming the digest and what is wrong with it.
 */
export function validateDigest(digest: string): void {
  parseDigest(digest);
}

/** True when {@link validateDigest} would accept `digest`; for lenient checks. */
export function isDigest(digest: string): boolean {
  return isValidDigest(digest);
}
