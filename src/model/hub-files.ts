// Which files of a hub repo serving needs: config, tokenizer, generation config, chat template,
// custom code and serving files at the repo root, plus one weight format — safetensors when the
// repo has them, else PyTorch .bin. Other formats (ONNX, TF, Flax, GGUF, subfolders such as
// original/ or onnx/) are skipped: serving never reads them and they can be many GB.

const EXACT = new Set([
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "vocab.txt",
  "merges.txt",
  "spiece.model",
  "chat_template.json",
  "chat_template.jinja",
  "preprocessor_config.json",
  "processor_config.json",
  "adapter_config.json",
  "params.json",
  "serving.properties",
  "requirements.txt",
]);

function isSafetensors(p: string): boolean {
  return p.endsWith(".safetensors") || p.endsWith(".safetensors.index.json");
}

function isPytorchBin(p: string): boolean {
  return (
    /^(pytorch_model|adapter_model|model)(-\d+-of-\d+)?\.bin$/.test(p) || p === "pytorch_model.bin.index.json"
  );
}

/** Picks the repo-root paths to download from a recursive listing of repo files. */
export function selectServingFiles(paths: readonly string[]): string[] {
  const root = paths.filter((p) => !p.includes("/"));
  const hasSafetensors = root.some((p) => p.endsWith(".safetensors"));
  return root.filter((p) => {
    if (EXACT.has(p) || p.endsWith(".py") || p.endsWith(".tiktoken")) return true;
    return hasSafetensors ? isSafetensors(p) : isPytorchBin(p);
  });
}
