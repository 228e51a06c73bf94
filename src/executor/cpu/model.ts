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
  /** KV cache budget reserved in backend memory at load; initCache may use up to this. Default 16 MiB. */
  kvCacheBytes?: number;
  /** KV blocks past the budget kept for the executor's own use (contrastive look-ahead). */
  numScratchBlocks?: number;
  blockSize?: number;
  /** Threads for large matmuls (WASM backend): 1 (default) or 2. See bench/cpu-tokens.ts --threads. */
  threads?: number;
}

// The KV region is reserved once per loaded model; every KV cache over these weights reuses it.
const kvRegionOf = new WeakMap<ModelWeights, Float32Array>();

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
  const slotWidth = spec.numKvHeads * spec.headDim;
  const bs = opts.blockSize ?? 16;
  const kvBudget = opts.kvCacheBytes ?? 16 << 20;
  const blocks = Math.floor(
    kvBudget / KvCache.bytesPerBlock(spec.numLayers, bs, spec.numKvHeads, spec.headDim),
  );
  const kvFloats = KvCache.floatsNeeded(spec.numLayers, blocks, bs, slotWidth, opts.numScratchBlocks ?? 0);
  // The head may be padded past vocab_size; reserve for the larger of the two.
  const scratch = scratchFloatsFor(spec, groupTokens, spec.vocabSize + 1024) + kvFloats;
  const weights = loadWeights(modelDir, spec, {
    dtype,
    backend: opts.backend ?? "wasm",
    scratchFloats: scratch,
    threads: opts.threads,
  });
  kvRegionOf.set(weights, weights.backend.alloc(kvFloats));
  return { spec, weights, dtype, vocab: weights.lmHead.out };
}

export function createForward(
  m: LoadedModel,
  numBlocks: number,
  blockSize: number,
  numScratchBlocks: number,
  maxGroupTokens = DEFAULT_GROUP_TOKENS,
): ForwardPass {
  const region = kvRegionOf.get(m.weights)!;
  const { numLayers, numKvHeads, headDim } = m.spec;
  const kv = new KvCache(numLayers, numBlocks, blockSize, numKvHeads, headDim, numScratchBlocks, region);
  return new ForwardPass(m.spec, m.weights, kv, maxGroupTokens);
}
