import assert from "node:assert/strict";
import { closeOnExecAll } from "./cloexec.ts";

const O_RDONLY = 0;

Deno.test("a descriptor opened without FD_CLOEXEC is not inherited after closeOnExecAll", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/inherited-marker`;
  await Deno.writeTextFile(file, "");
  // libc's open without O_CLOEXEC: exactly the kind of descriptor a child would inherit.
  const libc = Deno.dlopen(
    "libc.so.6",
    {
      open: { parameters: ["buffer", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
    } as const,
  );
  const fd = libc.symbols.open(new TextEncoder().encode(`${file}\0`), O_RDONLY);
  assert.ok(fd > 2, `open ${file}`);
  const childFds = async () => {
    const out = await new Deno.Command("sh", {
      args: ["-c", "ls -l /proc/$$/fd"],
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout);
  };
  try {
    assert.match(await childFds(), /inherited-marker/, "without the sweep the child inherits it");
    assert.ok(closeOnExecAll() >= 1);
    const listing = await childFds();
    assert.doesNotMatch(listing, /inherited-marker/, listing);
    assert.equal(closeOnExecAll(), 0, "a second sweep finds nothing left to change");
  } finally {
    libc.symbols.close(fd);
    libc.close();
    await Deno.remove(dir, { recursive: true });
  }
});
