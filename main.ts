/**
 * containerd-ts entry point: registers the built-in plugins and hands argv to the CLI.
 *
 * @module
 */
import "./plugins/mod.ts";
import { main } from "./server/cli.ts";

Deno.exit(await main(Deno.args));
