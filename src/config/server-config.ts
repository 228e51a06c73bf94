// Loads the server-wide configuration (spec §1.2 item 1): built-in defaults < config.properties (`-f`) <
// SERVING_<KEY> env vars < SageMaker's max request size vars (which overwrite) < command-line overrides.
// Invariants: the result is deeply frozen and typed (camelCase, from the schema table); every problem in
// every source is reported at once in one ConfigError; unknown config.properties keys are warnings.
import { ConfigError } from "../errors.ts";
import { didYouMean } from "./did-you-mean.ts";
import { envSource, servingEnvName, translateTgiEnv } from "./env-mapping.ts";
import { readPropertiesFile } from "./properties-parser.ts";
import { type RawProps, resolveKeys } from "./resolve.ts";
import { SERVER_SCOPE_KEYS, type ServerValues, schemaEntry } from "./schema/index.ts";

export type ServerConfig = ServerValues & {
  /** Where each key's value came from ("default", "conf/config.properties:3", "env SERVING_X"). */
  readonly sources: Readonly<Record<string, string>>;
  readonly warnings: readonly string[];
};

export interface LoadServerConfigOptions {
  /** config.properties path (`lmi serve -f`); absent means defaults and env only. */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Command-line values by LMI key (e.g. {"load_models": "...", "model_store": "..."}); they win. */
  overrides?: Readonly<Record<string, string>>;
}

const MIB = 1024 * 1024;

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function toCamel(key: string): string | undefined {
  const entry = schemaEntry(key);
  return entry && "field" in entry ? entry.field : undefined;
}

export function loadServerConfig(options: LoadServerConfigOptions = {}): ServerConfig {
  const env = translateTgiEnv(options.env ?? process.env);
  const problems: string[] = [];
  const warnings: string[] = [];
  const raw: RawProps = new Map();
  const known = new Set(SERVER_SCOPE_KEYS.map((d) => d.key));

  if (options.configFile !== undefined) {
    try {
      for (const e of readPropertiesFile(options.configFile)) {
        const source = `${options.configFile}:${e.line}`;
        if (!known.has(e.key)) {
          const hint = didYouMean(e.key, known);
          warnings.push(
            `${source}: unknown server key ${e.key}${hint ? ` (did you mean ${hint}?)` : ""}; ignored`,
          );
          continue;
        }
        const previous = raw.get(e.key);
        if (previous)
          warnings.push(
            `${source}: ${e.key} is set again (first at ${previous.source}); the later value wins`,
          );
        raw.set(e.key, { raw: e.value, source });
      }
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  for (const key of known) {
    const name = servingEnvName(key);
    const value = env.vars[name];
    if (value !== undefined) raw.set(key, { raw: value, source: envSource(env, name) });
  }
  // SageMaker overwrites max_request_size: bytes, or MiB in SAGEMAKER_MAX_PAYLOAD_IN_MB.
  const payloadMb = env.vars.SAGEMAKER_MAX_PAYLOAD_IN_MB;
  if (payloadMb !== undefined) {
    const mb = Number(payloadMb.trim());
    if (!/^\d+$/.test(payloadMb.trim()) || mb < 1) {
      problems.push(
        `env SAGEMAKER_MAX_PAYLOAD_IN_MB: invalid value "${payloadMb}": expected an integer >= 1`,
      );
    } else {
      raw.set("max_request_size", { raw: String(mb * MIB), source: "env SAGEMAKER_MAX_PAYLOAD_IN_MB" });
    }
  }
  const maxRequest = env.vars.SAGEMAKER_MAX_REQUEST_SIZE;
  if (maxRequest !== undefined) {
    raw.set("max_request_size", { raw: maxRequest, source: "env SAGEMAKER_MAX_REQUEST_SIZE" });
  }
  for (const [key, value] of Object.entries(options.overrides ?? {})) {
    if (!known.has(key)) {
      problems.push(`command line: unknown server key ${key}`);
      continue;
    }
    raw.set(key, { raw: value, source: "command line" });
  }

  const resolved = resolveKeys(raw, SERVER_SCOPE_KEYS, env.vars, problems, warnings);
  const pattern = resolved.values.get("model_url_pattern");
  if (typeof pattern === "string") {
    try {
      new RegExp(pattern);
    } catch (err) {
      problems.push(
        `${resolved.sources.get("model_url_pattern")}: model_url_pattern: invalid value "${pattern}": ${(err as Error).message}`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const config: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const [key, value] of resolved.values) {
    const field = toCamel(key);
    if (field) config[field] = value;
    sources[key] = resolved.sources.get(key) ?? "default";
  }
  config.sources = sources;
  config.warnings = warnings;
  return deepFreeze(config) as ServerConfig;
}
