# Writes a model folder for serving a Llama-3-8B-shaped model with dummy weights (option.load_format=dummy):
# config.json with Llama-3-8B's shape, serving.properties, and a synthetic 128,256-entry word-level
# tokenizer (the GPU machine has no Llama-3 tokenizer and cannot download one; benchmarks send token ids).
# Usage: python3 scripts/gpu/make-dummy-model-dir.py OUT_DIR [key=value serving.properties overrides...]
#   config.KEY=VALUE changes config.json instead (VALUE as JSON), e.g. Llama-3.2-1B's shape: config.hidden_size=2048
#   config.intermediate_size=8192 config.num_hidden_layers=16 config.head_dim=64 config.tie_word_embeddings=true
import json
import os
import sys

LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
             "tie_word_embeddings": False, "eos_token_id": 128001, "bos_token_id": 128000, "torch_dtype": "bfloat16"}


def main(out: str, overrides: list) -> None:
    os.makedirs(out, exist_ok=True)
    config = dict(LLAMA3_8B)
    for kv in [o for o in overrides if o.startswith("config.")]:
        k, _, v = kv.partition("=")
        config[k[len("config."):]] = json.loads(v)
    overrides = [o for o in overrides if not o.startswith("config.")]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)
    vocab = {f"w{i}": i for i in range(LLAMA3_8B["vocab_size"])}
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 128000, "content": "w128000", "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True},
                            {"id": 128001, "content": "w128001", "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True}],
           "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None,
           "decoder": None, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}}
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "w128000", "eos_token": "w128001", "tokenizer_class": "PreTrainedTokenizerFast"}, f)
    props = {"engine": "Python", "option.rolling_batch": "lmi-dist", "option.load_format": "dummy",
             "option.dtype": "bf16", "option.max_model_len": "4096", "option.max_rolling_batch_size": "256",
             "option.max_rolling_batch_prefill_tokens": "8192", "option.gpu_memory_utilization": "0.9"}
    for kv in overrides:
        k, _, v = kv.partition("=")
        props[k] = v
    with open(os.path.join(out, "serving.properties"), "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
