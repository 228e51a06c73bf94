# GPT-2 and GPT-NeoX over the paged KV cache: LayerNorm with bias, multi-head attention, GELU MLPs.
# GPT-2 adds learned positions and stores Conv1D weights as [in, out] (transposed at load); GPT-NeoX
# interleaves q/k/v per head, rotates only the first rotary_dims of each head, and (use_parallel_residual)
# adds attention and MLP to the same residual. Invariant: with tensor parallelism heads and the MLP width
# are split by rank exactly as in the Llama family; biases of row-parallel layers are added once, after
# the all-reduce.
import math

import torch

from ..attention import Attention, AttentionMetadata, write_kv
from ..config import ModelConfig
from ..layers import rope_cos_sin
from ..parallel import TensorParallel
from ..quant import linear
from ..reshard import local_part
from .base import ModelWeights


_TOP = {"wte.weight": "embed", "embed_in.weight": "embed", "wpe.weight": "pos", "ln_f.weight": "norm_w",
        "ln_f.bias": "norm_b", "final_layer_norm.weight": "norm_w", "final_layer_norm.bias": "norm_b",
        "lm_head.weight": "lm_head", "embed_out.weight": "lm_head"}
_LAYER_PARAMS = {  # GPT-2 and GPT-NeoX names of each layer tensor -> the parameter this rank's part fills
    "ln_1.weight": "ln1_w", "ln_1.bias": "ln1_b", "ln_2.weight": "ln2_w", "ln_2.bias": "ln2_b",
    "input_layernorm.weight": "ln1_w", "input_layernorm.bias": "ln1_b",
    "post_attention_layernorm.weight": "ln2_w", "post_attention_layernorm.bias": "ln2_b",
    "attn.c_attn.weight": "qkv_w", "attn.c_attn.bias": "qkv_b",
    "attention.query_key_value.weight": "qkv_w", "attention.query_key_value.bias": "qkv_b",
    "attn.c_proj.weight": "o_w", "attention.dense.weight": "o_w", "attn.c_proj.bias": "o_b",
    "attention.dense.bias": "o_b", "mlp.c_fc.weight": "up_w", "mlp.dense_h_to_4h.weight": "up_w",
    "mlp.c_fc.bias": "up_b", "mlp.dense_h_to_4h.bias": "up_b",
    "mlp.c_proj.weight": "down_w", "mlp.dense_4h_to_h.weight": "down_w",
    "mlp.c_proj.bias": "down_b", "mlp.dense_4h_to_h.bias": "down_b",
}


def _gelu(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return torch.nn.functional.gelu(x, approximate="tanh")
    if kind == "gelu":
        return torch.nn.functional.gelu(x)
    raise ValueError(f"activation {kind!r} is not supported by the GPU executor")


class GPTModel(ModelWeights):
    def __init__(self, cfg: ModelConfig, dtype, device, tp: TensorParallel, attention: Attention, max_len: int,
                 fused_ops: bool = True):
        self.cfg, self.dtype, self.device, self.tp, self.attn = cfg, dtype, device, tp, attention
        self.neox = cfg.model_type == "gpt_neox"
        self.nq = self.nkv = tp.shard(cfg.num_heads, "num_attention_heads")
        self.inter = tp.shard(cfg.intermediate_size, "intermediate_size")
        hd, H = cfg.head_dim, cfg.hidden_size
        self.q_size = self.nq * hd
        self.scale = 1.0 / math.sqrt(hd)
        self.vocab_parallel = False  # small vocabularies in this family: every rank keeps the LM head

        def empty(*shape):
            return torch.empty(shape, dtype=dtype, device=device)

        self.params = {"embed": empty(cfg.vocab_size, H), "norm_w": empty(H), "norm_b": empty(H)}
        if not cfg.tie_word_embeddings:
            self.params["lm_head"] = empty(cfg.vocab_size, H)
        if not self.neox:
            self.params["pos"] = empty(cfg.max_position_embeddings, H)
        self.layers = [{"ln1_w": empty(H), "ln1_b": empty(H), "ln2_w": empty(H), "ln2_b": empty(H),
                        "qkv_w": empty(3 * self.q_size, H), "qkv_b": empty(3 * self.q_size),
                        "o_w": empty(H, self.q_size), "o_b": empty(H),
                        "up_w": empty(self.inter, H), "up_b": empty(self.inter),
                        "down_w": empty(H, self.inter), "down_b": empty(H)} for _ in range(cfg.num_layers)]
        rd = cfg.rotary_dims
        self.cos_sin = rope_cos_sin(rd, cfg.rope_theta, {}, max_len, device) if self.neox and rd else None
        self._loaded = set()

    # ---- weights ----------------------------------------------------------------------------------------------

    def load_weight(self, name: str, w: torch.Tensor) -> None:
        """Copies this rank's part of checkpoint tensor `name` (reshard.local_part, the one place deciding how each
        tensor is split over the ranks; it splits GPT-2's Conv1D weights as stored) to where the model keeps it."""
        if name.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")) or ".attention.bias" in name \
                or name.endswith(".attention.masked_bias"):
            return  # causal-mask buffers some checkpoints carry
        short = name.removeprefix("transformer.").removeprefix("gpt_neox.")
        if short in _TOP:
            key = _TOP[short]
            if key == "lm_head" and self.cfg.tie_word_embeddings:
                return
            dst = self.params[key]
        else:
            parts = short.split(".")
            rest = ".".join(parts[2:])
            if parts[0] not in ("h", "layers") or len(parts) < 4 or rest not in _LAYER_PARAMS:
                raise ValueError(f"unexpected weight {short} for {self.cfg.architecture}")
            key = _LAYER_PARAMS[rest]
            dst = self.layers[int(parts[1])][key]
        w = local_part(self.cfg, name, w, self.tp.rank, self.tp.world_size)
        if not self.neox and key in ("qkv_w", "o_w", "up_w", "down_w"):
            w = w.t()  # GPT-2's Conv1D stores [in, out]; c_attn's outputs are [q|k|v][head][dim]
        elif self.neox and key in ("qkv_w", "qkv_b"):  # rows [head][q|k|v][dim] -> [q|k|v][head][dim]
            w = w.reshape(self.nq, 3, self.cfg.head_dim, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
        return self._copy(short, dst, w)

    def _copy(self, tag, dst, src) -> None:
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"weight {tag}: checkpoint shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
        dst.copy_(src, non_blocking=True)
        self._loaded.add(tag)

    def finish_loading(self) -> None:
        expected = len(self.params) + 12 * len(self.layers)  # lm_head is absent from params when tied
        if len(self._loaded) != expected:
            raise ValueError(f"checkpoint is incomplete: loaded {len(self._loaded)} of {expected} weight tensors")
        self._finalize()

    def _finalize(self) -> None:
        if self.cfg.tie_word_embeddings:
            self.params["lm_head"] = self.params["embed"]

    def quantize(self, kind: str) -> None:
        raise ValueError(f"weight-only {kind} (option.dtype=int8 / option.quantize) is not supported for "
                         f"{self.cfg.architecture}; the Llama-family models support it")

    # ---- forward ----------------------------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
        rd = self.cfg.rotary_dims
        half = rd // 2
        xr, rest = x[..., :rd].float(), x[..., rd:]
        c, s = cs[:, None, :half], cs[:, None, half:]
        x1, x2 = xr[..., :half], xr[..., half:]
        return torch.cat([(x1 * c - x2 * s).to(x.dtype), (x2 * c + x1 * s).to(x.dtype), rest], dim=-1)

    def forward(self, input_ids, positions, meta: AttentionMetadata, kv_caches, logits_indices,
                widen: bool = True, logits_meta: AttentionMetadata = None, hidden_rows: torch.Tensor = None):
        """fp32 logits [len(logits_indices), vocab]; with widen=False in the model's dtype (the LM head's output).
        logits_meta, hidden_rows: as LlamaModel.forward's."""
        if hidden_rows is not None and logits_meta is not None:
            raise ValueError("hidden_rows needs every row's last layer: logits_meta must be None")
        cfg, hd, eps, ln = self.cfg, self.cfg.head_dim, self.cfg.rms_norm_eps, torch.nn.functional.layer_norm
        H = cfg.hidden_size
        x = self.params["embed"][input_ids]
        if not self.neox:
            x = x + self.params["pos"][positions]
        cs = self.cos_sin[positions] if self.cos_sin is not None else None
        for i, L in enumerate(self.layers):
            h = ln(x, (H,), L["ln1_w"], L["ln1_b"], eps)
            q, k, v = linear(h, L["qkv_w"], L["qkv_b"]).split(self.q_size, dim=-1)
            q, k, v = q.reshape(-1, self.nq, hd), k.reshape(-1, self.nq, hd), v.reshape(-1, self.nq, hd)
            if cs is not None:
                q, k = self._rope(q, cs), self._rope(k, cs)
            k_cache, v_cache = kv_caches[i]
            write_kv(k_cache, v_cache, k.contiguous(), v.contiguous(), meta.slot_mapping)
            if i == len(self.layers) - 1 and logits_meta is not None:
                q, x = q.index_select(0, logits_indices), x.index_select(0, logits_indices)
                meta, logits_indices = logits_meta, None
            o = self.attn.forward(q.contiguous(), k_cache, v_cache, meta, self.scale)
            attn_out = self.tp.all_reduce(linear(o.reshape(-1, self.q_size), L["o_w"])) + L["o_b"]
            if cfg.parallel_residual:
                h2 = ln(x, (H,), L["ln2_w"], L["ln2_b"], eps)
            else:
                x = x + attn_out
                h2 = ln(x, (H,), L["ln2_w"], L["ln2_b"], eps)
            m = _gelu(linear(h2, L["up_w"], L["up_b"]), cfg.hidden_act)
            mlp_out = self.tp.all_reduce(linear(m, L["down_w"])) + L["down_b"]
            x = x + attn_out + mlp_out if cfg.parallel_residual else x + mlp_out
        hidden = None
        if hidden_rows is not None:
            h = ln(x, (H,), self.params["norm_w"], self.params["norm_b"], eps)
            hidden = h.index_select(0, hidden_rows).float()
            h = h.index_select(0, logits_indices)
        else:
            if logits_indices is not None:  # (None: the last layer computed the logits rows only)
                x = x[logits_indices]
            h = ln(x, (H,), self.params["norm_w"], self.params["norm_b"], eps)
        logits = linear(h, self.params["lm_head"])
        logits = logits.float() if widen else logits
        return logits if hidden is None else (logits, hidden)
