# Small-batch (decode-sized) matrix-vector kernels: y[M, N] = f(x)[M, K] @ W[N, K].T for M <= MAX_ROWS rows,
# bf16/fp16 weights, fp32 accumulation. Each program owns BLOCK_N output columns and streams their weight rows
# over K once, so the kernel is a pass over the weight bytes; the small activation rows stay in L1/L2.
# Optional stages fused around the weight stream, each computing the same function as the unfused ops
# (kernels/fused.py) with the same bf16 rounding points as transformers:
#   prologue NORM:  x -> RMSNorm(x) * norm_w (normalised value rounded, then the weight product rounded);
#                   every program recomputes the row's sum of squares (K values, L2-resident: cheap)
#   prologue GATHER: activation row m is x[idx[m]] (the LM head reads only the rows the sampler needs)
#   epilogue RES:   out = residual + round(y)         (the residual add of the next RMSNorm, rounded once)
#   epilogue SILU:  W holds gate rows [0, N) and up rows [UP, UP + N); out = round(silu(round(g))) * round(u)
#   epilogue F32:   out = float(round(y))            (the LM head's logits, written as fp32 directly)
# Invariant: no split over K, so every output element is written by exactly one program, once.
import torch
import triton
import triton.language as tl

MAX_ROWS = 8  # the model uses these kernels for steps of at most this many tokens

EPI_NONE, EPI_RES, EPI_SILU, EPI_F32 = 0, 1, 2, 3


@triton.jit
def _gemv_kernel(x_ptr, idx_ptr, nw_ptr, w_ptr, b_ptr, r_ptr, y_ptr, ssq_in_ptr, ssq_out_ptr,
                 M, N, K, UP, stride_x, stride_r, stride_y, parts_in, eps,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 NORM: tl.constexpr, SSQ_IN: tl.constexpr, SSQ_OUT: tl.constexpr, GATHER: tl.constexpr,
                 BIAS: tl.constexpr, EPI: tl.constexpr, USE_DOT: tl.constexpr, EVEN_K: tl.constexpr):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rn_safe = tl.where(n_ok, rn, 0).to(tl.int64)  # out-of-range columns re-read row 0: no masks on the stream
    rm = tl.arange(0, BLOCK_M)
    m_ok = rm < M
    if GATHER:
        xrow = tl.load(idx_ptr + rm, mask=m_ok, other=0).to(tl.int64)
    else:
        xrow = rm.to(tl.int64)
    x_rows = x_ptr + xrow[:, None] * stride_x
    rk = tl.arange(0, BLOCK_K)
    dt = w_ptr.dtype.element_ty
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
    w_rows = w_ptr + rn_safe[:, None] * K
    u_rows = w_ptr + (rn_safe + UP)[:, None] * K  # the up rows paired with the gate rows (EPI == 2 only)
    if USE_DOT:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    else:  # BLOCK_M == 1: elementwise products, reduced over K once at the end
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        if EVEN_K:
            xv = tl.load(x_rows + kk[None, :], mask=m_ok[:, None], other=0.0)
            w = tl.load(w_rows + kk[None, :])
        else:
            xv = tl.load(x_rows + kk[None, :], mask=m_ok[:, None] & (kk[None, :] < K), other=0.0)
            w = tl.load(w_rows + kk[None, :], mask=kk[None, :] < K, other=0.0)
        if NORM:
            if EVEN_K:
                nw = tl.load(nw_ptr + kk)
            else:
                nw = tl.load(nw_ptr + kk, mask=kk < K, other=0.0)
            xv = ((xv.to(tl.float32) * rstd[:, None]).to(dt).to(tl.float32) * nw.to(tl.float32)[None, :]).to(dt)
        else:
            xv = xv.to(dt)
        if USE_DOT:
            acc += tl.dot(xv, tl.trans(w))
        else:
            acc += w.to(tl.float32) * xv.to(tl.float32)
        if EPI == 2:
            if EVEN_K:
                u = tl.load(u_rows + kk[None, :])
            else:
                u = tl.load(u_rows + kk[None, :], mask=kk[None, :] < K, other=0.0)
            if USE_DOT:
                acc_u += tl.dot(xv, tl.trans(u))
            else:
                acc_u += u.to(tl.float32) * xv.to(tl.float32)
    if USE_DOT:
        y = acc
        yu = acc_u
    else:
        y = tl.sum(acc, 1)[None, :]
        yu = tl.sum(acc_u, 1)[None, :]
    if BIAS:
        y = y + tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    out_mask = m_ok[:, None] & n_ok[None, :]
    y_off = rm[:, None].to(tl.int64) * stride_y + rn[None, :]
    if EPI == 1:
        r = tl.load(r_ptr + rm[:, None].to(tl.int64) * stride_r + rn[None, :], mask=out_mask, other=0.0)
        out = (y.to(dt).to(tl.float32) + r.to(tl.float32)).to(dt)
        if SSQ_OUT:  # this program's share of each row's sum of squares, for the next kernel's RMSNorm
            of = tl.where(out_mask, out.to(tl.float32), 0.0)
            tl.store(ssq_out_ptr + rm.to(tl.int64) * tl.num_programs(0) + pid, tl.sum(of * of, 1), mask=m_ok)
    elif EPI == 2:
        g = y.to(dt).to(tl.float32)
        a = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
        out = (a * yu.to(dt).to(tl.float32)).to(dt)
    elif EPI == 3:
        out = y.to(dt).to(tl.float32)
    else:
        out = y.to(dt)
    tl.store(y_ptr + y_off, out, mask=out_mask)


# (USE_DOT, BLOCK_N, BLOCK_K, num_warps, num_stages), from bench/gpu-gemv-bench.py on an H100 (numbers in
# bench/notes-gemv.md): one row streams best as elementwise products with 4 weight rows x 1024 columns per
# step and 8 warps (all five shapes within 1% of their best; the SiLU pair takes 2 gate + 2 up rows);
# 2-8 rows go through tl.dot (rows padded to 16).
def config(M: int, N: int, K: int, silu: bool = False):
    if M == 1:
        return (False, 2, 1024, 8, 2) if silu else (False, 4, 1024, 8, 2)
    if silu:
        return (True, 32, 256, 4, 3)
    return (True, 32, 512, 4, 3) if K >= 8192 or N <= 4096 else (True, 64, 256, 4, 3)


def gemv(x, w, *, bias=None, norm_w=None, eps=0.0, ssq=None, residual=None, want_ssq=False, silu_up=0, rows=None,
         out_f32=False, cfg=None):
    """y = f(x) @ w.T for x [M, K] (M <= MAX_ROWS), w [N', K] contiguous, fp32 accumulation.
    norm_w: RMSNorm x first (eps), its sums of squares taken from `ssq` (the partials a want_ssq call returned
    with x) or, without it, recomputed from x; rows: int64 row indices into x (gather); residual [M, N]:
    return residual + y, and with want_ssq also that sum's partial sums of squares, (y, ssq);
    silu_up = U > 0: w holds gate rows [0, U) and up rows [U, 2U), return silu(gate) * up [M, U];
    out_f32: return fp32 logits (rounded to w's dtype first)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if residual is not None and residual.stride(-1) != 1:
        residual = residual.contiguous()
    K = x.shape[-1]
    M = rows.shape[0] if rows is not None else x.shape[0]
    N = silu_up if silu_up else w.shape[0]
    use_dot, bn, bk, warps, stages = cfg or config(M, N, K, bool(silu_up))
    bm = 16 if use_dot else 1
    if M > bm:
        raise ValueError(f"gemv: {M} rows > {bm} for this variant")
    bk = min(bk, triton.next_power_of_2(K))
    y = torch.empty((M, N), dtype=torch.float32 if out_f32 else w.dtype, device=x.device)
    programs = triton.cdiv(N, bn)
    ssq_out = torch.empty((M, programs), dtype=torch.float32, device=x.device) if want_ssq else None
    if M:
        if want_ssq and residual is None:
            raise ValueError("gemv: want_ssq needs the residual epilogue")
        epi = EPI_RES if residual is not None else EPI_SILU if silu_up else EPI_F32 if out_f32 else EPI_NONE
        dummy = w
        _gemv_kernel[(programs,)](
            x, rows if rows is not None else dummy, norm_w if norm_w is not None else dummy, w,
            bias if bias is not None else dummy, residual if residual is not None else dummy, y,
            ssq if ssq is not None else dummy, ssq_out if ssq_out is not None else dummy,
            M, N, K, silu_up, x.stride(0), residual.stride(0) if residual is not None else 0, y.stride(0),
            ssq.shape[1] if ssq is not None else 0, eps,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, NORM=norm_w is not None,
            SSQ_IN=triton.next_power_of_2(ssq.shape[1]) if ssq is not None and norm_w is not None else 0,
            SSQ_OUT=want_ssq, GATHER=rows is not None, BIAS=bias is not None, EPI=epi, USE_DOT=use_dot,
            EVEN_K=K % bk == 0, num_warps=warps, num_stages=stages,
        )
    return (y, ssq_out) if want_ssq else y
