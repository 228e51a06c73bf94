// What `lmi config` computes, as a pure function of its arguments and environment (the commander wiring
// lives in src/commands/config.ts). Invariants: returns the text to print or throws ConfigError; without a
// MODEL_DIR it describes the model `lmi serve` would start (first startup model, else the env alone).
import { ConfigError } from "../errors.ts";
import { formatEffective, formatSchema, formatSchemaMarkdown, schemaRows } from "./describe.ts";
import { loadModelConfig } from "./model-config.ts";
import { loadServerConfig } from "./server-config.ts";
import { resolveStartupModels } from "./startup-models.ts";

export interface ConfigCommandOptions {
  modelDir?: string;
  json?: boolean;
  configFile?: string;
  schema?: boolean;
  /** With schema: print the markdown reference of docs/configuration.md. */
  markdown?: boolean;
  env: NodeJS.ProcessEnv;
}

export function runConfig(opts: ConfigCommandOptions): string {
  if (opts.schema && opts.markdown) return formatSchemaMarkdown();
  if (opts.schema) return opts.json ? `${JSON.stringify(schemaRows(), null, 2)}\n` : formatSchema();
  const server = loadServerConfig({ configFile: opts.configFile, env: opts.env });
  const warnings = [...server.warnings];
  let target: Parameters<typeof loadModelConfig>[0] = { modelDir: opts.modelDir, env: opts.env, server };
  if (opts.modelDir === undefined) {
    const models = resolveStartupModels(server, opts.env);
    if (models.length > 1) {
      warnings.push(
        `${models.length} startup models; showing "${models[0].name}" (pass MODEL_DIR to pick another)`,
      );
    }
    const first = models[0];
    if (first) {
      target = {
        ...target,
        modelDir: first.modelDir,
        extraProperties: first.extraProperties,
        extraSources: first.extraSources,
        extraSource: first.origin,
      };
    }
  }
  const result = loadModelConfig(target);
  const view = {
    properties: result.properties,
    sources: result.sources,
    warnings: [...warnings, ...result.warnings],
    notes: result.notes,
  };
  return opts.json ? `${JSON.stringify(view)}\n` : formatEffective(view);
}

/** stderr text for a configuration failure, or undefined when the error is not a configuration problem. */
export function describeConfigError(err: unknown): string | undefined {
  if (!(err instanceof ConfigError)) return undefined;
  const n = err.problems.length;
  return `Invalid configuration (${n} problem${n === 1 ? "" : "s"}):\n${err.problems.map((p) => `  - ${p}`).join("\n")}\n`;
}
