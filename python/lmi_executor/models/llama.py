# The Llama family (Llama 2/3, Mistral, Qwen2 with qkv bias, Qwen3 with per-head q/k RMSNorm, Phi-3,
# Mixtral with its mixture of experts) over a paged KV cache. Invariants: q/k/v and gate/up are fused into
# one matrix each at load time; with tensor parallelism, heads and the MLP's intermediate size are split by
# rank (column-parallel qkv/gate_up, row-parallel o/down + all-reduce), the LM head by vocabulary rows.
import dataclasses
import os
import re

import torch

from ..attention import Attention, AttentionMetadata
from ..config import ModelConfig
from ..kernels import decode_gemm
from ..layers import rope_cos_sin
from ..ops import TritonOps, make_ops
from ..parallel import TensorParallel
from ..quant import linear, quantize_weight
from ..reshard import local_part, model_slice
from .base import ModelWeights

# Steps of more rows than this add the o and down projections into the residual inside the GEMM
# (LlamaModel._residual_in_gemm): every tuned decode bucket (kernels/lt_tables) stays at or below it.
RESIDUAL_IN_GEMM_ABOVE_ROWS = 256

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")
_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight$")
_TOP = {"model.embed_tokens.weight": "embed", "model.norm.weight": "norm", "lm_head.weight": "lm_head"}
# Layer tensors whose part fills a whole parameter (the stacked ones are placed by LlamaModel._place).
_WHOLE = {"input_layernorm.weight": "in_norm", "post_attention_layernorm.weight": "post_norm",
          "self_attn.q_norm.weight": "q_norm", "self_attn.k_norm.weight": "k_norm", "self_attn.o_proj.weight": "o_w",
          "mlp.down_proj.weight": "down_w", "block_sparse_moe.gate.weight": "router_w"}
_PREFUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),  # Phi-3
             "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}


class LlamaModel(ModelWeights):
    def __init__(self, cfg: ModelConfig, dtype, device, tp: TensorParallel, attention: Attention, max_len: int,
                 fused_ops: bool = True):
        self.cfg, self.dtype, self.device, self.tp, self.attn = cfg, dtype, device, tp, attention
        self.ops = make_ops(device, fused_ops)
        hd = cfg.head_dim
        self.nq = tp.shard(cfg.num_heads, "num_attention_heads")
        self.nkv = tp.kv_heads(cfg.num_kv_heads)
        self.inter = tp.shard(cfg.intermediate_size, "intermediate_size")
        self.q_size, self.kv_size = self.nq * hd, self.nkv * hd
        self.scale = hd**-0.5
        H = cfg.hidden_size
        # The LM head is split by vocabulary where reshard's rules split it (the vocabulary divides evenly);
        # otherwise every rank keeps all of it.
        self.vocab_parallel = model_slice(cfg, "lm_head.weight", [cfg.vocab_size, H], tp.world_size) is not None
        self.vocab_local = cfg.vocab_size // tp.world_size if self.vocab_parallel else cfg.vocab_size

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

    def load_weight(self, name: str, w: torch.Tensor) -> None:
        """Copies this rank's part of checkpoint tensor `name` (reshard.local_part, the one place deciding how each
        tensor is split over the ranks) to where the model keeps it."""
        if _IGNORED.search(name) or (name == "lm_head.weight" and self.cfg.tie_word_embeddings):
            return
        if name in _TOP:
            return self._copy((_TOP[name],), self.params[_TOP[name]], self._part(name, w))
        m = _LAYER.match(name)
        if not m:
            raise ValueError(f"unexpected weight {name} in checkpoint")
        i, rest = int(m.group(1)), m.group(2)
        if i >= len(self.layers):
            raise ValueError(f"weight {name} is beyond num_hidden_layers={len(self.layers)}")
        dst = self._place(self.layers[i], rest)
        if dst is None:
            raise ValueError(f"unexpected weight {name} for {self.cfg.architecture}")
        base, _, kind = rest.rpartition(".")
        counts = [(i, f"{f}.{kind}") for f in _PREFUSED[base]] if base in _PREFUSED else None
        return self._copy((i, rest), dst, self._part(name, w), counts)

    def _place(self, L: dict, rest: str):
        """The parameter of layer L, or its rows, that this rank's part of layer tensor `rest` fills (q/k/v and
        gate/up are stacked in one matrix each, as are each Mixtral expert's w1/w3); None if there is none."""
        q, kv, n = self.q_size, self.kv_size, self.inter
        stacked = {  # (matrix, first row, end row)
            "self_attn.q_proj": ("qkv", 0, q), "self_attn.k_proj": ("qkv", q, q + kv),
            "self_attn.v_proj": ("qkv", q + kv, q + 2 * kv), "self_attn.qkv_proj": ("qkv", 0, q + 2 * kv),
            "mlp.gate_proj": ("gate_up", 0, n), "mlp.up_proj": ("gate_up", n, 2 * n),
            "mlp.gate_up_proj": ("gate_up", 0, 2 * n),
        }
        base, _, kind = rest.rpartition(".")
        em = _EXPERT.match(rest)
        if em:
            e, which = em.groups()
            key, rows = (f"expert{e}_down_w", None) if which == "w2" else \
                (f"expert{e}_gate_up_w", (0, n) if which == "w1" else (n, 2 * n))
        elif base in stacked and kind in ("weight", "bias"):
            mat, lo, hi = stacked[base]
            key, rows = f"{mat}_{'w' if kind == 'weight' else 'b'}", (lo, hi)
        else:
            key, rows = _WHOLE.get(rest), None
        if key not in L:
            return None
        return L[key] if rows is None else L[key][rows[0] : rows[1]]

    def _part(self, name: str, w: torch.Tensor) -> torch.Tensor:
        return local_part(self.cfg, name, w, self.tp.rank, self.tp.world_size)

    def _copy(self, tag, dst: torch.Tensor, src: torch.Tensor, counts=None) -> None:
        """`counts`: the tensors src stands for in finish_loading's count (Phi-3's q|k|v, gate|up), if not `tag`."""
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"weight {tag}: checkpoint shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
        dst.copy_(src, non_blocking=True)
        self._loaded.update(counts or (tag,))

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
            self.params["lm_head"] = self._part("lm_head.weight", self.params["embed"])

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

    def _residual_in_gemm(self, rows: int) -> bool:
        """Whether this step adds the o and down projections straight into the residual stream (cuBLAS with
        beta = 1: the GEMM reads the residual in its epilogue) and then normalises it, instead of writing each
        projection out and adding it in the norm kernel: two fewer passes over a [rows, hidden] tensor per
        norm, for prompt-sized steps (above RESIDUAL_IN_GEMM_ABOVE_ROWS) of unquantized models without
        experts or tensor parallelism (its all-reduce sits between the GEMM and the add). Decode-sized steps
        keep the separate add: their GEMMs use tuned cuBLASLt algorithms (kernels/lt_gemm.py) with beta = 0."""
        if rows <= RESIDUAL_IN_GEMM_ABOVE_ROWS or self.cfg.num_experts or self.tp.world_size != 1:
            return False
        L = self.layers[0]
        return all(type(L[k]) is torch.Tensor and L[k].dtype == self.dtype for k in ("o_w", "down_w"))

    def _small_step_kernels(self, rows: int):
        """kernels/gemv.py for decode-sized steps (at most gemv.MAX_ROWS tokens) when it computes the same
        function as the general path: CUDA, bf16/fp16 weights not quantized, fused ops on, no experts (with
        tensor parallelism the o and down projections all-reduce before their residual add). None otherwise."""
        if self._gemv is None:
            ok = (self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16)
                  and isinstance(self.ops, TritonOps) and not self.cfg.num_experts
                  and os.environ.get("LMI_DECODE_GEMV", "1") != "0")
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
        hd, eps = self.cfg.head_dim, self.cfg.rms_norm_eps
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
            res, ssq = self._small_row_parallel(g, o.reshape(-1, self.q_size), L["o_w"], res)
            act = g.gemv(res, L["gate_up_w"], norm_w=L["post_norm"], eps=eps, ssq=ssq, silu_up=self.inter)
            res, ssq = self._small_row_parallel(g, act, L["down_w"], res)
        logits = g.gemv(res, self.params["lm_head"], norm_w=self.params["norm"], eps=eps, ssq=ssq,
                        rows=logits_indices, out_f32=True)
        return self.tp.all_gather_last_dim(logits) if self.vocab_parallel else logits

    def _last_rows_attention(self, q, qkv, positions, meta, logits_meta, rows, k_cache, v_cache, qk_norm: bool):
        """The last layer's attention of a trimmed prompt step: its logits rows (one per sequence, padded to a decode
        bucket) in decode form, with the kernel a decode step of as many rows takes, so that the step runs a
        variant the decode graphs compiled at start-up (a new one would compile mid-serving: ~0.6 s seen in a
        burst's first prompt step). Rows past the one-row kernels' sizes: decode_with_rope, over the selected qkv
        rows (it writes those rows' K/V again, the same values the rotary kernel wrote); others: the rotated q."""
        if self._small_step_kernels(rows.shape[0]) is None and self.attn.rotates_in_decode(logits_meta, qk_norm):
            sel = dataclasses.replace(logits_meta, slot_mapping=meta.slot_mapping.index_select(0, rows))
            o = self.attn.decode_with_rope(qkv.index_select(0, rows), self.nq, k_cache, v_cache, sel, self.scale,
                                           self.cos_sin, positions.index_select(0, rows))
        else:
            o = self.attn.forward(q.index_select(0, rows), k_cache, v_cache, logits_meta, self.scale)
        return o.reshape(-1, self.q_size)

    def _gate_up_act(self, h: torch.Tensor, w) -> torch.Tensor:
        """silu(h @ gate.T) * (h @ up.T) for w = [gate; up]: one kernel with SiLU-and-mul in its epilogue where it
        serves and measured faster (kernels/decode_gemm.py: bf16 on an H100, row counts that are whole 256-token
        blocks: the 256-row decode bucket, full prompt steps), else the GEMM, then silu_and_mul."""
        if h.is_cuda and type(w) is torch.Tensor and decode_gemm.fuses_rows(h.shape[0]):
            dg = decode_gemm.get()
            act = dg.swiglu(h, w) if dg is not None else None
            if act is not None:
                return act
        return self.ops.silu_and_mul(linear(h, w))

    def _small_row_parallel(self, g, x, w, res):
        """res + x @ w.T for the o and down projections of the decode-sized forward, and that sum's partial sums of
        squares (None: the next GEMV takes them itself). One rank: the residual add in the GEMV's epilogue. Tensor
        parallel: each rank's partial product is all-reduced first, then added."""
        if self.tp.world_size == 1:
            return g.gemv(x, w, residual=res, want_ssq=True)
        return res + self.tp.all_reduce(g.gemv(x, w)), None

    def forward(self, input_ids, positions, meta: AttentionMetadata, kv_caches, logits_indices,
                widen: bool = True, logits_meta: AttentionMetadata = None, hidden_rows: torch.Tensor = None):
        """Returns logits [len(logits_indices), vocab] for the rows the sampler needs: fp32, or with widen=False
        possibly in the model's dtype (the LM head's own output, before the exact widening to fp32).
        logits_meta: given when every logits row is the last new token of its sequence, the attention metadata
        of those rows alone in decode form (one query each, seeing its sequence's whole context). The last layer
        then writes every token's K/V but computes attention, the o projection and the MLP for those rows only:
        the other rows' outputs of the last layer feed nothing (attention.last_rows_metadata builds it).
        hidden_rows: row indices whose final-normed hidden states (HF's hidden_states[-1]) are returned too, in fp32:
        then (logits, hidden); every layer runs for every row (no logits_meta, not the decode-sized kernels)."""
        if hidden_rows is not None and logits_meta is not None:
            raise ValueError("hidden_rows needs every row's last layer: logits_meta must be None")
        g = self._small_step_kernels(input_ids.shape[0]) if hidden_rows is None else None
        if g is not None:
            return self._forward_small(g, input_ids, positions, meta, kv_caches, logits_indices)
        cfg, hd, ops, eps = self.cfg, self.cfg.head_dim, self.ops, self.cfg.rms_norm_eps
        x = self.params["embed"][input_ids]  # a gather: a fresh tensor, which the residual may update in place
        residual = None
        fused = self._residual_in_gemm(input_ids.shape[0])
        last = len(self.layers) - 1
        # Prompts with no cached context: attention reads the rotated K/V from qkv (the rotary kernel writes k back).
        fresh = bool(kv_caches) and self.attn.reads_fresh_kv(meta, kv_caches[0][0].dtype, self.dtype)
        k_cols, v_cols = slice(self.nq * hd, (self.nq + self.nkv) * hd), slice((self.nq + self.nkv) * hd, None)
        # Decode steps: rotary and the K/V write happen inside the attention kernel (no logits_meta there: every row
        # is a logits row).
        qk_norm = "q_norm" in self.layers[0]
        rope_in_attn = bool(kv_caches) and logits_meta is None and self.attn.rotates_in_decode(meta, qk_norm)
        for i, L in enumerate(self.layers):
            if residual is None:
                residual, h = x, ops.add_rms_norm(x, None, L["in_norm"], eps)
            elif fused:
                h = ops.add_rms_norm(residual, None, L["in_norm"], eps)  # the down GEMM added into it
            else:
                h = ops.add_rms_norm(x, residual, L["in_norm"], eps)  # residual += x, in place
            qkv = linear(h, L["qkv_w"], L.get("qkv_b"))
            k_cache, v_cache = kv_caches[i]
            if rope_in_attn:  # decode: the attention kernel rotates q and the new key and writes the K/V itself
                o = self.attn.decode_with_rope(qkv, self.nq, k_cache, v_cache, meta, self.scale, self.cos_sin,
                                               positions).reshape(-1, self.q_size)
            else:
                trim = i == last and logits_meta is not None  # this layer computes the logits rows only
                # (k_back: the rotated keys replace the raw ones in qkv for the fresh K/V; never in a trimmed layer,
                # whose decode-form attention may rotate the logits rows' keys from qkv again.)
                q = ops.rope_and_cache(qkv, self.cos_sin, positions, meta.slot_mapping, k_cache, v_cache, self.nq,
                                       self.nkv, hd, L.get("q_norm"), L.get("k_norm"), eps, k_back=fresh and not trim)
                if trim:
                    # Every token's K/V is in the cache now; from here on only the logits rows are computed. The
                    # residual stream is whole at this point in either form, so the rows left take the form of their
                    # own count (decode-sized: the separate add, with the decode buckets' GEMMs).
                    o = self._last_rows_attention(q, qkv, positions, meta, logits_meta, logits_indices, k_cache,
                                                  v_cache, qk_norm)
                    residual = residual.index_select(0, logits_indices)
                    meta, logits_indices = logits_meta, None
                    fused = self._residual_in_gemm(o.shape[0])
                else:
                    kv = None
                    if fresh:  # the step's own rotated K/V, token-major views of qkv
                        kv = (qkv[:, k_cols].view(-1, self.nkv, hd), qkv[:, v_cols].view(-1, self.nkv, hd))
                    o = self.attn.forward(q, k_cache, v_cache, meta, self.scale, fresh=kv).reshape(-1, self.q_size)
            if fused:
                residual.addmm_(o, L["o_w"].t())
                h = ops.add_rms_norm(residual, None, L["post_norm"], eps)
                residual.addmm_(self._gate_up_act(h, L["gate_up_w"]), L["down_w"].t())
                continue
            x = self.tp.all_reduce(linear(o, L["o_w"]))
            h = ops.add_rms_norm(x, residual, L["post_norm"], eps)
            if cfg.num_experts:
                x = self.tp.all_reduce(self._moe(h, L))
            else:
                x = self.tp.all_reduce(linear(self._gate_up_act(h, L["gate_up_w"]), L["down_w"]))
        hidden = None
        if hidden_rows is not None:  # every row's final norm (it is row-wise), then the rows each output needs
            h = ops.add_rms_norm(residual, None, self.params["norm"], eps) if fused else \
                ops.add_rms_norm(x, residual, self.params["norm"], eps)
            hidden = h.index_select(0, hidden_rows).float()
            h = h.index_select(0, logits_indices)
        else:
            if logits_indices is not None:  # (None: the last layer computed the logits rows only)
                residual = residual[logits_indices]
                x = None if fused else x[logits_indices]
            if fused:
                h = ops.add_rms_norm(residual, None, self.params["norm"], eps)
            else:
                h = ops.add_rms_norm(x, residual, self.params["norm"], eps)
        logits = linear(h, self.params["lm_head"])
        if widen:
            logits = logits.float()
        if self.vocab_parallel:
            logits = self.tp.all_gather_last_dim(logits)
        return logits if hidden is None else (logits, hidden)
