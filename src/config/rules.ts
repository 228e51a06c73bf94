// Cross-key rules of a model's configuration (spec §1.6, §1.8, §1.9) and the runtimes this server lacks.
// Invariants: rules only read typed values; each problem starts with the source of the value that breaks
// the rule and names every key involved; the few rewrites LMI performs (lmi-dist's int8 -> bitsandbytes)
// are applied in place with a source that says so.
import type { EngineAlias } from "./engine.ts";
import type { Resolved } from "./resolve.ts";

const MISSING_RUNTIME: Record<string, string> = {
  neuron: "the AWS Neuron runtime (Transformers-NeuronX on Inferentia/Trainium)",
  trtllm: "the NVIDIA TensorRT-LLM runtime",
};

const RUNTIME_ENTRY_POINTS: Array<[RegExp, string]> = [
  [/^djl_python\.transformers_neuronx/, "neuron"],
  [/^djl_python\.(tensorrt_llm|lmi_trtllm)/, "trtllm"],
];

export function applyModelRules(
  r: Resolved,
  alias: EngineAlias | undefined,
  problems: string[],
  warnings: string[],
) {
  const v = (key: string) => r.values.get(key);
  const src = (key: string) => r.sources.get(key) ?? "default";
  const set = (key: string) => r.explicit.has(key);
  /** Location of a rule that involves several keys: the first one the user set. */
  const at = (...keys: string[]) => src(keys.find(set) ?? keys[0]);
  const rb = v("option.rolling_batch") as string;
  const batchSize = v("batch_size") as number;

  if (batchSize > 1 && rb !== "disable") {
    problems.push(
      `${at("option.rolling_batch", "batch_size")}: option.rolling_batch=${rb} cannot be combined with batch_size=${batchSize} ` +
        `(${src("batch_size")}): dynamic batching and rolling batch are exclusive; set option.rolling_batch=disable or batch_size=1`,
    );
  }
  const streaming = v("option.enable_streaming");
  if (streaming !== false && batchSize > 1 && rb === "disable") {
    problems.push(
      `${at("option.enable_streaming", "batch_size")}: option.enable_streaming=${streaming} with batch_size=${batchSize}: ` +
        "we cannot enable streaming for dynamic batching; set batch_size=1",
    );
  }
  if (rb in MISSING_RUNTIME) {
    problems.push(
      `${src("option.rolling_batch")}: option.rolling_batch=${rb} needs ${MISSING_RUNTIME[rb]}, which is not ` +
        "available in this server; use auto, vllm, lmi-dist, scheduler or disable",
    );
  }
  const entryPoint = v("option.entryPoint") as string | undefined;
  for (const [pattern, runtime] of RUNTIME_ENTRY_POINTS) {
    if (entryPoint && pattern.test(entryPoint)) {
      problems.push(
        `${src("option.entryPoint")}: option.entryPoint=${entryPoint} needs ${MISSING_RUNTIME[runtime]}, which is ` +
          "not available in this server; use djl_python.huggingface",
      );
    }
  }
  if (entryPoint === "djl_python.deepspeed" && !["auto", "deepspeed", "disable"].includes(rb)) {
    problems.push(
      `${at("option.rolling_batch", "option.entryPoint")}: option.rolling_batch=${rb} is not valid with the DeepSpeed handler ` +
        `(option.entryPoint=djl_python.deepspeed, ${src("option.entryPoint")}); use auto, deepspeed or disable`,
    );
  }
  if (rb === "vllm" && alias !== undefined) {
    problems.push(
      `${src("engine")}: option.rolling_batch=vllm needs engine=Python, not engine=${alias} ` +
        "(vLLM does not run under MPI)",
    );
  }
  if (rb === "lmi-dist") lmiDistRules(r, problems);
  if (entryPoint === "djl_python.deepspeed") deepSpeedQuantize(r, warnings);

  const modelId = v("option.model_id") as string | undefined;
  if (modelId?.startsWith("djl://")) {
    problems.push(
      `${src("option.model_id")}: option.model_id=${modelId}: DJL model zoo URLs are not supported here; ` +
        "use a Hugging Face hub id, an s3:// URL or a local path",
    );
  }
  if (set("option.checkpoint") && !set("option.dtype")) {
    problems.push(
      `${src("option.checkpoint")}: option.checkpoint requires option.dtype to be set (the checkpoint's data type)`,
    );
  }
  if (v("option.quantize") === "smoothquant" && v("option.dtype") === "bf16") {
    problems.push(
      `${at("option.quantize", "option.dtype")}: option.quantize=smoothquant does not support option.dtype=bf16`,
    );
  }
  const minW = v("minWorkers") as number;
  const maxW = v("maxWorkers") as number;
  if (minW > maxW) {
    problems.push(
      `${at("minWorkers", "maxWorkers")}: minWorkers=${minW} is larger than maxWorkers=${maxW} (${src("maxWorkers")})`,
    );
  }
}

function lmiDistRules(r: Resolved, problems: string[]): void {
  const v = (key: string) => r.values.get(key);
  const src = (key: string) => r.sources.get(key) ?? "default";
  const at = (...keys: string[]) => src(keys.find((k) => r.explicit.has(k)) ?? keys[0]);
  const tp = v("option.tensor_parallel_degree");
  if (tp !== 1 && v("option.mpi_mode") !== true) {
    problems.push(
      `${at("option.tensor_parallel_degree", "option.rolling_batch")}: option.tensor_parallel_degree=${tp} with option.rolling_batch=lmi-dist ` +
        "needs option.mpi_mode=true (use engine=MPI)",
    );
  }
  const quantize = v("option.quantize") as string | undefined;
  if (r.explicit.has("option.dtype") && quantize !== undefined) {
    problems.push(
      `${src("option.quantize")}: option.quantize=${quantize} and option.dtype=${v("option.dtype")} ` +
        `(${src("option.dtype")}) are both set; lmi-dist accepts only one of them`,
    );
    return;
  }
  if (quantize !== undefined && !["bitsandbytes", "bitsandbytes8", "gptq", "awq"].includes(quantize)) {
    problems.push(
      `${src("option.quantize")}: option.quantize=${quantize} is not supported by lmi-dist; ` +
        "allowed: bitsandbytes, bitsandbytes8, gptq, awq",
    );
    return;
  }
  if (quantize === "bitsandbytes8") {
    r.values.set("option.quantize", "bitsandbytes");
    r.sources.set(
      "option.quantize",
      `${src("option.quantize")} (bitsandbytes8 is bitsandbytes for lmi-dist)`,
    );
  }
  if (quantize === undefined && v("option.dtype") === "int8") {
    r.values.set("option.quantize", "bitsandbytes");
    r.sources.set("option.quantize", `implied by option.dtype=int8 with lmi-dist (${src("option.dtype")})`);
    r.explicit.add("option.quantize");
  }
}

function deepSpeedQuantize(r: Resolved, warnings: string[]): void {
  const quantize = r.values.get("option.quantize") as string | undefined;
  if (quantize !== undefined && quantize !== "dynamic_int8" && quantize !== "smoothquant") {
    warnings.push(
      `${r.sources.get("option.quantize")}: option.quantize=${quantize} is ignored by the DeepSpeed handler ` +
        "(it supports dynamic_int8 and smoothquant)",
    );
    r.values.delete("option.quantize");
    r.sources.delete("option.quantize");
    r.explicit.delete("option.quantize");
  }
}
