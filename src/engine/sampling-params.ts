// Parses the `parameters` object of a generation request (spec §3.2) into GenerationParams.
// Accepts the LMI/TGI names and the vLLM extras; every bad value throws a ValidationError whose
// message names the field (TGI style); unknown names become warnings (LMI logs and drops them).
// Strategy: do_sample=true forces "sample"; else decoding_strategy; else do_sample=false -> greedy;
// else the server default. temperature=0 always means greedy (vLLM/OpenAI semantics).

import { ValidationError } from "../errors.ts";
import type { DecodingStrategy, GenerationParams } from "./protocol.ts";

export interface ParameterDefaults {
  /** option.decoding_strategy (default "greedy"). */
  strategy?: DecodingStrategy;
  /** Default max_new_tokens (LMI rolling batch: 30). */
  maxNewTokens?: number;
}

export interface ValidatedParameters {
  params: GenerationParams;
  warnings: string[];
}

/** Most top alternatives per token (vLLM's max_logprobs default). */
export const MAX_TOP_N_TOKENS = 20;
/** HF/LMI scheduler defaults for contrastive search. */
export const CONTRASTIVE_DEFAULT_TOP_K = 4;
export const CONTRASTIVE_DEFAULT_PENALTY_ALPHA = 0.6;

// Names accepted and deliberately ignored: they change nothing in this engine.
const IGNORED = new Set([
  "stream",
  "spaces_between_special_tokens",
  "use_lru_kv_cache",
  "length_penalty",
  "early_stopping",
  "output_formatter",
  "watermark",
]);

const KNOWN = new Set([
  "max_new_tokens",
  "do_sample",
  "decoding_strategy",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "min_p",
  "repetition_penalty",
  "presence_penalty",
  "frequency_penalty",
  "logit_bias",
  "seed",
  "stop_sequences",
  "stop",
  "stop_token_ids",
  "include_stop_str_in_output",
  "ignore_eos_token",
  "ignore_eos",
  "min_new_tokens",
  "min_tokens",
  "details",
  "decoder_input_details",
  "prompt_logprobs",
  "top_n_tokens",
  "logprobs",
  "return_full_text",
  "penalty_alpha",
  "skip_special_tokens",
  "truncate",
  "best_of",
  "n",
  "num_beams",
]);

type Raw = Record<string, unknown>;

export function validateParameters(raw: unknown, defaults: ParameterDefaults = {}): ValidatedParameters {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ValidationError("`parameters` must be a JSON object", "parameters");
  }
  const p = raw as Raw;
  const warnings: string[] = [];
  const unknown = Object.keys(p).filter((k) => !KNOWN.has(k) && !IGNORED.has(k));
  if (unknown.length > 0) {
    warnings.push(
      `The following parameters are not supported with rolling batch and are ignored: ${unknown.join(", ")}`,
    );
  }

  const maxNewTokens = int(p, "max_new_tokens", { min: 1 }) ?? defaults.maxNewTokens ?? 30;
  const doSample = bool(p, "do_sample");
  const declared = oneOf(p, "decoding_strategy", ["greedy", "sample", "contrastive"] as const);
  let temperature = num(p, "temperature", { min: 0, max: 100 }) ?? 1.0;
  let strategy: DecodingStrategy =
    doSample === true
      ? "sample"
      : (declared ?? (doSample === false ? "greedy" : (defaults.strategy ?? "greedy")));
  if (temperature === 0) {
    if (strategy === "sample") warnings.push("`temperature` is 0, so decoding is greedy");
    if (strategy !== "contrastive") strategy = "greedy";
    temperature = 1.0;
  }

  // vLLM spells "disabled" as -1; LMI/TGI as 0.
  let topK = int(p, "top_k", { min: -1 }) ?? 0;
  if (topK < 0) topK = 0;
  let penaltyAlpha = num(p, "penalty_alpha", { min: 0, max: 1 }) ?? 0;
  if (strategy === "contrastive") {
    if (p.top_k === undefined) topK = CONTRASTIVE_DEFAULT_TOP_K;
    if (topK < 1) throw new ValidationError("`top_k` must be >= 1 for contrastive search", "top_k");
    if (p.penalty_alpha === undefined) penaltyAlpha = CONTRASTIVE_DEFAULT_PENALTY_ALPHA;
  }

  const stopSequences = [...strings(p, "stop_sequences"), ...strings(p, "stop")];
  const logprobsN = int(p, "logprobs", { min: 0, max: MAX_TOP_N_TOKENS });
  const topNTokens = Math.max(int(p, "top_n_tokens", { min: 0, max: MAX_TOP_N_TOKENS }) ?? 0, logprobsN ?? 0);
  const minNewTokens = int(p, "min_new_tokens", { min: 0 }) ?? int(p, "min_tokens", { min: 0 }) ?? 0;
  if (minNewTokens > maxNewTokens) {
    const field = p.min_new_tokens !== undefined ? "min_new_tokens" : "min_tokens";
    throw new ValidationError(
      `\`${field}\` must be <= \`max_new_tokens\` (${maxNewTokens}), got ${minNewTokens}`,
      field,
    );
  }
  for (const field of ["best_of", "n", "num_beams"]) {
    const v = int(p, field, { min: 1 });
    if (v !== undefined && v > 1) {
      throw new ValidationError(`\`${field}\` > 1 is not supported by this engine, got ${v}`, field);
    }
  }
  const promptLogprobs = int(p, "prompt_logprobs", { min: 0, max: MAX_TOP_N_TOKENS });

  const params: GenerationParams = {
    maxNewTokens,
    strategy,
    temperature,
    topK,
    topP: num(p, "top_p", { min: 0, max: 1, minExclusive: true }) ?? 1.0,
    typicalP: num(p, "typical_p", { min: 0, max: 1, minExclusive: true }) ?? 1.0,
    minP: num(p, "min_p", { min: 0, max: 1 }) ?? 0,
    repetitionPenalty: num(p, "repetition_penalty", { min: 0, minExclusive: true, max: 100 }) ?? 1.0,
    presencePenalty: num(p, "presence_penalty", { min: -2, max: 2 }) ?? 0,
    frequencyPenalty: num(p, "frequency_penalty", { min: -2, max: 2 }) ?? 0,
    logitBias: logitBias(p),
    seed: int(p, "seed", { min: 0, max: Number.MAX_SAFE_INTEGER }) ?? null,
    stopSequences,
    stopTokenIds: intList(p, "stop_token_ids"),
    includeStopStrInOutput: bool(p, "include_stop_str_in_output") ?? false,
    ignoreEos: bool(p, "ignore_eos_token") ?? bool(p, "ignore_eos") ?? false,
    minNewTokens,
    details: bool(p, "details") ?? false,
    decoderInputDetails: (bool(p, "decoder_input_details") ?? false) || (promptLogprobs ?? 0) > 0,
    topNTokens,
    returnFullText: bool(p, "return_full_text") ?? false,
    penaltyAlpha,
    skipSpecialTokens: bool(p, "skip_special_tokens") ?? true,
    truncate: int(p, "truncate", { min: 1 }) ?? null,
  };
  return { params, warnings };
}

function present(p: Raw, field: string): boolean {
  return p[field] !== undefined && p[field] !== null;
}

function describe(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v) ?? v);
}

interface Range {
  min?: number;
  max?: number;
  minExclusive?: boolean;
}

function num(p: Raw, field: string, r: Range): number | undefined {
  if (!present(p, field)) return undefined;
  const v = p[field];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ValidationError(`\`${field}\` must be a number, got ${describe(v)}`, field);
  }
  const lowOk = r.min === undefined || (r.minExclusive ? v > r.min : v >= r.min);
  const highOk = r.max === undefined || v <= r.max;
  if (!lowOk || !highOk) {
    const low = r.min === undefined ? "" : `${r.minExclusive ? "> " : ">= "}${fmt(r.min)}`;
    const high = r.max === undefined ? "" : `<= ${fmt(r.max)}`;
    const both = low && high ? `${low} and ${high}` : low || high;
    throw new ValidationError(`\`${field}\` must be ${both}, got ${v}`, field);
  }
  return v;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? n.toFixed(1) : String(n);
}

function int(p: Raw, field: string, r: { min?: number; max?: number }): number | undefined {
  if (!present(p, field)) return undefined;
  const v = p[field];
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ValidationError(`\`${field}\` must be an integer, got ${describe(v)}`, field);
  }
  if (r.min !== undefined && v < r.min)
    throw new ValidationError(`\`${field}\` must be >= ${r.min}, got ${v}`, field);
  if (r.max !== undefined && v > r.max)
    throw new ValidationError(`\`${field}\` must be <= ${r.max}, got ${v}`, field);
  return v;
}

function bool(p: Raw, field: string): boolean | undefined {
  if (!present(p, field)) return undefined;
  const v = p[field];
  if (typeof v !== "boolean")
    throw new ValidationError(`\`${field}\` must be true or false, got ${describe(v)}`, field);
  return v;
}

function oneOf<T extends string>(p: Raw, field: string, values: readonly T[]): T | undefined {
  if (!present(p, field)) return undefined;
  const v = p[field];
  if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
    throw new ValidationError(`\`${field}\` must be one of ${values.join(", ")}, got ${describe(v)}`, field);
  }
  return v as T;
}

/** A string or a list of non-empty strings. */
function strings(p: Raw, field: string): string[] {
  if (!present(p, field)) return [];
  const v = p[field];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw new ValidationError(
      `\`${field}\` must be a string or a list of strings, got ${describe(v)}`,
      field,
    );
  }
  if (list.some((s) => s.length === 0))
    throw new ValidationError(`\`${field}\` must not contain empty strings`, field);
  return list;
}

function intList(p: Raw, field: string): number[] {
  if (!present(p, field)) return [];
  const v = p[field];
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0)) {
    throw new ValidationError(
      `\`${field}\` must be a list of non-negative integers, got ${describe(v)}`,
      field,
    );
  }
  return v as number[];
}

function logitBias(p: Raw): Record<number, number> {
  if (!present(p, "logit_bias")) return {};
  const v = p.logit_bias;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new ValidationError("`logit_bias` must be an object mapping token ids to numbers", "logit_bias");
  }
  const out: Record<number, number> = {};
  for (const [k, bias] of Object.entries(v as Raw)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || !Number.isSafeInteger(id)) {
      throw new ValidationError(
        `\`logit_bias\` keys must be token ids, got ${JSON.stringify(k)}`,
        "logit_bias",
      );
    }
    if (typeof bias !== "number" || !(bias >= -100 && bias <= 100)) {
      throw new ValidationError(
        `\`logit_bias\` values must be >= -100.0 and <= 100.0, got ${describe(bias)}`,
        "logit_bias",
      );
    }
    out[id] = bias;
  }
  return out;
}
