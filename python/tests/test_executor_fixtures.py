# Builds tiny random Llama-family checkpoints on disk for the executor tests, and a dense (unpaged,
# one-sequence) forward pass written independently of the executor's paged path to compare against.
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lmi_executor.loader import write_safetensors  # noqa: E402


def make_checkpoint(path: str, model_type: str = "llama", seed: int = 0, dtype=torch.float32, tie=False) -> dict:
    os.makedirs(path, exist_ok=True)
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
            "mistral": "MistralForCausalLM"}[model_type]
    cfg = {"architectures": [arch], "model_type": model_type, "vocab_size": 97, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
           "tie_word_embeddings": tie, "eos_token_id": 2, "bos_token_id": 1, "torch_dtype": "float32"}
    if model_type == "llama":
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.15):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    H, I, V, hd = 64, 128, 97, 16
    w = {"model.embed_tokens.weight": rnd(V, H, scale=1.0), "model.norm.weight": 1 + rnd(H, scale=0.1)}
    if not tie:
        w["lm_head.weight"] = rnd(V, H)
    for i in range(2):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rnd(H, scale=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + rnd(H, scale=0.1)
        w[p + "self_attn.q_proj.weight"] = rnd(4 * hd, H)
        w[p + "self_attn.k_proj.weight"] = rnd(2 * hd, H)
        w[p + "self_attn.v_proj.weight"] = rnd(2 * hd, H)
        w[p + "self_attn.o_proj.weight"] = rnd(H, 4 * hd)
        w[p + "mlp.gate_proj.weight"] = rnd(I, H)
        w[p + "mlp.up_proj.weight"] = rnd(I, H)
        w[p + "mlp.down_proj.weight"] = rnd(H, I)
        if model_type == "qwen2":
            for n, d in (("q", 4), ("k", 2), ("v", 2)):
                w[p + f"self_attn.{n}_proj.bias"] = rnd(d * hd)
        if model_type == "qwen3":
            w[p + "self_attn.q_norm.weight"] = 1 + rnd(hd, scale=0.1)
            w[p + "self_attn.k_norm.weight"] = 1 + rnd(hd, scale=0.1)
    # Two shards plus an index, like real checkpoints.
    names = sorted(w)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, keys in shards.items():
        write_safetensors(os.path.join(path, fname), {k: w[k] for k in keys})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {k: fn for fn, ks in shards.items() for k in ks}}, f)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return {"config": cfg, "weights": w}


def dense_forward(ck: dict, ids: list, hidden: bool = False):
    """Logits [len(ids), V] in fp64 for one sequence, straight from the HF definition; hidden=True: (logits, the
    final-normed hidden states [len(ids), H], HF's hidden_states[-1])."""
    cfg, w = ck["config"], {k: v.double() for k, v in ck["weights"].items()}
    nh, nkv, hd, eps = 4, 2, 16, cfg["rms_norm_eps"]  # the fixture's shape (hidden size 64 = nh * hd)
    T = len(ids)

    def norm(x, wt):
        return wt * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2).double() / hd))
    rs = cfg.get("rope_scaling")
    if rs:
        import math

        wl = 2 * math.pi / inv
        lo, hi, old = rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        new = []
        for f, L in zip(inv.tolist(), wl.tolist()):
            if L < old / hi:
                new.append(f)
            elif L > old / lo:
                new.append(f / rs["factor"])
            else:
                s = (old / L - lo) / (hi - lo)
                new.append((1 - s) * f / rs["factor"] + s * f)
        inv = torch.tensor(new, dtype=torch.float64)
    ang = torch.outer(torch.arange(T).double(), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):  # [T, h, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos[:, None] + torch.cat([-x2, x1], -1) * sin[:, None]

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = h @ w[p + "self_attn.q_proj.weight"].t()
        k = h @ w[p + "self_attn.k_proj.weight"].t()
        v = h @ w[p + "self_attn.v_proj.weight"].t()
        if p + "self_attn.q_proj.bias" in w:
            q, k, v = q + w[p + "self_attn.q_proj.bias"], k + w[p + "self_attn.k_proj.bias"], v + w[p + "self_attn.v_proj.bias"]
        q, k, v = q.view(T, nh, hd), k.view(T, nkv, hd), v.view(T, nkv, hd)
        if p + "self_attn.q_norm.weight" in w:
            q, k = norm(q, w[p + "self_attn.q_norm.weight"]), norm(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        att = torch.einsum("thd,shd->hts", q, k) / hd**0.5 + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, nh * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].t()
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        g, u = h @ w[p + "mlp.gate_proj.weight"].t(), h @ w[p + "mlp.up_proj.weight"].t()
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].t()
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    h = norm(x, w["model.norm.weight"])
    return (h @ head.t(), h) if hidden else h @ head.t()


def compiled_variants(test, kernels) -> int:
    """How many variants of the Triton `kernels` are compiled in their per-device caches (the first item of each
    device's entry); skips `test` on a Triton that keeps no such cache to count."""
    try:
        return sum(len(entry[0]) for k in kernels for entry in k.device_caches.values())
    except (AttributeError, TypeError, IndexError, KeyError):
        test.skipTest("this Triton keeps no per-device kernel cache to count")
