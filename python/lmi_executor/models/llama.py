# The Llama family (Llama 2/3, Mistral, Qwen2 with qkv bias, Qwen3 with per-head q/k RMSNorm, Phi-3,
# Mixtral with its mixture of experts) over a paged KV cache. Invariants: q/k/v and gate/up are fused into
# one matrix each at load time; with tensor parallelism, heads and the MLP's intermediate size are split by
# rank (column-parallel qkv/gate_up, row-parallel o/down + all-reduce), the LM head by vocabulary rows.
import os
import re

import torch

from ..attention import Attention, AttentionMetadata
from ..config import ModelConfig
from ..layers import rope_cos_sin
from ..ops import TritonOps, make_ops
from ..parallel import TensorParallel
from ..quant import linear, quantize_weight
from .base import ModelWeights

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")
_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight$")


class LlamaModel(ModelWeights):
    def __init__(self, cfg: ModelConfig, dtype, device, tp: TensorParallel, attention: Attention, max_len: int,
                 fused_ops: bool = True):
        self.cfg, self.dtype, self.device, self.tp, self.attn = cfg, dtype, device, tp, attention
        self.ops = make_ops(device, fused_ops)
        hd = cfg.head_dim
        self.nq = tp.shard(cfg.num_heads, "num_attention_heads")
        self.nkv = tp.shard(cfg.num_kv_heads, "num_key_value_heads")
        self.inter = tp.shard(cfg.intermediate_size, "intermediate_size")
        self.q_size, self.kv_size = self.nq * hd, self.nkv * hd
        self.scale = hd**-0.5
        # An LM head split by vocabulary needs the vocabulary to divide evenly; otherwise every rank keeps all of it.
        self.vocab_parallel = cfg.vocab_size % tp.world_size == 0 and tp.world_size > 1
        self.vocab_local = cfg.vocab_size // tp.world_size if self.vocab_parallel else cfg.vocab_size
        H = cfg.hidden_size

        def empty(*shape):
            return torch.empty(shape, dtype=dtype, device=device)

        self.params = {"embed": empty(cfg.vocab_size, H), "norm": empty(H)}
        if not cfg.tie_word_embeddings:
            self.params["lm_head"] = empty(self.vocab_local, H)
        self.layers = []
        E = cfg.num_experts
        for _ in range(cfg.num_layers):
            layer = {
                "in_norm": empty(H),
                "qkv_w": empty(self.q_size + 2 * self.kv_size, H),
                "o_w": empty(H, self.q_size),
                "post_norm": empty(H),
            }
            if E:
                # Mixtral: every expert's w1|w3 fused like gate|up, split by rank along the intermediate size.
                layer["router_w"] = empty(E, H)
                for e in range(E):
                    layer[f"expert{e}_gate_up_w"] = empty(2 * self.inter, H)
                    layer[f"expert{e}_down_w"] = empty(H, self.inter)
            else:
                layer["gate_up_w"] = empty(2 * self.inter, H)
                layer["down_w"] = empty(H, self.inter)
            if cfg.qkv_bias:
                layer["qkv_b"] = empty(self.q_size + 2 * self.kv_size)
            if cfg.qk_norm:
                layer["q_norm"] = empty(hd)
                layer["k_norm"] = empty(hd)
            self.layers.append(layer)
        self.cos_sin = rope_cos_sin(hd, cfg.rope_theta, cfg.rope_scaling, max_len, device)
        self._loaded = set()
        self._gemv, self._gemv_rows = None, 1 << 30  # decode-sized kernels: decided at the first forward

    # ---- weights -------------------------------------------------------------------------------------------

    def _rows(self, src: torch.Tensor, local: int) -> torch.Tensor:
        r = self.tp.rank
        return src[r * local : (r + 1) * local]

    def _cols(self, src: torch.Tensor, local: int) -> torch.Tensor:
        r = self.tp.rank
        return src[:, r * local : (r + 1) * local]

    def load_weight(self, name: str, w: torch.Tensor) -> None:
        hd = self.cfg.head_dim
        if _IGNORED.search(name):
            return
        if name == "model.embed_tokens.weight":
            return self._copy(("embed",), self.params["embed"], w)
        if name == "model.norm.weight":
            return self._copy(("norm",), self.params["norm"], w)
        if name == "lm_head.weight":
            if self.cfg.tie_word_embeddings:
                return
            src = self._rows(w, self.vocab_local) if self.vocab_parallel else w
            return self._copy(("lm_head",), self.params["lm_head"], src)
        m = _LAYER.match(name)
        if not m:
            raise ValueError(f"unexpected weight {name} in checkpoint")
        i, rest = int(m.group(1)), m.group(2)
        if i >= len(self.layers):
            raise ValueError(f"weight {name} is beyond num_hidden_layers={len(self.layers)}")
        L = self.layers[i]
        q, kv = self.q_size, self.kv_size
        fused = {
            "self_attn.q_proj": ("qkv", 0, q, self.nq * hd),
            "self_attn.k_proj": ("qkv", q, q + kv, self.nkv * hd),
            "self_attn.v_proj": ("qkv", q + kv, q + 2 * kv, self.nkv * hd),
            "mlp.gate_proj": ("gate_up", 0, self.inter, self.inter),
            "mlp.up_proj": ("gate_up", self.inter, 2 * self.inter, self.inter),
        }
        base, _, kind = rest.rpartition(".")
        em = _EXPERT.match(rest)
        if em:
            e, which = int(em.group(1)), em.group(2)
            if which == "w2":
                return self._copy((i, rest), L[f"expert{e}_down_w"], self._cols(w, self.inter))
            lo = 0 if which == "w1" else self.inter
            return self._copy((i, rest), L[f"expert{e}_gate_up_w"][lo : lo + self.inter], self._rows(w, self.inter))
        if rest == "block_sparse_moe.gate.weight":
            return self._copy((i, rest), L["router_w"], w)
        prefused = {  # Phi-3 ships q|k|v and gate|up as single tensors: split them into the same parts
            "self_attn.qkv_proj": [("self_attn.q_proj", self.cfg.num_heads * hd),
                                   ("self_attn.k_proj", self.cfg.num_kv_heads * hd),
                                   ("self_attn.v_proj", self.cfg.num_kv_heads * hd)],
            "mlp.gate_up_proj": [("mlp.gate_proj", self.cfg.intermediate_size),
                                 ("mlp.up_proj", self.cfg.intermediate_size)],
        }
        if base in prefused:
            start = 0
            for part, size in prefused[base]:
                self.load_weight(f"model.layers.{i}.{part}.{kind}", w[start : start + size])
                start += size
            if start != w.shape[0]:
                raise ValueError(f"weight {name}: {w.shape[0]} rows, expected {start}")
            return None
        if base in fused:
            target, lo, hi, local = fused[base]
            key = f"{target}_{'w' if kind == 'weight' else 'b'}"
            return self._copy((i, rest), L[key][lo:hi], self._rows(w, local))
        simple = {
            "input_layernorm.weight": ("in_norm", None),
            "post_attention_layernorm.weight": ("post_norm", None),
            "self_attn.q_norm.weight": ("q_norm", None),
            "self_attn.k_norm.weight": ("k_norm", None),
            "self_attn.o_proj.weight": ("o_w", self.q_size),
            "mlp.down_proj.weight": ("down_w", self.inter),
        }
        if rest not in simple or simple[rest][0] not in L:
            raise ValueError(f"unexpected weight {name} for {self.cfg.architecture}")
        key, col_local = simple[rest]
        return self._copy((i, rest), L[key], w if col_local is None else self._cols(w, col_local))

    def _copy(self, tag, dst: torch.Tensor, src: torch.Tensor) -> None:
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"weight {tag}: checkpoint shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
        dst.copy_(src, non_blocking=True)
        self._loaded.add(tag)

    def finish_loading(self) -> None:
        expected = 2 + (0 if self.cfg.tie_word_embeddings else 1)
        mlp = 1 + 3 * self.cfg.num_experts if self.cfg.num_experts else 3
        per_layer = 6 + mlp + (3 if self.cfg.qkv_bias else 0) + (2 if self.cfg.qk_norm else 0)
        expected += per_layer * len(self.layers)
        if len(self._loaded) != expected:
            raise ValueError(f"checkpoint is incomplete: loaded {len(self._loaded)} of {expected} weight tensors")
        self._finalize()

    def _finalize(self) -> None:
        if self.cfg.tie_word_embeddings:
            e = self.params["embed"]
            self.params["lm_head"] = self._rows(e, self.vocab_local) if self.vocab_parallel else e

    def quantize(self, kind: str) -> None:
        """Weight-only int8 or int4 (quant.py) for the qkv, o, gate/up and down matrices of every layer (each
        Mixtral expert's too); embeddings, norms, the router and the LM head stay in the compute dtype."""
        for L in self.layers:
            for key in [k for k in L if k in ("qkv_w", "o_w", "gate_up_w", "down_w") or k.startswith("expert")]:
                L[key] = quantize_weight(L[key], kind)  # the full-precision tensor is freed as we go
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- forward ----------------------------------------------------------------------------------------------

    def _moe(self, h, L) -> torch.Tensor:
        """Mixtral's top-k routing, computed densely: every expert sees every token and is weighted by the
        token's (renormalised) routing weight, 0 when not chosen. No data-dependent shapes, so decode steps
        stay capturable in CUDA graphs; it costs num_experts / top_k times the expert FLOPs (an obvious
        place for a grouped kernel later), while the weight bytes read per step are the same once a batch
        touches every expert."""
        cfg = self.cfg
        probs = torch.softmax(linear(h, L["router_w"]).float(), dim=-1)
        top_w, top_i = probs.topk(cfg.experts_per_token, dim=-1)
        top_w = (top_w / top_w.sum(dim=-1, keepdim=True)).to(h.dtype)
        gate = torch.zeros_like(probs, dtype=h.dtype).scatter(1, top_i, top_w)
        out = torch.zeros_like(h)
        for e in range(cfg.num_experts):
            y = linear(self.ops.silu_and_mul(linear(h, L[f"expert{e}_gate_up_w"])), L[f"expert{e}_down_w"])
            out = out + y * gate[:, e : e + 1]
        return out

    def _small_step_kernels(self, rows: int):
        """kernels/gemv.py for decode-sized steps (at most gemv.MAX_ROWS tokens) when it computes the same
        function as the general path: CUDA, bf16/fp16 weights not quantized, fused ops on, no experts, no
        tensor parallelism (its all-reduce sits where the residual-add epilogue would). None otherwise."""
        if self._gemv is None:
            ok = (self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16)
                  and isinstance(self.ops, TritonOps) and not self.cfg.num_experts
                  and self.tp.world_size == 1 and os.environ.get("LMI_DECODE_GEMV", "1") != "0")
            if ok:
                from ..kernels import gemv

                self._gemv_rows = gemv.MAX_ROWS
                self._gemv = gemv
            else:
                self._gemv = False
        if self._gemv is False or rows > self._gemv_rows:
            return None
        mats = [self.params["lm_head"]] + [L[k] for L in self.layers for k in ("qkv_w", "o_w", "gate_up_w", "down_w")]
        if not all(type(w) is torch.Tensor and w.dtype == self.dtype and w.is_contiguous() for w in mats):
            return None  # quantized (or otherwise replaced) weights: the general path handles them
        return self._gemv

    def _forward_small(self, g, input_ids, positions, meta, kv_caches, logits_indices) -> torch.Tensor:
        """The decode-sized forward: four weight-streaming kernels per layer with the RMSNorms, the residual
        adds and SiLU-and-mul fused into them, so the residual stream `res` is the only hidden state:
        qkv = W_qkv norm(res); res += W_o attn; act = silu(W_g norm(res)) * W_u norm(res); res += W_down act.
        With g.FLAGS: rotary + the K/V-cache write ride in the qkv epilogue (not with Qwen3's q/k norms), and
        every GEMV joins a programmatic-dependent-launch chain (g.use_pdl()), so each one's weights stream while
        the one before it drains. Attention is the backend's (paged_attention's kernels, launched normally)."""
        cfg, hd, eps = self.cfg, self.cfg.head_dim, self.cfg.rms_norm_eps
        fuse_rope = g.FLAGS["rope"] and "q_norm" not in self.layers[0]
        res = self.params["embed"][input_ids]
        ssq = None  # partial sums of squares of `res`, left by the kernel that wrote it (none for the embedding)
        for i, L in enumerate(self.layers):
            k_cache, v_cache = kv_caches[i]
            if fuse_rope:
                q = g.gemv(res, L["qkv_w"], bias=L.get("qkv_b"), norm_w=L["in_norm"], eps=eps, ssq=ssq,
                           rope=(self.cos_sin, positions, meta.slot_mapping, k_cache, v_cache, self.nq, self.nkv, hd))
            else:
                qkv = g.gemv(res, L["qkv_w"], bias=L.get("qkv_b"), norm_w=L["in_norm"], eps=eps, ssq=ssq)
                q = self.ops.rope_and_cache(qkv, self.cos_sin, positions, meta.slot_mapping, k_cache, v_cache,
                                            self.nq, self.nkv, hd, L.get("q_norm"), L.get("k_norm"), eps)
            o = self.attn.forward(q, k_cache, v_cache, meta, self.scale)
            res, ssq = g.gemv(o.reshape(-1, self.q_size), L["o_w"], residual=res, want_ssq=True)
            act = g.gemv(res, L["gate_up_w"], norm_w=L["post_norm"], eps=eps, ssq=ssq, silu_up=self.inter)
            res, ssq = g.gemv(act, L["down_w"], residual=res, want_ssq=True)
        return g.gemv(res, self.params["lm_head"], norm_w=self.params["norm"], eps=eps, ssq=ssq,
                      rows=logits_indices, out_f32=True)

    def forward(self, input_ids, positions, meta: AttentionMetadata, kv_caches, logits_indices) -> torch.Tensor:
        """Returns fp32 logits [len(logits_indices), vocab] for the rows the sampler needs."""
        g = self._small_step_kernels(input_ids.shape[0])
        if g is not None:
            return self._forward_small(g, input_ids, positions, meta, kv_caches, logits_indices)
        cfg, hd, ops, eps = self.cfg, self.cfg.head_dim, self.ops, self.cfg.rms_norm_eps
        x = self.params["embed"][input_ids]
        residual = None
        for i, L in enumerate(self.layers):
            if residual is None:
                residual, h = x, ops.add_rms_norm(x, None, L["in_norm"], eps)
            else:
                h = ops.add_rms_norm(x, residual, L["in_norm"], eps)  # residual += x, in place
            qkv = linear(h, L["qkv_w"], L.get("qkv_b"))
            k_cache, v_cache = kv_caches[i]
            q = ops.rope_and_cache(qkv, self.cos_sin, positions, meta.slot_mapping, k_cache, v_cache,
                                   self.nq, self.nkv, hd, L.get("q_norm"), L.get("k_norm"), eps)
            o = self.attn.forward(q, k_cache, v_cache, meta, self.scale)
            x = self.tp.all_reduce(linear(o.reshape(-1, self.q_size), L["o_w"]))
            h = ops.add_rms_norm(x, residual, L["post_norm"], eps)
            if cfg.num_experts:
                x = self.tp.all_reduce(self._moe(h, L))
            else:
                x = self.tp.all_reduce(linear(ops.silu_and_mul(linear(h, L["gate_up_w"])), L["down_w"]))
        h = ops.add_rms_norm(x[logits_indices], residual[logits_indices], self.params["norm"], eps)
        logits = linear(h, self.params["lm_head"]).float()
        if self.vocab_parallel:
            logits = self.tp.all_gather_last_dim(logits)
        return logits
