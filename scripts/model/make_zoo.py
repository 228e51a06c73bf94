"""Builds models/zoo/<family>: one tiny random-weight checkpoint per architecture the executors
support, with config.json written in the field names that real Hugging Face checkpoints of that
family carry (rope_theta, torch_dtype, rotary_pct, n_embd, ...), the tiny-kjv tokenizer (so ids
match), and weights drawn from a fixed seed. golden.py then computes each model's golden.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import torch

# Shared shape: vocab of the tiny-kjv tokenizer; 2 layers, hidden 64, 4 query heads, 2 KV heads.
V, H, L, NH, NKV = 4096, 64, 2, 4, 2
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2
COMMON = {"vocab_size": V, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "use_cache": True,
          "initializer_range": 0.02}

# family -> (config.json body, storage dtype). Tied-embedding families fit in fp32 under 2 MB;
# untied ones are stored in bf16 (fp16 for GPT-NeoX, as Pythia ships).
FAMILIES: dict[str, tuple[dict, str]] = {
    # Llama 3 style: GQA, rope_theta 500000, untied lm_head.
    "llama": ({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
               "intermediate_size": 128, "num_hidden_layers": L, "num_attention_heads": NH,
               "num_key_value_heads": NKV, "head_dim": H // NH, "hidden_act": "silu",
               "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
               "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0,
               "mlp_bias": False, "pretraining_tp": 1, "tie_word_embeddings": False}, "bfloat16"),
    # Mistral 7B v0.1 style: sliding-window attention, here a window of 12 tokens, so prompts
    # longer than it (and KV blocks of 16) see the window.
    "mistral": ({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": H,
                 "intermediate_size": 128, "num_hidden_layers": L, "num_attention_heads": NH,
                 "num_key_value_heads": NKV, "hidden_act": "silu", "max_position_embeddings": 256,
                 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 12,
                 "attention_dropout": 0.0, "tie_word_embeddings": False}, "bfloat16"),
    # Qwen2.5 style: bias on q/k/v (implied by the family, no config field), tied embeddings,
    # sliding_window present but switched off by use_sliding_window.
    "qwen2": ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": H,
               "intermediate_size": 128, "num_hidden_layers": L, "num_attention_heads": NH,
               "num_key_value_heads": NKV, "hidden_act": "silu", "max_position_embeddings": 256,
               "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "use_sliding_window": False,
               "sliding_window": 4096, "max_window_layers": L, "attention_dropout": 0.0,
               "tie_word_embeddings": True}, "float32"),
    # Qwen3 style: RMSNorm on q and k per head, head_dim * heads != hidden_size, tied embeddings.
    "qwen3": ({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": H,
               "intermediate_size": 128, "num_hidden_layers": L, "num_attention_heads": NH,
               "num_key_value_heads": NKV, "head_dim": 32, "hidden_act": "silu",
               "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
               "rope_scaling": None, "attention_bias": False, "use_sliding_window": False,
               "sliding_window": None, "max_window_layers": L, "attention_dropout": 0.0,
               "tie_word_embeddings": True}, "float32"),
    # Phi-3 mini 4k style: fused qkv_proj and gate_up_proj, sliding_window 2047 (as shipped).
    "phi3": ({"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": H,
              "intermediate_size": 128, "num_hidden_layers": L, "num_attention_heads": NH,
              "num_key_value_heads": NKV, "hidden_act": "silu", "max_position_embeddings": 4096,
              "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "rope_scaling": None, "sliding_window": 2047, "attention_bias": False,
              "attention_dropout": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
              "pad_token_id": PAD_ID, "tie_word_embeddings": False}, "bfloat16"),
    # GPT-2: learned positions, LayerNorm, gelu_new, Conv1D weights ([in, out]), tied lm_head.
    "gpt2": ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": H, "n_layer": L,
              "n_head": NH, "n_inner": None, "n_positions": 256, "n_ctx": 256,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "attn_pdrop": 0.1,
              "embd_pdrop": 0.1, "resid_pdrop": 0.1, "scale_attn_weights": True,
              "tie_word_embeddings": True}, "float32"),
    # Pythia style: parallel residual, rotary on 25% of each head, fused interleaved qkv, biases.
    "gpt_neox": ({"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": H,
                  "intermediate_size": 4 * H, "num_hidden_layers": L, "num_attention_heads": NH,
                  "hidden_act": "gelu", "max_position_embeddings": 256, "layer_norm_eps": 1e-5,
                  "rotary_pct": 0.25, "rotary_emb_base": 10000, "use_parallel_residual": True,
                  "attention_dropout": 0.0, "hidden_dropout": 0.0, "classifier_dropout": 0.1,
                  "tie_word_embeddings": False}, "float16"),
    # Mixtral style: 4 experts, top-2 routing, untied.
    "mixtral": ({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": H,
                 "intermediate_size": 64, "num_hidden_layers": L, "num_attention_heads": NH,
                 "num_key_value_heads": NKV, "hidden_act": "silu", "max_position_embeddings": 256,
                 "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "sliding_window": None,
                 "num_local_experts": 4, "num_experts_per_tok": 2, "output_router_logits": False,
                 "router_aux_loss_coef": 0.02, "attention_dropout": 0.0,
                 "tie_word_embeddings": False}, "bfloat16"),
}

# Seeds found by `make_zoo.py --search 12` (each search starts at 1000 + 100 * the family's index
# and takes the first seed that clears the margins below on CPU float32) against golden.py's first
# prompt set (commit c0cc574). The chat prompt changed since; with the current prompts the smallest
# greedy gap is 0.0113 (mistral), which golden.py prints for every model.
SEEDS = {"llama": 1002, "mistral": 1108, "qwen2": 1200, "qwen3": 1300, "phi3": 1401, "gpt2": 1500,
         "gpt_neox": 1601, "mixtral": 1703}
EMB_STD = 1.0
MIN_GREEDY_GAP = 0.02
MIN_ROUTER_GAP = 0.003

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def init_weights(model: torch.nn.Module, seed: int, emb_std: float) -> None:
    """Fixed-seed weights that give well separated logits: matrices ~ N(0, 1/fan_in), MoE routers
    ~ N(0, 9/fan_in), embeddings (and lm_head) ~ N(0, emb_std), norm scales ~ 1 + N(0, 0.1), biases
    ~ N(0, 0.1). Norm scales and biases are not left at 1 and 0, so an executor that skips them
    fails the goldens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            if "embed" in name or "wte" in name or "wpe" in name or "lm_head" in name:
                w = torch.randn(shape, generator=g) * emb_std
            elif name.endswith(".gate.weight"):
                # MoE router: a wider spread keeps top-k routing far from ties.
                w = torch.randn(shape, generator=g) * 3.0 / shape[-1] ** 0.5
            elif leaf == "bias" or len(shape) == 1:
                is_norm = "norm" in name or ".ln_" in name or "layernorm" in name
                w = torch.randn(shape, generator=g) * 0.1 + (1.0 if (is_norm and leaf != "bias") else 0.0)
            else:
                # Linear weights are [out, in]; GPT-2 Conv1D weights are [in, out]; expert banks
                # are [..., out, in]: the fan-in is the last dim except for Conv1D.
                fan_in = shape[0] if ".c_" in name else shape[-1]
                w = torch.randn(shape, generator=g) / fan_in**0.5
            p.copy_(w.to(p.dtype))


def write_json(path: str, obj: dict) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def build(family: str, out_root: str, tokenizer_dir: str, seed: int, emb_std: float) -> str:
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    body, dtype_name = FAMILIES[family]
    cfg_json = {**body, **COMMON, "torch_dtype": dtype_name,
                "transformers_version": transformers.__version__}
    out = os.path.join(out_root, family)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    write_json(os.path.join(out, "config.json"), dict(sorted(cfg_json.items())))
    write_json(os.path.join(out, "generation_config.json"),
               {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
                "transformers_version": transformers.__version__})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(out, f))

    # Build from the config.json as written, so what transformers reads is what executors read.
    config = AutoConfig.from_pretrained(out)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    init_weights(model, seed, emb_std)
    if config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(DTYPES[dtype_name])
    tmp = out + ".save"
    model.save_pretrained(tmp)
    shutil.move(os.path.join(tmp, "model.safetensors"), os.path.join(out, "model.safetensors"))
    shutil.rmtree(tmp)
    return out


def margins(model_dir: str) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import golden

    return golden.compute(model_dir, torch.device("cpu"))[1]


def search(fam: str, args: argparse.Namespace) -> int:
    """First seed whose greedy continuations (and MoE routing) stay clear of near-ties, so that
    float-order differences between executors cannot flip a greedy token or an expert choice."""
    start = 1000 + 100 * list(FAMILIES).index(fam)
    for seed in range(start, start + args.search):
        out = build(fam, args.out, args.tokenizer, seed, args.emb_std)
        m = margins(out)
        ok = m["min_greedy_gap"] >= MIN_GREEDY_GAP and (m["min_router_gap"] is None or m["min_router_gap"] >= MIN_ROUTER_GAP)
        print(f"make_zoo: {fam} seed {seed}: {m} {'ok' if ok else 'too close'}")
        if ok:
            return seed
    raise SystemExit(f"{fam}: no seed in {args.search} tries clears the margins")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="models/zoo")
    ap.add_argument("--tokenizer", default="models/tiny-kjv", help="folder with tokenizer.json")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--emb-std", type=float, default=EMB_STD)
    ap.add_argument("--search", type=int, default=0,
                    help="try this many seeds from the table's and report the first with clear margins")
    args = ap.parse_args()
    for fam in args.families.split(","):
        seed = search(fam, args) if args.search else SEEDS[fam]
        out = build(fam, args.out, args.tokenizer, seed, args.emb_std)
        size = os.path.getsize(os.path.join(out, "model.safetensors"))
        print(f"make_zoo: {out}: model.safetensors {size} bytes ({FAMILIES[fam][1]})")
        if size > 2 * 1024 * 1024:
            raise SystemExit(f"{out}: model.safetensors is {size} bytes, over 2 MiB")


if __name__ == "__main__":
    main()
