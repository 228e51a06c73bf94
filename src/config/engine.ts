// Engine selection on raw model properties, before anything else is parsed (spec §1.1, §1.7):
// inference of `engine` when unset, the aliases (DeepSpeed, FasterTransformer, MPI -> Python + mpi_mode +
// entry point), and the entry point DJL would pick when option.entryPoint is unset.
// Invariants: after applyEngineRules, raw `engine` is "Python" or absent-with-a-problem; every value it
// writes carries a source saying why; Java-only engines are rejected with a message naming the engine.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { RawProps } from "./resolve.ts";

export type EngineAlias = "DeepSpeed" | "FasterTransformer" | "MPI";

const ALIAS_ENTRY_POINT: Record<EngineAlias, string> = {
  DeepSpeed: "djl_python.deepspeed",
  FasterTransformer: "djl_python.fastertransformer",
  MPI: "djl_python.huggingface",
};

/** DJL's Java engines: valid in DJL Serving, but this server runs LLMs on the Python-compatible path only. */
const JAVA_ENGINES = [
  "PyTorch",
  "TensorFlow",
  "OnnxRuntime",
  "MXNet",
  "XGBoost",
  "LightGBM",
  "TritonServer",
  "TensorRT",
  "Rust",
  "FastText",
  "PaddlePaddle",
  "TFLite",
  "Ml",
];

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** DJL's ModelInfo.inferEngine order; returns the engine and why, or undefined when nothing matches. */
function inferEngine(
  modelDir: string | undefined,
  raw: RawProps,
): { engine: string; reason: string; location?: string } | undefined {
  // A djl:// model zoo id (DJL would pick the zoo's engine) is reported by the model_id rule instead.
  const modelId = raw.get("option.model_id")?.raw.trim();
  if (modelDir !== undefined) {
    const files = listDir(modelDir);
    const has = (pred: (f: string) => boolean) => files.find(pred);
    if (isDir(join(modelDir, "MAR-INF")))
      return { engine: "Python", reason: "MAR-INF directory in the model dir" };
    const checks: Array<[string, (f: string) => boolean]> = [
      ["PyTorch", (f) => f.endsWith(".pt")],
      ["TritonServer", (f) => f === "config.pbtxt"],
      ["TensorFlow", (f) => f === "saved_model.pb"],
      ["OnnxRuntime", (f) => f.endsWith(".onnx")],
      ["XGBoost", (f) => f.endsWith(".xgb") || f.endsWith(".bst")],
    ];
    for (const [engine, pred] of checks) {
      const file = has(pred);
      if (file) return { engine, reason: `${file} in the model dir`, location: modelDir };
    }
    if (files.includes("model.py")) return { engine: "Python", reason: "model.py in the model dir" };
  }
  if (modelId) return { engine: "Python", reason: "option.model_id is set" };
  if (modelDir !== undefined && existsSync(join(modelDir, "config.json"))) {
    return { engine: "Python", reason: "config.json in the model dir" };
  }
  return undefined;
}

export interface EngineOutcome {
  alias: EngineAlias | undefined;
}

/**
 * Fills or rewrites `engine`, `option.mpi_mode` and `option.entryPoint` in `raw`. Problems and warnings
 * are appended. `modelDir` is where model.py / config.json are looked for.
 */
export function applyEngineRules(
  raw: RawProps,
  modelDir: string | undefined,
  env: Readonly<Record<string, string>>,
  problems: string[],
  warnings: string[],
): EngineOutcome {
  let engine = raw.get("engine");
  let location = engine?.source;
  if (engine === undefined) {
    const inferred = inferEngine(modelDir, raw);
    if (inferred) {
      engine = { raw: inferred.engine, source: `inferred: ${inferred.reason}` };
      location = inferred.location;
    } else if (modelDir !== undefined) {
      problems.push(
        `${modelDir}: cannot infer the engine: no model.py, config.json or option.model_id; ` +
          "set engine=Python in serving.properties or OPTION_MODEL_ID in the environment",
      );
      return { alias: undefined };
    } else {
      engine = { raw: "Python", source: "default" };
    }
    raw.set("engine", engine);
  }
  const name = engine.raw.trim();
  const java = JAVA_ENGINES.find((e) => e.toLowerCase() === name.toLowerCase());
  if (java !== undefined) {
    problems.push(
      `${location ?? engine.source}: engine: "${name}" (${engine.source}) is a DJL Java engine, which this server does not include; ` +
        "it serves models through engine=Python (or its aliases MPI, DeepSpeed, FasterTransformer)",
    );
    raw.delete("engine"); // reported once; the rest of the configuration is still checked as Python
    return { alias: undefined };
  }
  const aliases: EngineAlias[] = ["DeepSpeed", "FasterTransformer", "MPI"];
  const alias = aliases.find((a) => a.toLowerCase() === name.toLowerCase());
  if (alias !== undefined) {
    const because = `alias of engine=${alias}`;
    raw.set("engine", { raw: "Python", source: `${engine.source} (${because})` });
    const mpi = raw.get("option.mpi_mode");
    if (mpi !== undefined && mpi.raw.trim().toLowerCase() !== "true") {
      warnings.push(
        `${mpi.source}: option.mpi_mode=${mpi.raw.trim()} is overridden: engine=${alias} forces mpi_mode=true`,
      );
    }
    raw.set("option.mpi_mode", { raw: "true", source: because });
  }
  resolveEntryPoint(raw, modelDir, env, alias);
  return { alias };
}

/** The entry point DJL's PyModel.load would pick when option.entryPoint is unset (spec §1.7, classic). */
function resolveEntryPoint(
  raw: RawProps,
  modelDir: string | undefined,
  env: Readonly<Record<string, string>>,
  alias: EngineAlias | undefined,
): void {
  if (raw.has("option.entryPoint")) return;
  const hasFile = (name: string) => modelDir !== undefined && existsSync(join(modelDir, name));
  let pick: [string, string] | undefined;
  if (env.DJL_ENTRY_POINT) pick = [env.DJL_ENTRY_POINT, "env DJL_ENTRY_POINT"];
  else if (hasFile("model.py")) pick = ["model.py", "model.py in the model dir"];
  else if (alias !== undefined) pick = [ALIAS_ENTRY_POINT[alias], `alias of engine=${alias}`];
  else if (raw.has("option.model_id")) pick = ["djl_python.huggingface", "option.model_id is set"];
  else if (hasFile("config.json")) pick = ["djl_python.huggingface", "config.json in the model dir"];
  if (pick) raw.set("option.entryPoint", { raw: pick[0], source: pick[1] });
}
