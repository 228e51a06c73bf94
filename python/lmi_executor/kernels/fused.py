# Fused elementwise kernels for the CUDA path, each one pass over memory where PyTorch eager takes many:
# residual add + RMSNorm, q/k RMSNorm (Qwen3) + rotary + KV-cache write, SiLU-and-mul. Invariant: each
# rounds to the model dtype at the same points as transformers' modules (sum of residual, normed value
# before the weight, SiLU output before the product), so bf16 results track the eager reference.
import torch
import triton
import triton.language as tl


@triton.jit
def _add_rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, N, eps, HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(x_ptr + row * N + cols, mask=mask, other=0.0)
    if HAS_RES:
        s = (x.to(tl.float32) + tl.load(res_ptr + row * N + cols, mask=mask, other=0.0).to(tl.float32)).to(x.dtype)
        tl.store(res_ptr + row * N + cols, s, mask=mask)
        x = s
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, 0) / N
    y = (xf * tl.rsqrt(var + eps)).to(x.dtype)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * N + cols, (y.to(tl.float32) * w.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=mask)


def add_rms_norm(x: torch.Tensor, residual, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Returns norm(x + residual) * weight; residual (if given) is updated in place to x + residual."""
    N = x.shape[-1]
    out = torch.empty_like(x)
    rows = x.numel() // N
    if rows:
        _add_rms_norm_kernel[(rows,)](x, residual if residual is not None else x, weight, out, N, eps,
                                      HAS_RES=residual is not None, BLOCK=triton.next_power_of_2(N), num_warps=8)
    return out


@triton.jit
def _rope_cache_kernel(qkv_ptr, cos_sin_ptr, pos_ptr, slot_ptr, q_out_ptr, k_cache_ptr, v_cache_ptr,
                       qn_ptr, kn_ptr, eps, qkv_stride,
                       NQ: tl.constexpr, NKV: tl.constexpr, HD: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr,
                       QK_NORM: tl.constexpr, K_BACK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    HALF: tl.constexpr = HD // 2
    pos = tl.load(pos_ptr + t).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    d = tl.arange(0, HALF)[None, :]
    c = tl.load(cos_sin_ptr + pos * HD + d)
    s = tl.load(cos_sin_ptr + pos * HD + HALF + d)
    base = qkv_ptr + t * qkv_stride

    hq = tl.arange(0, BQ)[:, None]
    mq = hq < NQ
    q1 = tl.load(base + hq * HD + d, mask=mq, other=0.0)
    q2 = tl.load(base + hq * HD + HALF + d, mask=mq, other=0.0)
    dt = q1.dtype
    q1 = q1.to(tl.float32)
    q2 = q2.to(tl.float32)
    if QK_NORM:
        r = tl.rsqrt((tl.sum(q1 * q1, 1) + tl.sum(q2 * q2, 1)) / HD + eps)[:, None]
        q1 = (q1 * r).to(dt).to(tl.float32) * tl.load(qn_ptr + d).to(tl.float32)
        q2 = (q2 * r).to(dt).to(tl.float32) * tl.load(qn_ptr + HALF + d).to(tl.float32)
        q1 = q1.to(dt).to(tl.float32)
        q2 = q2.to(dt).to(tl.float32)
    qo = q_out_ptr + t * NQ * HD + hq * HD + d
    tl.store(qo, (q1 * c - q2 * s).to(dt), mask=mq)
    tl.store(qo + HALF, (q2 * c + q1 * s).to(dt), mask=mq)

    hk = tl.arange(0, BK)[:, None]
    mk = hk < NKV
    kb = base + NQ * HD
    k1 = tl.load(kb + hk * HD + d, mask=mk, other=0.0).to(tl.float32)
    k2 = tl.load(kb + hk * HD + HALF + d, mask=mk, other=0.0).to(tl.float32)
    if QK_NORM:
        r = tl.rsqrt((tl.sum(k1 * k1, 1) + tl.sum(k2 * k2, 1)) / HD + eps)[:, None]
        k1 = ((k1 * r).to(dt).to(tl.float32) * tl.load(kn_ptr + d).to(tl.float32)).to(dt).to(tl.float32)
        k2 = ((k2 * r).to(dt).to(tl.float32) * tl.load(kn_ptr + HALF + d).to(tl.float32)).to(dt).to(tl.float32)
    ko = k_cache_ptr + slot * NKV * HD + hk * HD + d
    kv_dt = k_cache_ptr.dtype.element_ty  # the model's dtype, or fp8 e4m3 (rounded from the model's dtype)
    k1r = (k1 * c - k2 * s).to(dt)
    k2r = (k2 * c + k1 * s).to(dt)
    tl.store(ko, k1r.to(kv_dt), mask=mk)
    tl.store(ko + HALF, k2r.to(kv_dt), mask=mk)
    if K_BACK:  # the rotated keys also replace the raw ones in qkv, for attention that reads the step's own K/V
        tl.store(kb + hk * HD + d, k1r, mask=mk)
        tl.store(kb + hk * HD + HALF + d, k2r, mask=mk)

    vd = tl.arange(0, HD)[None, :]
    v = tl.load(kb + NKV * HD + hk * HD + vd, mask=mk, other=0.0)
    tl.store(v_cache_ptr + slot * NKV * HD + hk * HD + vd, v.to(kv_dt), mask=mk)


def rope_and_cache(qkv, cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd, q_norm=None, k_norm=None, eps=0.0,
                   k_back=False):
    """qkv [T, (nq + 2 nkv) hd] -> rotated q [T, nq, hd]; rotated k and v written to the cache slots, and with
    k_back the rotated k also written over qkv's k columns."""
    T = qkv.shape[0]
    q = torch.empty((T, nq, hd), dtype=qkv.dtype, device=qkv.device)
    if T:
        qk = q_norm is not None
        _rope_cache_kernel[(T,)](qkv, cos_sin, positions, slots, q, k_cache, v_cache,
                                 q_norm if qk else qkv, k_norm if qk else qkv, eps, qkv.stride(0),
                                 NQ=nq, NKV=nkv, HD=hd, BQ=triton.next_power_of_2(nq), BK=triton.next_power_of_2(nkv),
                                 QK_NORM=qk, K_BACK=k_back, num_warps=4)
    return q


@triton.jit
def _silu_mul_kernel(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    g = tl.load(x_ptr + row * 2 * N + cols, mask=mask, other=0.0)
    u = tl.load(x_ptr + row * 2 * N + N + cols, mask=mask, other=0.0)
    gf = g.to(tl.float32)
    a = (gf / (1.0 + tl.exp(-gf))).to(g.dtype)
    tl.store(out_ptr + row * N + cols, (a.to(tl.float32) * u.to(tl.float32)).to(g.dtype), mask=mask)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    T, N2 = gate_up.shape
    N = N2 // 2
    out = torch.empty((T, N), dtype=gate_up.dtype, device=gate_up.device)
    if T:
        _silu_mul_kernel[(T, triton.cdiv(N, 1024))](gate_up, out, N, BLOCK=1024, num_warps=4)
    return out
