import assert from "node:assert/strict";
import {
  ALL_PLATFORMS,
  normalizePlatform,
  onlyMatcher,
  parsePlatform,
  strictMatcher,
} from "./platforms.ts";
import { InvalidArgumentError } from "../server/errdefs.ts";

Deno.test("normalizePlatform as platforms.Normalize", () => {
  assert.deepEqual(normalizePlatform({ os: "Linux", architecture: "x86_64" }), {
    os: "linux",
    architecture: "amd64",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "aarch64", variant: "v8" }), {
    os: "linux",
    architecture: "arm64",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "arm" }), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "armel" }), {
    os: "linux",
    architecture: "arm",
    variant: "v6",
  });
  assert.deepEqual(normalizePlatform({ os: "macos", architecture: "i386", variant: "x" }), {
    os: "darwin",
    architecture: "386",
  });
});

Deno.test("parsePlatform as ctr --platform", () => {
  assert.deepEqual(parsePlatform("linux/arm64/v8"), {
    os: "linux",
    architecture: "arm64",
    variant: "v8",
  });
  assert.deepEqual(parsePlatform("linux/arm/v7"), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(parsePlatform("linux/arm"), { os: "linux", architecture: "arm" });
  assert.deepEqual(parsePlatform("linux/x86_64"), { os: "linux", architecture: "amd64" });
  assert.equal(parsePlatform("windows").os, "windows");
  assert.equal(parsePlatform("s390x").architecture, "s390x");
  for (const bad of ["linux/*", "a/b/c/d", "bogus", "linux/", "linux amd64"]) {
    assert.throws(() => parsePlatform(bad), InvalidArgumentError, bad);
  }
});

Deno.test("matchers as platforms.Only / OnlyStrict / All", () => {
  const amd64 = onlyMatcher({ os: "linux", architecture: "amd64" });
  assert.ok(amd64.match({ os: "linux", architecture: "x86_64" }));
  assert.ok(amd64.match({ os: "linux", architecture: "386" }));
  assert.ok(!amd64.match({ os: "linux", architecture: "arm64" }));
  assert.ok(!amd64.match({ os: "windows", architecture: "amd64" }));
  assert.ok(
    amd64.less({ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "386" }),
  );
  assert.ok(
    !amd64.less({ os: "linux", architecture: "386" }, { os: "linux", architecture: "amd64" }),
  );

  const v3 = onlyMatcher({ os: "linux", architecture: "amd64", variant: "v3" });
  assert.ok(v3.match({ os: "linux", architecture: "amd64", variant: "v2" }));
  assert.ok(v3.match({ os: "linux", architecture: "amd64" }));
  assert.ok(!v3.match({ os: "linux", architecture: "amd64", variant: "v4" }));

  const arm64 = onlyMatcher({ os: "linux", architecture: "arm64" });
  assert.ok(arm64.match({ os: "linux", architecture: "arm", variant: "v5" }));
  assert.ok(arm64.match({ os: "linux", architecture: "arm" }));
  assert.ok(!arm64.match({ os: "linux", architecture: "amd64" }));

  const strict = strictMatcher({ os: "linux", architecture: "amd64" });
  assert.ok(strict.match({ os: "linux", architecture: "amd64" }));
  assert.ok(!strict.match({ os: "linux", architecture: "386" }));
  assert.ok(ALL_PLATFORMS.match({ os: "plan9", architecture: "mips" }));
});
