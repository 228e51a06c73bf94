# Small-batch (decode-sized) matrix-vector kernels: y[M, N] = f(x)[M, K] @ W[N, K].T for M <= MAX_ROWS rows,
# bf16/fp16 weights, fp32 accumulation. Each program owns BLOCK_N output columns and streams their weight rows
# over K once, so the kernel is a pass over the weight bytes; the small activation rows stay in L1/L2.
# Optional stages fused around the weight stream, each computing the same function as the unfused ops
# (kernels/fused.py) with the same bf16 rounding points as transformers:
#   prologue NORM:  x -> RMSNorm(x) * norm_w (normalised value rounded, then the weight product rounded);
#                   the row's sum of squares comes from the producer's partials (SSQ_IN) or is recomputed
#   prologue GATHER: activation row m is x[idx[m]] (the LM head reads only the rows the sampler needs)
#   epilogue RES:   out = residual + round(y)         (the residual add of the next RMSNorm, rounded once)
#   epilogue SILU:  W holds gate rows [0, N) and up rows [UP, UP + N); out = round(silu(round(g))) * round(u)
#   epilogue F32:   out = float(round(y))            (the LM head's logits, written as fp32 directly)
#   epilogue ROPE:  W is a fused q|k|v matrix; a program owns pairs (row d, row d + hd/2) of heads, rotates the
#                   q and k pairs (neox halves, as fused.rope_and_cache) and writes q out, k and v to the cache
# Programmatic dependent launch (PDL, Hopper+): a kernel launched with launch_pdl may start while the previous
# kernel in the stream drains. Each kernel here lets its dependents launch at once, loads only weights (never
# written) before gdc_wait(), and reads or writes activations, caches and outputs only after it; gdc_wait()
# returns once the previous kernel (hence every earlier one) has finished and its writes are visible.
# Invariant: no split over K, so every output element is written by exactly one program, once.
import os

import torch
import triton
import triton.language as tl

try:
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    HAS_GDC = True
except Exception:  # older Triton: PDL stays off, these are never traced
    HAS_GDC = False

    @triton.jit
    def gdc_wait():
        pass

    @triton.jit
    def gdc_launch_dependents():
        pass


MAX_ROWS = 8  # the model uses these kernels for steps of at most this many tokens

EPI_NONE, EPI_RES, EPI_SILU, EPI_F32, EPI_ROPE = 0, 1, 2, 3, 4

# Switches of the small-step path, read by LlamaModel._forward_small at every forward (benchmarks flip them
# between graph captures): pdl = programmatic dependent launch + weight prefetch before the wait;
# rope = rotary + KV-cache write in the qkv epilogue; w_evict = the L2 eviction policy of the weight loads:
# evict_first (LMI_DECODE_W_EVICT=0: the default policy). A step streams 15 GB of weights, read once, through a 50 MB
# L2 that also holds what the next kernels read at once (activations, partial sums, KV, norm weights, rotary tables);
# the likely reason weights marked first to go pay: batch-1 forward + greedy graph 5.240 -> 5.181 ms at context 128,
# 5.335 -> 5.271 at 512, 5.471 -> 5.404 at 2,048, batches 2-8 -0.01 ms (H100, bench/gpu-decode-evict-ab.py).
# (A decode attention of this path's own in the PDL chain measured slower than paged_attention's kernels launched
# normally and was removed: bench/notes-gemv.md.)
FLAGS = {
    "pdl": os.environ.get("LMI_DECODE_PDL", "1") != "0",
    "rope": os.environ.get("LMI_DECODE_ROPE", "1") != "0",
    "w_evict": "" if os.environ.get("LMI_DECODE_W_EVICT", "1") == "0" else "evict_first",
}
_PDL_OK = None


def pdl_supported() -> bool:
    global _PDL_OK
    if _PDL_OK is None:
        _PDL_OK = HAS_GDC and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9
    return _PDL_OK


def use_pdl() -> bool:
    return FLAGS["pdl"] and pdl_supported()


@triton.jit
def _x_tile(x_rows, nw_ptr, w_ptr, kk, m_ok, K, rstd, NORM: tl.constexpr, EVEN: tl.constexpr):
    """Activation columns kk of the M rows, RMSNormed (rounded like fused.add_rms_norm) when NORM."""
    dt = w_ptr.dtype.element_ty
    if EVEN:
        xv = tl.load(x_rows + kk[None, :], mask=m_ok[:, None], other=0.0)
    else:
        xv = tl.load(x_rows + kk[None, :], mask=m_ok[:, None] & (kk[None, :] < K), other=0.0)
    if NORM:
        if EVEN:
            nw = tl.load(nw_ptr + kk)
        else:
            nw = tl.load(nw_ptr + kk, mask=kk < K, other=0.0)
        xv = ((xv.to(tl.float32) * rstd[:, None]).to(dt).to(tl.float32) * nw.to(tl.float32)[None, :]).to(dt)
    else:
        xv = xv.to(dt)
    return xv


@triton.jit
def _gemv_kernel(x_ptr, idx_ptr, nw_ptr, w_ptr, b_ptr, r_ptr, y_ptr, ssq_in_ptr, ssq_out_ptr,
                 pos_ptr, slot_ptr, cs_ptr, kc_ptr, vc_ptr,
                 M, N, K, UP, stride_x, stride_r, stride_y, parts_in, eps, NQ, NKV,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRE_K: tl.constexpr,
                 NORM: tl.constexpr, SSQ_IN: tl.constexpr, SSQ_OUT: tl.constexpr, GATHER: tl.constexpr,
                 BIAS: tl.constexpr, EPI: tl.constexpr, PAIRED: tl.constexpr, USE_DOT: tl.constexpr,
                 EVEN_K: tl.constexpr, HD: tl.constexpr, PDL: tl.constexpr, W_EVICT: tl.constexpr):
    pid = tl.program_id(0)
    if PDL:
        gdc_launch_dependents()  # the next kernel may launch now: it touches nothing of ours before its wait
    HALF: tl.constexpr = HD // 2
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rn_safe = tl.where(n_ok, rn, 0)  # out-of-range columns re-read row 0: no masks on the stream
    if EPI == 4:  # column i = pair i: weight rows (i // HALF) * HD + i % HALF and that + HALF
        row = ((rn_safe // HALF) * HD + rn_safe % HALF).to(tl.int64)
    else:
        row = rn_safe.to(tl.int64)
    w_rows = w_ptr + row[:, None] * K
    u_rows = w_ptr + (row + UP)[:, None] * K  # the paired rows (SILU: up rows; ROPE: second halves)
    dt = w_ptr.dtype.element_ty
    if PRE_K > 0:  # weights only, before the wait: streamed while the previous kernel drains
        kp = tl.arange(0, PRE_K)
        wp = tl.load(w_rows + kp[None, :], eviction_policy=W_EVICT)
        if PAIRED:
            upre = tl.load(u_rows + kp[None, :], eviction_policy=W_EVICT)
    if PDL:
        gdc_wait()
    rm = tl.arange(0, BLOCK_M)
    m_ok = rm < M
    if GATHER:
        xrow = tl.load(idx_ptr + rm, mask=m_ok, other=0).to(tl.int64)
    else:
        xrow = rm.to(tl.int64)
    x_rows = x_ptr + xrow[:, None] * stride_x
    rk = tl.arange(0, BLOCK_K)
    rstd = tl.full([BLOCK_M], 1.0, dtype=tl.float32)
    if NORM:
        if SSQ_IN > 0:
            # The producer of x (a RES epilogue) left one partial sum of squares per program: one load, no pass.
            pp = tl.arange(0, SSQ_IN)
            parts = tl.load(ssq_in_ptr + xrow[:, None] * parts_in + pp[None, :],
                            mask=m_ok[:, None] & (pp[None, :] < parts_in), other=0.0)
            ss = tl.sum(parts, 1)
        else:
            ss = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                kk = k0 + rk
                xv = tl.load(x_rows + kk[None, :], mask=m_ok[:, None] & (kk[None, :] < K), other=0.0)
                ss += tl.sum(xv.to(tl.float32) * xv.to(tl.float32), 1)
        rstd = tl.rsqrt(ss / K + eps)
    # The epilogue's small operands, loaded before the weight loop so their latency hides under the stream
    # instead of adding to every program's end.
    out_mask = m_ok[:, None] & n_ok[None, :]
    if BIAS:
        bias = tl.load(b_ptr + row, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        if PAIRED:
            bias_u = tl.load(b_ptr + row + UP, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if EPI == 1:
        r = tl.load(r_ptr + rm[:, None].to(tl.int64) * stride_r + rn[None, :], mask=out_mask, other=0.0)
    if EPI == 4:
        head = rn_safe // HALF
        d = rn_safe % HALF
        pos = tl.load(pos_ptr + rm, mask=m_ok, other=0).to(tl.int64)
        slot = tl.load(slot_ptr + rm, mask=m_ok, other=0).to(tl.int64)
        c = tl.load(cs_ptr + pos[:, None] * HD + d[None, :], mask=out_mask, other=1.0).to(tl.float32)
        s = tl.load(cs_ptr + pos[:, None] * HD + HALF + d[None, :], mask=out_mask, other=0.0).to(tl.float32)
    if USE_DOT:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    else:  # BLOCK_M == 1: elementwise products, reduced over K once at the end
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    pre = tl.zeros([BLOCK_N], dtype=tl.float32)
    pre_u = tl.zeros([BLOCK_N], dtype=tl.float32)
    if PRE_K > 0:
        xp = _x_tile(x_rows, nw_ptr, w_ptr, kp, m_ok, K, rstd, NORM, True)
        if USE_DOT:
            acc += tl.dot(xp, tl.trans(wp))
            if PAIRED:
                acc_u += tl.dot(xp, tl.trans(upre))
        else:
            pre = tl.sum(wp.to(tl.float32) * xp.to(tl.float32), 1)
            if PAIRED:
                pre_u = tl.sum(upre.to(tl.float32) * xp.to(tl.float32), 1)
    for k0 in range(PRE_K, K, BLOCK_K):
        kk = k0 + rk
        xv = _x_tile(x_rows, nw_ptr, w_ptr, kk, m_ok, K, rstd, NORM, EVEN_K)
        if EVEN_K:
            w = tl.load(w_rows + kk[None, :], eviction_policy=W_EVICT)
        else:
            w = tl.load(w_rows + kk[None, :], mask=kk[None, :] < K, other=0.0, eviction_policy=W_EVICT)
        if USE_DOT:
            acc += tl.dot(xv, tl.trans(w))
        else:
            acc += w.to(tl.float32) * xv.to(tl.float32)
        if PAIRED:
            if EVEN_K:
                u = tl.load(u_rows + kk[None, :], eviction_policy=W_EVICT)
            else:
                u = tl.load(u_rows + kk[None, :], mask=kk[None, :] < K, other=0.0, eviction_policy=W_EVICT)
            if USE_DOT:
                acc_u += tl.dot(xv, tl.trans(u))
            else:
                acc_u += u.to(tl.float32) * xv.to(tl.float32)
    if USE_DOT:
        y = acc
        yu = acc_u
    else:
        y = (tl.sum(acc, 1) + pre)[None, :]
        yu = (tl.sum(acc_u, 1) + pre_u)[None, :]
    if BIAS:
        y = y + bias
        if PAIRED:
            yu = yu + bias_u
    if EPI == 4:
        a = y.to(dt).to(tl.float32)  # the qkv GEMM's rounding, then rotary in fp32 as fused.rope_and_cache
        b = yu.to(dt).to(tl.float32)
        rot = (head < NQ + NKV)[None, :]  # q and k heads rotate; v heads go to the cache as they are
        o1 = tl.where(rot, a * c - b * s, a).to(dt)
        o2 = tl.where(rot, b * c + a * s, b).to(dt)
        q_mask = out_mask & (head < NQ)[None, :]
        q_off = rm[:, None].to(tl.int64) * stride_y + (head * HD + d)[None, :]
        tl.store(y_ptr + q_off, o1, mask=q_mask)
        tl.store(y_ptr + q_off + HALF, o2, mask=q_mask)
        is_v = head >= NQ + NKV
        kvh = tl.where(is_v, head - NQ - NKV, head - NQ)
        c_off = slot[:, None] * (NKV * HD) + (kvh * HD + d)[None, :]
        k_mask = out_mask & ((head >= NQ) & (head < NQ + NKV))[None, :]
        v_mask = out_mask & is_v[None, :]
        kv_dt = kc_ptr.dtype.element_ty  # the model's dtype, or fp8 e4m3 (rounded from it)
        tl.store(kc_ptr + c_off, o1.to(kv_dt), mask=k_mask)
        tl.store(kc_ptr + c_off + HALF, o2.to(kv_dt), mask=k_mask)
        tl.store(vc_ptr + c_off, o1.to(kv_dt), mask=v_mask)
        tl.store(vc_ptr + c_off + HALF, o2.to(kv_dt), mask=v_mask)
    else:
        y_off = rm[:, None].to(tl.int64) * stride_y + rn[None, :]
        if EPI == 1:
            out = (y.to(dt).to(tl.float32) + r.to(tl.float32)).to(dt)
            if SSQ_OUT:  # this program's share of each row's sum of squares, for the next kernel's RMSNorm
                of = tl.where(out_mask, out.to(tl.float32), 0.0)
                tl.store(ssq_out_ptr + rm.to(tl.int64) * tl.num_programs(0) + pid, tl.sum(of * of, 1), mask=m_ok)
        elif EPI == 2:
            g = y.to(dt).to(tl.float32)
            act = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
            out = (act * yu.to(dt).to(tl.float32)).to(dt)
        elif EPI == 3:
            out = y.to(dt).to(tl.float32)
        else:
            out = y.to(dt)
        tl.store(y_ptr + y_off, out, mask=out_mask)


# (USE_DOT, BLOCK_N, BLOCK_K, num_warps, num_stages), from bench/gpu-gemv-bench.py on an H100 (numbers in
# bench/notes-gemv.md): one row streams best as elementwise products with 4 weight rows x 1024 columns per
# step and 8 warps (all five shapes within 1% of their best; the SILU pair takes 2 gate + 2 up rows, the rope
# variant 2 pairs); 2-8 rows go through tl.dot (rows padded to 16).
def config(M: int, N: int, K: int, silu: bool = False):
    """(use_dot, BLOCK_N, BLOCK_K, warps, stages). One row: 4 row pairs a program for the paired epilogues (qkv
    with rotary, gate|up with SiLU), 4 rows x 2048 columns for the rest; chosen inside the whole decode step, where
    it beat the per-shape standalone pick (2 pairs / 4 rows x 1024) by 1.3%: batch-1 replay 5.378 -> 5.310 ms on
    an H100 (python3 bench/gpu-gemv-step.py, interleaved rounds; 5.441 -> 5.370 on another H100)."""
    if M == 1:
        return (False, 4, 1024, 8, 2) if silu else (False, 4, 2048, 8, 2)
    if silu:
        return (True, 32, 256, 4, 3)
    return (True, 32, 512, 4, 3) if K >= 8192 or N <= 4096 else (True, 64, 256, 4, 3)


def _prefetch_k(use_dot: bool, bk: int, K: int) -> int:
    """Columns of weight prefetched before the PDL wait: up to 4096 per row for one row (32 KB a program, all
    of a 4096-wide matrix), one tile for the tl.dot variant; always a prefix the main loop then skips."""
    if use_dot:
        return bk if K >= bk else 0
    p = 1 << (min(K, 4096).bit_length() - 1)
    return p


def gemv(x, w, *, bias=None, norm_w=None, eps=0.0, ssq=None, residual=None, want_ssq=False, silu_up=0, rows=None,
         out_f32=False, rope=None, cfg=None, pdl=None):
    """y = f(x) @ w.T for x [M, K] (M <= MAX_ROWS), w [N', K] contiguous, fp32 accumulation.
    norm_w: RMSNorm x first (eps), its sums of squares taken from `ssq` (the partials a want_ssq call returned
    with x) or, without it, recomputed from x; rows: int64 row indices into x (gather); residual [M, N]:
    return residual + y, and with want_ssq also that sum's partial sums of squares, (y, ssq);
    silu_up = U > 0: w holds gate rows [0, U) and up rows [U, 2U), return silu(gate) * up [M, U];
    out_f32: return fp32 logits (rounded to w's dtype first);
    rope = (cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd): w is q|k|v; rotate q and k, write k and
    v to the cache slots, return q [M, nq, hd] (fused.rope_and_cache after the plain product);
    pdl: launch with programmatic dependent launch (default: FLAGS, where the GPU supports it)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if residual is not None and residual.stride(-1) != 1:
        residual = residual.contiguous()
    pdl = use_pdl() if pdl is None else (pdl and pdl_supported())
    K = x.shape[-1]
    M = rows.shape[0] if rows is not None else x.shape[0]
    hd = nq = nkv = 0
    if rope is not None:
        cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd = rope
        N = (nq + 2 * nkv) * hd // 2  # pairs
        up = hd // 2
    else:
        N = silu_up if silu_up else w.shape[0]
        up = silu_up
    paired = bool(silu_up) or rope is not None
    use_dot, bn, bk, warps, stages = cfg or config(M, N, K, paired)
    bm = 16 if use_dot else 1
    if M > bm:
        raise ValueError(f"gemv: {M} rows > {bm} for this variant")
    bk = min(bk, triton.next_power_of_2(K))
    pre_k = _prefetch_k(use_dot, bk, K) if pdl else 0
    if rope is not None:
        y = torch.empty((M, nq, hd), dtype=w.dtype, device=x.device)
    else:
        y = torch.empty((M, N), dtype=torch.float32 if out_f32 else w.dtype, device=x.device)
    programs = triton.cdiv(N, bn)
    ssq_out = torch.empty((M, programs), dtype=torch.float32, device=x.device) if want_ssq else None
    if M:
        if want_ssq and residual is None:
            raise ValueError("gemv: want_ssq needs the residual epilogue")
        if rope is not None:
            epi = EPI_ROPE
        else:
            epi = EPI_RES if residual is not None else EPI_SILU if silu_up else EPI_F32 if out_f32 else EPI_NONE
        dummy = w
        extra = {"launch_pdl": True} if pdl else {}
        _gemv_kernel[(programs,)](
            x, rows if rows is not None else dummy, norm_w if norm_w is not None else dummy, w,
            bias if bias is not None else dummy, residual if residual is not None else dummy, y,
            ssq if ssq is not None else dummy, ssq_out if ssq_out is not None else dummy,
            positions if rope is not None else dummy, slots if rope is not None else dummy,
            cos_sin if rope is not None else dummy, k_cache if rope is not None else dummy,
            v_cache if rope is not None else dummy,
            M, N, K, up, x.stride(0), residual.stride(0) if residual is not None else 0,
            nq * hd if rope is not None else y.stride(0), ssq.shape[1] if ssq is not None else 0, eps, nq, nkv,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRE_K=pre_k, NORM=norm_w is not None,
            SSQ_IN=triton.next_power_of_2(ssq.shape[1]) if ssq is not None and norm_w is not None else 0,
            SSQ_OUT=want_ssq, GATHER=rows is not None, BIAS=bias is not None, EPI=epi, PAIRED=paired,
            USE_DOT=use_dot, EVEN_K=(K - pre_k) % bk == 0, HD=max(hd, 2), PDL=pdl, W_EVICT=FLAGS["w_evict"],
            num_warps=warps, num_stages=stages, **extra,
        )
    return (y, ssq_out) if want_ssq else y
