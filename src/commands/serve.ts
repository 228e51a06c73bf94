// `lmi serve [MODEL_DIR]`: loads the server config (-f config.properties, SERVING_* env), decides the
// startup models (the argument; else load_models / model_store / HF_MODEL_ID / OPTION_MODEL_ID; else
// the embedded default model models/tiny-kjv, found from the package root, not the cwd), registers
// them (each becomes the paged engine or the Python handler, logged), waits for them to load, then
// listens. Light at import: the server and engines load inside the action.

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Command, InvalidArgumentError } from "commander";

/** The package root: two levels above this file (src/commands/serve.ts). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEFAULT_MODEL_DIR = join(PACKAGE_ROOT, "models", "tiny-kjv");

export interface ServeFlags {
  configFile?: string;
  models?: string[];
  modelStore?: string;
  port?: number;
  host?: string;
  executor?: "cpu" | "gpu";
  logFormat?: "text" | "json";
  logLevel?: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
}

function oneOf<T extends string>(values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`must be one of ${values.join(", ")}`);
    }
    return value as T;
  };
}

export function register(program: Command): void {
  program
    .command("serve")
    .description(
      "Serve models over DJL/LMI-compatible HTTP APIs (/invocations, /predictions, /ping, management, OpenAI). " +
        "With no model configured, serves the embedded default model (models/tiny-kjv) on 127.0.0.1:8080.",
    )
    .argument(
      "[MODEL_DIR]",
      "a model directory (serving.properties and/or config.json + weights) or a model id",
    )
    .option("-f, --config-file <path>", "server config.properties")
    .option("-m, --models <models...>", "load_models entries: [name[:version[:engine[:devices]]]=]url")
    .option("-s, --model-store <dir>", "model_store directory (load_models=ALL scans it)")
    .option("--port <port>", "listen on this port (one listener for both APIs; 0 = any free port)", port)
    .option("--host <host>", "listen on this host instead of the configured one")
    .option(
      "--executor <kind>",
      "executor for the paged engine: cpu (reference) or gpu (Python + PyTorch)",
      oneOf(["cpu", "gpu"] as const),
      "cpu",
    )
    .option(
      "--log-format <format>",
      "text or json (one JSON object per line); env LMI_LOG_FORMAT",
      oneOf(["text", "json"] as const),
    )
    .option("--log-level <level>", "trace, debug, info, warn, error; env LMI_LOG_LEVEL")
    .action(async (modelDir: string | undefined, flags: ServeFlags) => {
      const { runServe } = await import("../server/serve.ts");
      await runServe(modelDir, { ...flags, defaultModelDir: DEFAULT_MODEL_DIR });
    });
}
