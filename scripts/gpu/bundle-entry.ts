// Entry of the single-file server bundle carried to the GPU machine (no tsx there): runs the CLI.
import { main } from "../../src/cli.ts";

await main(process.argv);
