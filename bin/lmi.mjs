#!/usr/bin/env node
// Entry point of the `lmi` command: registers the TypeScript loader, then runs src/cli.ts.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
await main(process.argv);
