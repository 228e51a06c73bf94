// Deprecated LMI keys and the keys that replaced them. Part of the one schema table (schema/index.ts).
// Invariant: a deprecated key never reaches the typed config; it is rewritten onto its replacement (with a
// warning) unless the replacement is set too, in which case the replacement wins (also with a warning).
import type { DeprecatedDef } from "./types.ts";

function boolTo(value: string): (raw: string) => { value: string | undefined } | { error: string } {
  return (raw) => {
    const v = raw.trim().toLowerCase();
    if (v === "true") return { value };
    if (v === "false") return { value: undefined };
    return { error: "expected true or false (any case)" };
  };
}

const same = (raw: string) => ({ value: raw });

export const DEPRECATED_KEYS: readonly DeprecatedDef[] = [
  {
    key: "option.s3url",
    scope: "model",
    replacement: "option.model_id",
    backends: ["all"],
    description: "Deprecated (≤0.26): S3 prefix of the model; use option.model_id=s3://...",
    here: "rewritten to option.model_id",
    map: same,
  },
  {
    key: "option.data_type",
    scope: "model",
    replacement: "option.dtype",
    backends: ["all"],
    description: "Deprecated: old name of option.dtype.",
    here: "rewritten to option.dtype",
    map: same,
  },
  {
    key: "option.load_in_8bit",
    scope: "model",
    replacement: "option.quantize",
    backends: ["huggingface", "neuron"],
    description: "Deprecated (0.25): true means option.quantize=bitsandbytes8.",
    here: "true is rewritten to option.quantize=bitsandbytes8 (weight-only int8 in the GPU executor)",
    map: boolTo("bitsandbytes8"),
  },
  {
    key: "option.load_in_4bit",
    scope: "model",
    replacement: "option.quantize",
    backends: ["huggingface"],
    description: "Deprecated (0.25): true means option.quantize=bitsandbytes4.",
    here: "true is rewritten to option.quantize=bitsandbytes4 (weight-only int4 in the GPU executor)",
    map: boolTo("bitsandbytes4"),
  },
  {
    key: "max_dynamic_batch_size",
    scope: "model",
    replacement: "batch_size",
    backends: ["server"],
    description: "Older name of batch_size.",
    here: "rewritten to batch_size",
    map: same,
  },
];
