// Loads one model's configuration (spec §1.2 items 2-3): serving.properties, overridden by the caller's
// extraProperties (load_models engine, HF_MODEL_ID); OPTION_* and the other env names only fill what is absent;
// SageMaker env vars overwrite. Then engine aliases, typed parsing, defaults and the cross-key rules.
// Invariants: all problems are reported at once (ConfigError, each line "location: ..."); the ModelConfig is
// deeply frozen, camelCase and typed; nothing downstream reads raw keys. Public: loadModelConfig, ModelConfig.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { didYouMean } from "./did-you-mean.ts";
import { applyEngineRules, type EngineAlias } from "./engine.ts";
import { type EffectiveEnv, envSource, optionKeyOfEnv, translateTgiEnv } from "./env-mapping.ts";
import { readPropertiesFile } from "./properties-parser.ts";
import { badValue, type OuterDefault, type RawProps, resolveKeys } from "./resolve.ts";
import { applyModelRules } from "./rules.ts";
import {
  isDeprecated,
  MODEL_DEPRECATED,
  MODEL_SCOPE_KEYS,
  type ModelValues,
  SCHEMA,
  schemaEntry,
} from "./schema/index.ts";
import { deepFreeze, type ServerConfig } from "./server-config.ts";

export type DeviceType = "gpu" | "cpu" | "neuron";

export type ModelConfig = ModelValues & {
  /** The alias `engine` was written as, if any (engine itself is then "Python"). */
  readonly engineAlias: EngineAlias | undefined;
  /** gpu./cpu./neuron. prefixed worker counts; they win over minWorkers/maxWorkers on that device type. */
  readonly deviceWorkers: Readonly<Partial<Record<DeviceType, { minWorkers?: number; maxWorkers?: number }>>>;
  /** option.* keys not in the schema, passed to Python handlers unchanged (name without "option."). */
  readonly unknownOptions: Readonly<Record<string, string>>;
  /** The properties a DJL Python handler receives: every set option.* key without its prefix, as text. */
  readonly pythonProperties: Readonly<Record<string, string>>;
};

export interface LoadModelConfigOptions {
  /** Directory holding serving.properties (and model.py / config.json / weights). */
  modelDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Properties from the caller (load_models' engine, HF_MODEL_ID's model_id/revision/task); beat the file. */
  extraProperties?: Readonly<Record<string, string>>;
  /** How `sources` names extraProperties (e.g. "HF_MODEL_ID", "load_models"). */
  extraSource?: string;
  /** Per-key sources of extraProperties (StartupModel.extraSources); they win over extraSource. */
  extraSources?: Readonly<Record<string, string>>;
  /** Server-wide values for the shared keys (job_queue_size, batch_size, ...). */
  server?: ServerConfig;
}

export interface ModelConfigResult {
  config: ModelConfig;
  /** Every key with a value (defaults included), LMI spelling, typed. */
  properties: Record<string, unknown>;
  sources: Record<string, string>;
  warnings: string[];
  /** key -> what it does in this server (the schema's "here" note). */
  notes: Record<string, string>;
}

const DEVICE_PREFIX = /^(gpu|cpu|neuron)\.(.+)$/;
const OPTION_NAMES = SCHEMA.filter((e) => e.key.startsWith("option.") && e.scope !== "server").map(
  (e) => e.key,
);
const MODEL_TOP_NAMES = SCHEMA.filter((e) => !e.key.startsWith("option.") && e.scope !== "server").map(
  (e) => e.key,
);

function readFileLayer(modelDir: string, raw: RawProps, problems: string[], warnings: string[]): void {
  const file = join(modelDir, "serving.properties");
  if (!existsSync(file)) return;
  try {
    for (const e of readPropertiesFile(file)) {
      const source = `${file}:${e.line}`;
      const previous = raw.get(e.key);
      if (previous)
        warnings.push(`${source}: ${e.key} is set again (first at ${previous.source}); the later value wins`);
      raw.set(e.key, { raw: e.value, source });
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
}

/** LMI's Python side sees options without their prefix, so `rolling_batch=x` means option.rolling_batch. */
function adoptUnprefixedOptions(raw: RawProps, warnings: string[]): void {
  for (const [key, value] of [...raw]) {
    if (key.startsWith("option.") || schemaEntry(key) || DEVICE_PREFIX.test(key)) continue;
    const full = `option.${key}`;
    if (!schemaEntry(full)) continue;
    raw.delete(key);
    const existing = raw.get(full);
    if (existing) {
      warnings.push(`${value.source}: ${key} is also set as ${full} (${existing.source}); ${full} wins`);
      continue;
    }
    raw.set(full, { raw: value.raw, source: `${value.source} (as ${key}, without the option. prefix)` });
  }
}

function putIfAbsent(raw: RawProps, key: string, value: string | undefined, source: string): void {
  if (value !== undefined && !raw.has(key)) raw.set(key, { raw: value, source });
}

function applyEnvLayer(raw: RawProps, env: EffectiveEnv): void {
  for (const name of Object.keys(env.vars).sort()) {
    const key = optionKeyOfEnv(name);
    if (key) putIfAbsent(raw, key, env.vars[name], envSource(env, name));
  }
  const fill = (key: string, name: string) => putIfAbsent(raw, key, env.vars[name], envSource(env, name));
  fill("minWorkers", "SERVING_MIN_WORKERS");
  fill("maxWorkers", "SERVING_MAX_WORKERS");
  fill("option.tensor_parallel_degree", "TENSOR_PARALLEL_DEGREE");
  fill("option.model_loading_timeout", "MODEL_LOADING_TIMEOUT");
  fill("option.predict_timeout", "PREDICT_TIMEOUT");
  fill("option.pythonExecutable", "PYTHON_EXECUTABLE");
  fill("option.trust_remote_code", "HF_TRUST_REMOTE_CODE");
  // SageMaker compatibility overwrites (SageMakerCompatibility.applyModelCompatibility).
  const overwrite = (key: string, name: string) => {
    const value = env.vars[name];
    if (value !== undefined) raw.set(key, { raw: value, source: `env ${name}` });
  };
  overwrite("minWorkers", "SAGEMAKER_NUM_MODEL_WORKERS");
  overwrite("maxWorkers", "SAGEMAKER_NUM_MODEL_WORKERS");
  overwrite("option.model_loading_timeout", "SAGEMAKER_STARTUP_TIMEOUT");
  overwrite("option.predict_timeout", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS");
}

function rewriteDeprecated(raw: RawProps, problems: string[], warnings: string[]): void {
  for (const dep of MODEL_DEPRECATED) {
    const value = raw.get(dep.key);
    if (!value) continue;
    raw.delete(dep.key);
    const mapped = dep.map(value.raw);
    if ("error" in mapped) {
      problems.push(badValue(dep.key, value, mapped.error));
      continue;
    }
    const existing = raw.get(dep.replacement);
    if (existing) {
      warnings.push(
        `${value.source}: ${dep.key} is deprecated and ignored: ${dep.replacement} is set (${existing.source})`,
      );
      continue;
    }
    warnings.push(
      mapped.value === undefined
        ? `${value.source}: ${dep.key} is deprecated (use ${dep.replacement}); ${value.raw.trim()} sets nothing`
        : `${value.source}: ${dep.key} is deprecated; read as ${dep.replacement}=${mapped.value.trim()}`,
    );
    if (mapped.value !== undefined) {
      raw.set(dep.replacement, { raw: mapped.value, source: `${value.source} (deprecated ${dep.key})` });
    }
  }
}

/** Splits off unknown keys (warned, kept for Python) and gpu./cpu. scoped keys; returns them. */
function takeUnknownAndScoped(raw: RawProps, warnings: string[]) {
  const unknownOptions: Record<string, string> = {};
  const scoped: RawProps = new Map();
  for (const [key, value] of [...raw]) {
    const entry = schemaEntry(key);
    if (entry && !isDeprecated(entry) && entry.scope !== "server") continue;
    raw.delete(key);
    const device = DEVICE_PREFIX.exec(key);
    const base = device ? schemaEntry(device[2]) : undefined;
    if (base && !isDeprecated(base) && base.deviceScoped) {
      scoped.set(key, value);
      continue;
    }
    const isOption = key.startsWith("option.");
    const hint = didYouMean(key, isOption ? OPTION_NAMES : [...MODEL_TOP_NAMES, ...OPTION_NAMES]);
    const what = entry ? "a server key (config.properties), not a model key" : "unknown key";
    warnings.push(
      `${value.source}: ${what} ${key}${hint ? ` (did you mean ${hint}?)` : ""}; ` +
        (isOption ? "passed to the Python handler unchanged" : "ignored"),
    );
    if (isOption) unknownOptions[key.slice("option.".length)] = value.raw;
  }
  return { unknownOptions, scoped };
}

/**
 * LMI ≥0.31 async mode (option.async_mode=true, or the vLLM async service as entry point) serves through
 * vLLM's own scheduler, which is our paged engine: it reads as rolling_batch=vllm. Async mode and a
 * rolling batch are exclusive, so an explicit scheduler/lmi-dist/... is a problem.
 */
function applyAsyncMode(raw: RawProps, problems: string[]): void {
  const mode = raw.get("option.async_mode");
  const entry = raw.get("option.entryPoint");
  const byMode = mode !== undefined && mode.raw.trim().toLowerCase() === "true";
  const byEntry = entry?.raw.trim().startsWith("djl_python.lmi_vllm") === true;
  if (!byMode && !byEntry) return;
  const why = byMode ? "option.async_mode=true" : `option.entryPoint=${entry?.raw.trim()}`;
  const whySource = byMode ? mode?.source : entry?.source;
  const rb = raw.get("option.rolling_batch");
  const rbValue = rb?.raw.trim().toLowerCase();
  if (rb === undefined || rbValue === "disable" || rbValue === "auto") {
    raw.set("option.rolling_batch", { raw: "vllm", source: `${whySource} (${why}: the async vLLM service)` });
  } else if (rbValue !== "vllm") {
    problems.push(
      `${rb.source}: option.rolling_batch=${rb.raw.trim()} cannot be combined with ${why} (${whySource}): ` +
        "async mode and rolling batch are exclusive",
    );
  }
}

function sharedDefaults(server: ServerConfig | undefined): Map<string, OuterDefault> {
  const out = new Map<string, OuterDefault>();
  if (!server) return out;
  for (const def of MODEL_SCOPE_KEYS) {
    if (def.scope !== "shared") continue;
    const value = (server as unknown as Record<string, unknown>)[def.field];
    const source = server.sources[def.key];
    if (value !== undefined && source !== undefined && source !== "default") {
      out.set(def.key, { value, source: `server ${source}` });
    }
  }
  return out;
}

export function loadModelConfig(options: LoadModelConfigOptions = {}): ModelConfigResult {
  const env = translateTgiEnv(options.env ?? process.env);
  const problems: string[] = [];
  const warnings: string[] = [];
  const raw: RawProps = new Map();
  const { modelDir } = options;

  if (modelDir !== undefined) readFileLayer(modelDir, raw, problems, warnings);
  for (const [key, value] of Object.entries(options.extraProperties ?? {})) {
    raw.set(key, {
      raw: value,
      source: options.extraSources?.[key] ?? options.extraSource ?? "registration",
    });
  }
  adoptUnprefixedOptions(raw, warnings);
  applyEnvLayer(raw, env);
  rewriteDeprecated(raw, problems, warnings);
  if (modelDir !== undefined) putIfAbsent(raw, "option.model_dir", modelDir, "the model directory");
  const { alias } = applyEngineRules(raw, modelDir, env.vars, problems, warnings);
  const { unknownOptions, scoped } = takeUnknownAndScoped(raw, warnings);
  applyAsyncMode(raw, problems);

  const resolved = resolveKeys(
    raw,
    MODEL_SCOPE_KEYS,
    env.vars,
    problems,
    warnings,
    sharedDefaults(options.server),
  );
  const deviceWorkers: Partial<Record<DeviceType, { minWorkers?: number; maxWorkers?: number }>> = {};
  for (const [key, value] of scoped) {
    const [, device, base] = DEVICE_PREFIX.exec(key)!;
    const def = MODEL_SCOPE_KEYS.find((d) => d.key === base)!;
    const parsed = def.kind.parse(value.raw);
    if ("error" in parsed) {
      problems.push(badValue(key, value, parsed.error));
      continue;
    }
    const slot: Record<string, unknown> = deviceWorkers[device as DeviceType] ?? {};
    slot[base] = parsed.value;
    deviceWorkers[device as DeviceType] = slot;
    resolved.values.set(key, parsed.value);
    resolved.sources.set(key, value.source);
    resolved.explicit.add(key);
  }
  applyModelRules(resolved, alias, problems, warnings);
  if (problems.length > 0) throw new ConfigError(problems);
  return buildResult(resolved, alias, deviceWorkers, unknownOptions, warnings);
}

function buildResult(
  resolved: ReturnType<typeof resolveKeys>,
  alias: EngineAlias | undefined,
  deviceWorkers: ModelConfig["deviceWorkers"],
  unknownOptions: Record<string, string>,
  warnings: string[],
): ModelConfigResult {
  const config: Record<string, unknown> = {};
  const properties: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const notes: Record<string, string> = {};
  const pythonProperties: Record<string, string> = {};
  for (const def of MODEL_SCOPE_KEYS) {
    if (!resolved.values.has(def.key)) continue;
    const value = resolved.values.get(def.key);
    config[def.field] = value;
    if (def.key.startsWith("option.") && resolved.explicit.has(def.key)) {
      pythonProperties[def.key.slice("option.".length)] = def.kind.format(value);
    }
  }
  for (const [key, value] of [...resolved.values].sort(([a], [b]) => a.localeCompare(b))) {
    properties[key] = value;
    sources[key] = resolved.sources.get(key) ?? "default";
    const entry = schemaEntry(DEVICE_PREFIX.exec(key)?.[2] ?? key);
    if (entry) notes[key] = entry.here;
  }
  for (const [name, value] of Object.entries(unknownOptions)) pythonProperties[name] = value;
  config.engineAlias = alias;
  config.deviceWorkers = deviceWorkers;
  config.unknownOptions = unknownOptions;
  config.pythonProperties = pythonProperties;
  return { config: deepFreeze(config) as ModelConfig, properties, sources, warnings, notes };
}
