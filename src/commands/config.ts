// `lmi config [MODEL_DIR] [--json] [-f config.properties] [--schema]`: prints the effective configuration of
// one model (every key with its value, source and what it does here), or the whole schema table.
// Invariants: invalid configuration exits with status 2 and lists every problem on stderr; --json prints
// exactly one JSON object on stdout; nothing but reading files happens (no download, no model load).
import type { Command } from "commander";
import { describeConfigError, runConfig } from "../config/config-command.ts";

export function register(program: Command): void {
  program
    .command("config")
    .description(
      "Print the effective configuration of a model: serving.properties + OPTION_*/SERVING_*/SageMaker/TGI env vars " +
        "+ config.properties, with defaults, sources and what each key does in this server.",
    )
    .argument("[MODEL_DIR]", "model directory holding serving.properties (default: the startup model)")
    .option("--json", "print one JSON object: {properties, sources, warnings, notes}")
    .option(
      "-f, --config-file <path>",
      "server config.properties (its job_queue_size, batch_size, ... are model defaults)",
    )
    .option("--schema", "print every configuration key this server knows instead")
    .option("--markdown", "with --schema: print it as the markdown tables of docs/configuration.md")
    .action(
      (
        modelDir: string | undefined,
        opts: { json?: boolean; configFile?: string; schema?: boolean; markdown?: boolean },
      ) => {
        try {
          process.stdout.write(runConfig({ modelDir, ...opts, env: process.env }));
        } catch (err) {
          const text = describeConfigError(err);
          if (text === undefined) throw err;
          process.stderr.write(text);
          process.exitCode = 2;
        }
      },
    );
}
