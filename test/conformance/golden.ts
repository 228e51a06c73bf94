// Golden files of the committed test models (models/zoo/*, models/tiny-kjv), computed by Hugging Face
// transformers in fp32, and the list of model directories the conformance suite visits. A directory
// without weights or golden.json is reported with a reason, never silently dropped.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface GoldenCase {
  prompt: string;
  input_ids: number[];
  last_top20: { ids: number[]; logits: number[] };
  logsoftmax: Array<{ position: number; values: number[] }>;
  greedy: { max_new_tokens: number; ids: number[]; text: string };
}

export interface Golden {
  model: string;
  architecture: string;
  reference?: string;
  cases: GoldenCase[];
}

export interface ModelEntry {
  name: string;
  dir: string;
  config: Record<string, unknown> | null;
  golden: Golden | null;
  /** Why this model cannot be run (files missing); null when it can. */
  missing: string | null;
}

export const MODELS_ROOT = fileURLToPath(new URL("../../models/", import.meta.url));

export function listModels(): ModelEntry[] {
  const dirs: Array<[string, string]> = [["tiny-kjv", join(MODELS_ROOT, "tiny-kjv")]];
  const zoo = join(MODELS_ROOT, "zoo");
  if (existsSync(zoo)) for (const d of readdirSync(zoo).sort()) dirs.push([`zoo/${d}`, join(zoo, d)]);
  return dirs.map(([name, dir]) => {
    const need = ["config.json", "golden.json"];
    const lacking = need.filter((f) => !existsSync(join(dir, f)));
    if (
      !existsSync(join(dir, "model.safetensors")) &&
      !existsSync(join(dir, "model.safetensors.index.json"))
    ) {
      lacking.push("model.safetensors");
    }
    if (lacking.length > 0)
      return {
        name,
        dir,
        config: null,
        golden: null,
        missing: `model absent: no ${lacking.join(", ")} in ${dir}`,
      };
    return {
      name,
      dir,
      config: JSON.parse(readFileSync(join(dir, "config.json"), "utf8")),
      golden: JSON.parse(readFileSync(join(dir, "golden.json"), "utf8")) as Golden,
      missing: null,
    };
  });
}
