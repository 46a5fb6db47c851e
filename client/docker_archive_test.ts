import assert from "node:assert/strict";
import {
  decodeDescriptor,
  decodeDockerManifest,
  dockerManifestJSON,
  goDescriptorJSON,
  goField,
  goJSONString,
  goPathClean,
  normalizeDockerRef,
  ociIndexJSON,
  ociRefName,
  symlinkTarget,
} from "./docker_archive.ts";
import { InvalidArgumentError } from "../server/errdefs.ts";

const D = (c: string) => `sha256:${c.repeat(64)}`;

Deno.test("goJSONString escapes as Go's json.Marshal", () => {
  assert.equal(goJSONString(`a<b>&"\\`), String.raw`"a\u003cb\u003e\u0026\"\\"`);
  assert.equal(goJSONString("\n\r\t\u0001\u001f"), String.raw`"\n\r\t\u0001\u001f"`);
  assert.equal(goJSONString("\u2028\u2029é☃"), String.raw`"\u2028\u2029` + `é☃"`);
  assert.equal(goJSONString("\b\f"), String.raw`"\u0008\u000c"`);
  assert.equal(goJSONString("x\ud800y"), `"x\ufffdy"`);
});

Deno.test("descriptors, manifests and indexes in Go's field order", () => {
  assert.equal(
    goDescriptorJSON({
      mediaType: "m",
      digest: D("a"),
      size: 3,
      annotations: { "z": "1", "a.b": "2" },
      platform: { os: "linux", architecture: "arm", variant: "v7" },
    }),
    `{"mediaType":"m","digest":"${D("a")}","size":3,"annotations":{"a.b":"2","z":"1"},` +
      `"platform":{"architecture":"arm","os":"linux","variant":"v7"}}`,
  );
  assert.equal(
    goDescriptorJSON({ mediaType: "", digest: D("b"), size: 0 }),
    `{"digest":"${D("b")}","size":0}`,
  );
  assert.equal(
    dockerManifestJSON({ mediaType: "c", digest: D("c"), size: 1 }, []),
    `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` +
      `"config":{"mediaType":"c","digest":"${D("c")}","size":1},"layers":[]}`,
  );
  assert.equal(ociIndexJSON([]), `{"schemaVersion":2,"manifests":null}`);
  assert.equal(
    ociIndexJSON([{ mediaType: "m", digest: D("d"), size: 2 }]),
    `{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"${D("d")}","size":2}]}`,
  );
});

Deno.test("normalizeDockerRef as ParseDockerRef", () => {
  const cases: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["docker.io/busybox", "docker.io/library/busybox:latest"],
    ["index.docker.io/library/busybox:1", "docker.io/library/busybox:1"],
    ["user/app:v2", "docker.io/user/app:v2"],
    ["localhost/app", "localhost/app:latest"],
    ["localhost:5000/team/app:v1", "localhost:5000/team/app:v1"],
    ["Example.COM/app", "Example.COM/app:latest"],
    [`busybox@${D("e")}`, `docker.io/library/busybox@${D("e")}`],
    [`quay.io/a/b:tag@${D("f")}`, `quay.io/a/b@${D("f")}`],
  ];
  for (const [input, want] of cases) assert.equal(normalizeDockerRef(input), want, input);
  for (
    const bad of ["", "Busybox", "a".repeat(64), "busybox:", "a:b:c", "busybox@sha256:abc", "x/Y"]
  ) {
    assert.throws(() => normalizeDockerRef(bad), InvalidArgumentError, bad);
  }
});

Deno.test("ociRefName takes what follows the repository", () => {
  assert.equal(ociRefName("docker.io/library/busybox:latest"), "latest");
  assert.equal(ociRefName("localhost:5000/app:v1"), "v1");
  assert.equal(ociRefName(`docker.io/library/b@${D("a")}`), `@${D("a")}`);
  assert.equal(ociRefName("docker.io/library/busybox"), "");
});

Deno.test("goPathClean and symlink targets as Go's path package", () => {
  const cases: [string, string][] = [
    ["", "."],
    ["./a", "a"],
    ["a//b/", "a/b"],
    ["/../a", "/a"],
    ["a/../..", ".."],
    ["../a/./b", "../a/b"],
    ["./", "."],
  ];
  for (const [input, want] of cases) assert.equal(goPathClean(input), want, input);
  assert.equal(symlinkTarget("abc/layer.tar", "../def/layer.tar"), "def/layer.tar");
  assert.equal(symlinkTarget("layer.tar", "x/y"), "x/y");
  assert.equal(symlinkTarget("./a/b", "/abs"), "a/abs");
});

Deno.test("manifest.json is read as Go's decoder reads it", () => {
  assert.equal(decodeDockerManifest(null), null);
  assert.deepEqual(
    decodeDockerManifest([{ config: "c.json", REPOTAGS: ["a"], Layers: ["l/layer.tar"] }, null]),
    [
      { config: "c.json", repoTags: ["a"], layers: ["l/layer.tar"] },
      { config: "", repoTags: [], layers: [] },
    ],
  );
  assert.throws(() => decodeDockerManifest({}), InvalidArgumentError);
  assert.throws(() => decodeDockerManifest([{ Config: 1 }]), InvalidArgumentError);
  assert.equal(goField({ Os: "a", os: "b" }, "os"), "b");
  assert.deepEqual(
    decodeDescriptor(
      { mediaType: "m", digest: D("a"), size: 5, platform: { OS: "linux", architecture: "amd64" } },
      "d",
    ),
    { mediaType: "m", digest: D("a"), size: 5, platform: { os: "linux", architecture: "amd64" } },
  );
  assert.throws(() => decodeDescriptor({ size: 1.5 }, "d"), InvalidArgumentError);
});
