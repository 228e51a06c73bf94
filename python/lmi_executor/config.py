# Executor options (what the TypeScript supervisor passes at spawn) and the model's architecture config
# read from Hugging Face config.json. Invariant: everything downstream reads these frozen dataclasses,
# never raw dicts, and unknown architectures fail here by name.
import json
import os
from dataclasses import dataclass, field, replace

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",  # Llama layout with qkv and gate/up already fused in the checkpoint
    "MixtralForCausalLM": "mixtral",  # Mistral attention + a top-k mixture of SwiGLU experts
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gpt_neox",
}


@dataclass(frozen=True)
class ExecutorOptions:
    model_dir: str
    device: str = "cuda"  # "cuda" | "cpu"
    dtype: str = "auto"  # auto | fp16 | bf16 | fp32 | int8 (weight-only)
    quantize: str = ""  # option.quantize: bitsandbytes8 / bitsandbytes / dynamic_int8 select the int8 path
    load_format: str = "auto"  # auto (safetensors) | dummy
    tensor_parallel_degree: int = 1
    enable_cuda_graph: bool = True
    gpu_memory_utilization: float = 0.9
    # option.kv_cache_dtype: auto (the model's dtype) | fp8 (e4m3, values stored as they are: no scales) |
    # bf16 | fp16 | fp32. fp8 halves the KV bytes per token (twice the cached tokens, half the attention reads).
    kv_cache_dtype: str = "auto"
    max_model_len: int = 0  # 0: the model's max_position_embeddings
    block_size: int = 16
    max_num_seqs: int = 256
    attention_backend: str = "auto"  # auto | triton | reference
    fused_ops: bool = True  # Triton fused norm/rotary/activation on CUDA (false: plain PyTorch, for A/B checks)
    parallel_loading: bool = True
    seed: int = 0
    dist_init_method: str = ""  # tcp://host:port for world size > 1
    cpu_kv_cache_bytes: int = 256 << 20  # KV budget when device is cpu
    max_num_batched_tokens: int = 8192  # largest step the engine sends; the memory profile runs one this big
    # Launch a step before the previous one's reply is sent (one rank only; see server.py). False: one step at a time.
    pipeline_steps: bool = True
    # option.checkpoint: a tensor-parallel checkpoint JSON (or a folder holding ds_inference_config.json), relative
    # to model_dir unless absolute; its weights replace model_dir's safetensors (config.json and the tokenizer stay
    # in model_dir). See reshard.py.
    checkpoint: str = ""
    # option.training_mp_size: the degree the checkpoint was saved at; must equal its tp_size. 0: not given (the
    # checkpoint's own degree is used).
    training_mp_size: int = 0

    @staticmethod
    def from_json(text: str) -> "ExecutorOptions":
        raw = json.loads(text)
        known = {f for f in ExecutorOptions.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown executor options: {', '.join(unknown)}")
        return ExecutorOptions(**raw)


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict = field(default_factory=dict)
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    torch_dtype: str = "float32"
    eos_token_ids: tuple = ()
    bos_token_id: object = None
    sliding_window: int = 0  # 0: full attention; else a query sees the last `sliding_window` keys (itself included)
    num_experts: int = 0  # 0: dense MLP
    experts_per_token: int = 0
    rotary_dims: int = 0  # GPT-NeoX: rotary on the first rotary_dims of each head (0: the whole head)
    parallel_residual: bool = False  # GPT-NeoX: x + attn(ln1 x) + mlp(ln2 x)
    hidden_act: str = "silu"


def _as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _merged_eos(eos: tuple, model_dir: str) -> tuple:
    gen_path = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gen_path):
        with open(gen_path, encoding="utf-8") as f:
            gen_eos = _as_list(json.load(f).get("eos_token_id"))
        eos = tuple(dict.fromkeys([*eos, *(int(t) for t in gen_eos)]))
    return eos


def load_model_config(model_dir: str) -> ModelConfig:
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        raw = json.load(f)
    archs = raw.get("architectures") or []
    arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
    if arch is None:
        raise ValueError(
            f"unsupported architecture {archs or raw.get('model_type')}; the GPU executor supports "
            + ", ".join(sorted(SUPPORTED_ARCHITECTURES))
        )
    model_type = SUPPORTED_ARCHITECTURES[arch]
    if model_type in ("gpt2", "gpt_neox"):
        cfg = _gpt_config(raw, arch, model_type)
        return replace(cfg, eos_token_ids=_merged_eos(cfg.eos_token_ids, model_dir))
    num_heads = int(raw["num_attention_heads"])
    hidden = int(raw["hidden_size"])
    # transformers 5 moved rope settings into rope_parameters; older configs keep rope_theta/rope_scaling.
    rope_params = raw.get("rope_parameters") or {}
    rope_theta = float(rope_params.get("rope_theta", raw.get("rope_theta", 10000.0)))
    rope_scaling = dict(raw.get("rope_scaling") or {})
    if not rope_scaling and rope_params.get("rope_type", "default") != "default":
        rope_scaling = dict(rope_params)
    if rope_scaling and "rope_type" not in rope_scaling and "type" in rope_scaling:
        rope_scaling["rope_type"] = rope_scaling["type"]
    eos = tuple(int(t) for t in _as_list(raw.get("eos_token_id")))
    # Mistral applies its window whenever it is set; Qwen2/Qwen3 only with use_sliding_window (and then only
    # above max_window_layers, which we do not model: refuse rather than compute something else).
    window = int(raw.get("sliding_window") or 0)
    if model_type in ("qwen2", "qwen3"):
        if raw.get("use_sliding_window"):
            raise ValueError(f"{arch} with use_sliding_window=true is not supported by the GPU executor")
        window = 0
    elif model_type == "llama":
        window = 0
    if float(raw.get("partial_rotary_factor") or 1.0) != 1.0:
        raise ValueError(f"{arch} with partial_rotary_factor != 1 is not supported by the GPU executor")
    eos = _merged_eos(eos, model_dir)
    return ModelConfig(
        architecture=arch,
        model_type=model_type,
        vocab_size=int(raw["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]),
        num_layers=int(raw["num_hidden_layers"]),
        num_heads=num_heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or num_heads),
        head_dim=int(raw.get("head_dim") or hidden // num_heads),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
        qk_norm=model_type == "qwen3",
        torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "float32"),
        eos_token_ids=eos,
        bos_token_id=raw.get("bos_token_id"),
        sliding_window=window,
        num_experts=int(raw.get("num_local_experts") or 0) if model_type == "mixtral" else 0,
        experts_per_token=int(raw.get("num_experts_per_tok") or 0) if model_type == "mixtral" else 0,
    )


def _gpt_config(raw: dict, arch: str, model_type: str) -> ModelConfig:
    """GPT-2 and GPT-NeoX spell their sizes differently; both use LayerNorm with bias and multi-head attention."""
    if model_type == "gpt2":
        H, heads = int(raw["n_embd"]), int(raw["n_head"])
        inter, layers = int(raw.get("n_inner") or 4 * H), int(raw["n_layer"])
        eps, max_pos, act = float(raw.get("layer_norm_epsilon", 1e-5)), int(raw.get("n_positions", 1024)), \
            str(raw.get("activation_function", "gelu_new"))
        rotary_dims, theta, parallel = 0, 10000.0, False
        tie = bool(raw.get("tie_word_embeddings", True))
    else:
        H, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
        inter, layers = int(raw["intermediate_size"]), int(raw["num_hidden_layers"])
        eps, max_pos, act = float(raw.get("layer_norm_eps", 1e-5)), int(raw.get("max_position_embeddings", 2048)), \
            str(raw.get("hidden_act", "gelu"))
        rotary_dims = int((H // heads) * float(raw.get("rotary_pct", 1.0)))
        theta = float(raw.get("rotary_emb_base", raw.get("rope_theta", 10000.0)))
        parallel = bool(raw.get("use_parallel_residual", True))
        tie = bool(raw.get("tie_word_embeddings", False))
        if raw.get("rope_scaling"):
            raise ValueError(f"{arch} with rope_scaling is not supported by the GPU executor")
    return ModelConfig(
        architecture=arch, model_type=model_type, vocab_size=int(raw["vocab_size"]), hidden_size=H,
        intermediate_size=inter, num_layers=layers, num_heads=heads, num_kv_heads=heads, head_dim=H // heads,
        rms_norm_eps=eps, rope_theta=theta, max_position_embeddings=max_pos, tie_word_embeddings=tie,
        torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "float32"),
        eos_token_ids=tuple(int(t) for t in _as_list(raw.get("eos_token_id"))), bos_token_id=raw.get("bos_token_id"),
        rotary_dims=rotary_dims, parallel_residual=parallel, hidden_act=act,
    )
