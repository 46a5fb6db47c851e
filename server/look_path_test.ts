import assert from "node:assert/strict";
import { lookPath } from "./look_path.ts";

Deno.test("lookPath: first executable regular file on the path; slashes taken as they are", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cts-lookpath-" });
  try {
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    await Deno.mkdir(`${dir}/c/tool`, { recursive: true }); // a directory is not a command
    await Deno.writeTextFile(`${dir}/a/tool`, "data", { mode: 0o644 }); // not executable
    await Deno.writeTextFile(`${dir}/b/tool`, "#!/bin/sh\n", { mode: 0o755 });
    assert.equal(lookPath("tool", `${dir}/c:${dir}/a:${dir}/b/`), `${dir}/b/tool`);
    assert.equal(lookPath("tool", `${dir}/c:${dir}/a`), undefined);
    assert.equal(lookPath("tool", ""), undefined);
    assert.equal(lookPath(`${dir}/b/tool`, ""), `${dir}/b/tool`);
    assert.equal(lookPath(`${dir}/a/tool`, `${dir}/b`), undefined);
    assert.equal(lookPath("sh", "/usr/bin:/bin")?.endsWith("/sh"), true);
    // An empty entry is not the current directory.
    const cwd = Deno.cwd();
    try {
      Deno.chdir(`${dir}/b`);
      assert.equal(lookPath("tool", `:${dir}/a`), undefined);
    } finally {
      Deno.chdir(cwd);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
