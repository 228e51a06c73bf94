// Loads a model directory into a ready ForwardPass: config -> spec, safetensors -> weights, KV cache
// sized by the engine's block count. Owns the choice of math backend (WASM SIMD by default, TS
// reference on request) and of the forward group size.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ForwardPass, scratchFloatsFor } from "./forward.ts";
import type { BackendName } from "./kernels/math-backend.ts";
import { KvCache } from "./kv-cache.ts";
import { type ModelSpec, parseModelSpec } from "./model-config.ts";
import { loadWeights, type ModelWeights, type WeightDtype } from "./weights.ts";

export interface LoadedModel {
  spec: ModelSpec;
  weights: ModelWeights;
  dtype: WeightDtype;
  /** Logit vector length (rows of the LM head; may exceed config vocab_size when padded). */
  vocab: number;
}

export interface LoadOptions {
  dtype?: WeightDtype;
  backend?: BackendName;
  /** Rows per forward group (activation scratch is sized for this). */
  maxGroupTokens?: number;
}

export const DEFAULT_GROUP_TOKENS = 128;

export function readConfig(modelDir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
}

/** The dtype the checkpoint was saved in (config torch_dtype / dtype), used when none is asked for. */
export function checkpointDtype(cfg: Record<string, unknown>): WeightDtype {
  const d = cfg.torch_dtype ?? cfg.dtype;
  if (d === "bfloat16") return "bf16";
  if (d === "float16") return "fp16";
  return "fp32";
}

export function loadModel(modelDir: string, opts: LoadOptions = {}): LoadedModel {
  const cfg = readConfig(modelDir);
  const spec = parseModelSpec(cfg);
  const dtype = opts.dtype ?? checkpointDtype(cfg);
  const groupTokens = opts.maxGroupTokens ?? DEFAULT_GROUP_TOKENS;
  // The head may be padded past vocab_size; reserve for the larger of the two.
  const scratch = scratchFloatsFor(spec, groupTokens, spec.vocabSize + 1024);
  const weights = loadWeights(modelDir, spec, {
    dtype,
    backend: opts.backend ?? "wasm",
    scratchFloats: scratch,
  });
  return { spec, weights, dtype, vocab: weights.lmHead.out };
}

export function createForward(
  m: LoadedModel,
  numBlocks: number,
  blockSize: number,
  numScratchBlocks: number,
  maxGroupTokens = DEFAULT_GROUP_TOKENS,
): ForwardPass {
  const kv = new KvCache(
    m.spec.numLayers,
    numBlocks,
    blockSize,
    m.spec.numKvHeads,
    m.spec.headDim,
    numScratchBlocks,
  );
  return new ForwardPass(m.spec, m.weights, kv, maxGroupTokens);
}
