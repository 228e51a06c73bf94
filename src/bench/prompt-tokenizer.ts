// Adapts the model's own tokenizer (src/tokenizer, tokenizer.json in a model folder) to what prompt
// building needs. Prompt lengths are counted without special tokens, as vLLM's benchmark counts them;
// a server that prepends BOS therefore sees one more prompt token than the result file records.

import { HfTokenizer } from "../tokenizer/tokenizer.ts";
import type { PromptTokenizer } from "./datasets.ts";
import { BenchError } from "./errors.ts";

export function loadPromptTokenizer(modelDir: string): PromptTokenizer {
  let tok: HfTokenizer;
  try {
    tok = HfTokenizer.fromDir(modelDir);
  } catch (err) {
    throw new BenchError(
      `cannot load a tokenizer from ${modelDir}: ${(err as Error).message}`,
      "--tokenizer",
    );
  }
  return {
    vocabSize: tok.vocabSize,
    isSpecial: (id) => tok.isSpecial(id),
    encode: (text) => tok.encode(text, false),
    decode: (ids) => tok.decode(ids),
  };
}
