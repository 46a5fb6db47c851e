/**
 * containerd-ts entry point: registers the built-in plugins and hands argv to the CLI.
 *
 * A bare `--version` or `--help` needs no plugin: the plugin modules (and the npm packages
 * they pull in) are then not evaluated, which takes `--version` from ~140 ms to ~40 ms.
 *
 * @module
 */
const args = Deno.args;
const bare = args.length === 1 && ["--version", "-v", "--help", "-h"].includes(args[0]!);
if (!bare) await import("./plugins/mod.ts");
const { main } = await import("./server/cli.ts");

Deno.exit(await main(args));
