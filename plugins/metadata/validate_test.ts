/** Tests for the identifier, label and digest rules the metadata store enforces. */
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../server/errdefs.ts";
import { isDigest, validateDigest, validateIdentifier, validateLabels } from "./validate.ts";

Deno.test("namespace names follow containerd's identifier rule", () => {
  for (const ok of ["default", "k8s.io", "a", "A-b_c.d", "x1-2", "a".repeat(76)]) {
    validateIdentifier(ok);
  }
  for (const bad of ["", "-a", "a-", "a..b", "a/b", "a b", "ä", "a".repeat(77), "_x", "a._b"]) {
    assert.throws(() => validateIdentifier(bad), InvalidArgumentError, `accepted ${bad}`);
  }
});

Deno.test("identifier errors name the identifier and the rule", () => {
  assert.throws(() => validateIdentifier("bad name"), /identifier "bad name" must match/);
  assert.throws(() => validateIdentifier("a".repeat(77)), /greater than maximum length \(76/);
  assert.throws(() => validateIdentifier(""), /must not be empty/);
});

Deno.test("a label's key plus value may be 4096 bytes, not more", () => {
  validateLabels({ k: "v".repeat(4095) });
  assert.throws(
    () => validateLabels({ k: "v".repeat(4096) }, "namespace.Labels"),
    (err: unknown) =>
      err instanceof InvalidArgumentError &&
      /^namespace\.Labels: label key and value greater than maximum size \(4096 bytes\), key: k/
        .test(err.message),
  );
  // Bytes, not characters: "é" is two bytes in UTF-8.
  assert.throws(() => validateLabels({ k: "é".repeat(2048) }), InvalidArgumentError);
});

Deno.test("digests are validated like go-digest", () => {
  const hex = "a".repeat(64);
  validateDigest(`sha256:${hex}`);
  for (
    const bad of [
      "",
      "sha256",
      `sha256:${hex.slice(1)}`,
      `md5:${hex}`,
      `sha256:${"A".repeat(64)}`,
      hex,
    ]
  ) {
    assert.equal(isDigest(bad), false, bad);
    assert.throws(() => validateDigest(bad), InvalidArgumentError);
  }
  assert.throws(() => validateDigest(`sha256:${hex.slice(1)}`), /invalid checksum digest length/);
});
