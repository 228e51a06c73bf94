import assert from "node:assert/strict";
import { test } from "node:test";
import { selectServingFiles } from "./hub-files.ts";

const COMMON = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
];

test("safetensors win over .bin when both exist; other formats and subfolders are skipped", () => {
  const repo = [
    ...COMMON,
    "README.md",
    ".gitattributes",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model.bin.index.json",
    "model.onnx",
    "tf_model.h5",
    "flax_model.msgpack",
    "original/consolidated.00.pth",
    "onnx/model.onnx",
    "chat_template.jinja",
    "modeling_custom.py",
  ];
  assert.deepEqual(
    selectServingFiles(repo).sort(),
    [
      ...COMMON,
      "chat_template.jinja",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "modeling_custom.py",
    ].sort(),
  );
});

test(".bin weights are taken when there are no safetensors", () => {
  const repo = [...COMMON, "pytorch_model.bin", "training_args.bin", "vocab.json", "merges.txt"];
  assert.deepEqual(
    selectServingFiles(repo).sort(),
    [...COMMON, "merges.txt", "pytorch_model.bin", "vocab.json"].sort(),
  );
});
