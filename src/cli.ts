// The `lmi` command line: parses arguments and calls one function per subcommand.
// Each subcommand lives in its own module under src/commands/ and exports `register(program: Command)`,
// which adds the command and its options; add one `registerX(program)` line below per command.
// A command module must stay light at import time: its action imports the heavy modules (server,
// executors) lazily, so `lmi config` does not pay for loading them.
import { Command, CommanderError } from "commander";
import { register as registerBench } from "./commands/bench.ts";
import { register as registerConfig } from "./commands/config.ts";
import { register as registerDownload } from "./commands/download.ts";
import { register as registerServe } from "./commands/serve.ts";

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("lmi")
    .description(
      "A TypeScript LLM model server compatible with AWS Large Model Inference (LMI) containers on DJL Serving.\n" +
        "Reads serving.properties, OPTION_*/SERVING_* environment variables and config.properties exactly as LMI does.",
    )
    .version("0.1.0");
  // Subcommands, one line each (keep sorted): registerX(program), imported from ./commands/x.ts.
  registerBench(program);
  registerConfig(program);
  registerDownload(program);
  registerServe(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    throw err;
  }
}
