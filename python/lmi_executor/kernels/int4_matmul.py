# y[M, N] = x[M, K] @ dequant(w).T for group-wise int4 weights (quant.Int4Weight: packed [N, K/2] uint8, low
# nibble = even k; fp16 scale s and offset m per group, stored [K/group, N]) and bf16/fp16/fp32 activations.
#
# Matmul kernel: each program owns a BLOCK_M x BLOCK_N tile of y and walks its share of the K groups, one
# group per loop step. A step loads the group's packed bytes [BLOCK_N, group/2], splits the nibbles, and
# multiplies the even-k codes by the even-k activations and the odd-k codes by the odd ones (two tl.dot,
# fp32 accumulation). The scale and offset are applied to the group's partial sums, not to the weights:
#     sum_k x_k (q_k s + m) = s * sum_k x_k q_k + m * sum_k x_k
# so the inner loop never multiplies weights by scales. For 16-bit activations the codes are turned into
# floats without a conversion instruction: OR-ing a nibble into the bit pattern of 128 (bf16) or 1024 (fp16)
# gives exactly 128 + q (1024 + q), and the constant is folded into the offset (m - 128 s). fp32 activations
# convert the codes (q is exact in TF32, the mode tl.dot uses for fp32: about 3e-4 relative error).
# Decode-sized M splits K over several programs (fp32 atomic adds into a zeroed buffer) so one row still
# spreads the weight stream over every SM.
#
# Dequantize kernel (large steps, quant.INT4_DEQUANT_ABOVE_ROWS): one pass that writes the weight in the
# compute dtype for cuBLAS; same arithmetic as Int4Weight.dequantize (fp32, one rounding).
import torch
import triton
import triton.language as tl


@triton.jit(do_not_specialize=["M"])  # M (the step's tokens) changes every step: no recompiles mid-serving
def _int4_mm_kernel(x_ptr, p_ptr, s_ptr, o_ptr, y_ptr, M, N, stride_xm, stride_pn, stride_ym, num_groups,
                    groups_per_split,
                    GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAGIC: tl.constexpr,
                    ATOMIC: tl.constexpr):
    HALF: tl.constexpr = GROUP // 2
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rh = tl.arange(0, HALF)
    m_mask = rm < M
    n_mask = rn < N
    x_even = x_ptr + rm[:, None].to(tl.int64) * stride_xm + 2 * rh[None, :]
    p_rows = p_ptr + rn[:, None].to(tl.int64) * stride_pn + rh[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    g_lo = pid_k * groups_per_split
    g_hi = tl.minimum(g_lo + groups_per_split, num_groups)
    for g in range(g_lo, g_hi):
        xe = tl.load(x_even + g * GROUP, mask=m_mask[:, None], other=0.0)
        xo = tl.load(x_even + g * GROUP + 1, mask=m_mask[:, None], other=0.0)
        p = tl.load(p_rows + g * HALF, mask=n_mask[:, None], other=0)
        lo = p & 0xF
        hi = p >> 4
        if MAGIC == 1:  # bf16: 0x4300 is 128.0, whose last mantissa bit is worth 1
            wl = (lo.to(tl.uint16) | 0x4300).to(tl.uint16).to(tl.bfloat16, bitcast=True)
            wh = (hi.to(tl.uint16) | 0x4300).to(tl.uint16).to(tl.bfloat16, bitcast=True)
            bias = 128.0
        elif MAGIC == 2:  # fp16: 0x6400 is 1024.0
            wl = (lo.to(tl.uint16) | 0x6400).to(tl.uint16).to(tl.float16, bitcast=True)
            wh = (hi.to(tl.uint16) | 0x6400).to(tl.uint16).to(tl.float16, bitcast=True)
            bias = 1024.0
        else:  # fp32: codes centred on 0 (q - 8, exact) so TF32 rounding of x does not meet a large common term
            wl = lo.to(xe.dtype) - 8.0
            wh = hi.to(xe.dtype) - 8.0
            bias = -8.0
        d = tl.dot(xe, tl.trans(wl))
        d = tl.dot(xo, tl.trans(wh), d)
        xs = tl.sum(xe.to(tl.float32), axis=1) + tl.sum(xo.to(tl.float32), axis=1)
        s = tl.load(s_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32)
        m = tl.load(o_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32) - bias * s
        acc += d * s[None, :] + xs[:, None] * m[None, :]
    y_off = rm[:, None].to(tl.int64) * stride_ym + rn[None, :]
    mask = m_mask[:, None] & n_mask[None, :]
    if ATOMIC:
        tl.atomic_add(y_ptr + y_off, acc, mask=mask)
    else:
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _int4_gemv_kernel(x_ptr, p_ptr, s_ptr, o_ptr, y_ptr, N, stride_xm, stride_pn, stride_ym, num_groups, groups_per_split,
                      GROUP: tl.constexpr, BLOCK_N: tl.constexpr, ATOMIC: tl.constexpr):
    """One activation row per program (grid: N tiles x K splits x rows), no tensor cores: the packed tile is
    used in the layout it was loaded in (no shared-memory round trip), codes become floats by OR-ing them
    into the bits of 2^23 and subtracting 2^23 (exact), and a 2-D fp32 accumulator is reduced once at the end."""
    HALF: tl.constexpr = GROUP // 2
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    row = tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rh = tl.arange(0, HALF)
    n_mask = rn < N
    x_even = x_ptr + row.to(tl.int64) * stride_xm + 2 * rh
    p_rows = p_ptr + rn[:, None].to(tl.int64) * stride_pn + rh[None, :]
    acc = tl.zeros((BLOCK_N, HALF), dtype=tl.float32)
    acc_m = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g_lo = pid_k * groups_per_split
    g_hi = tl.minimum(g_lo + groups_per_split, num_groups)
    for g in range(g_lo, g_hi):
        p = tl.load(p_rows + g * HALF, mask=n_mask[:, None], other=0)
        xe = tl.load(x_even + g * GROUP).to(tl.float32)
        xo = tl.load(x_even + g * GROUP + 1).to(tl.float32)
        s = tl.load(s_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32)
        m = tl.load(o_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32)
        lo = ((p & 0xF).to(tl.uint32) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
        hi = ((p >> 4).to(tl.uint32) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
        acc += (lo * xe[None, :] + hi * xo[None, :]) * s[:, None]
        acc_m += m * (tl.sum(xe, axis=0) + tl.sum(xo, axis=0))
    out = tl.sum(acc, axis=1) + acc_m
    y_off = row.to(tl.int64) * stride_ym + rn
    if ATOMIC:
        tl.atomic_add(y_ptr + y_off, out, mask=n_mask)
    else:
        tl.store(y_ptr + y_off, out.to(y_ptr.dtype.element_ty), mask=n_mask)


@triton.jit
def _int4_dequant_kernel(p_ptr, s_ptr, o_ptr, w_ptr, N, stride_pn, stride_wn,
                         GROUP: tl.constexpr, BLOCK_N: tl.constexpr):
    HALF: tl.constexpr = GROUP // 2
    pid_n = tl.program_id(0)
    g = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rh = tl.arange(0, HALF)
    n_mask = rn < N
    p = tl.load(p_ptr + rn[:, None].to(tl.int64) * stride_pn + g * HALF + rh[None, :], mask=n_mask[:, None], other=0)
    s = tl.load(s_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32)[:, None]
    m = tl.load(o_ptr + g * N + rn, mask=n_mask, other=0.0).to(tl.float32)[:, None]
    lo = (p & 0xF).to(tl.float32) * s + m
    hi = (p >> 4).to(tl.float32) * s + m
    w = tl.interleave(lo, hi).to(w_ptr.dtype.element_ty)  # [BLOCK_N, GROUP]: even k from lo, odd k from hi
    rk = tl.arange(0, GROUP)
    tl.store(w_ptr + rn[:, None].to(tl.int64) * stride_wn + g * GROUP + rk[None, :], w, mask=n_mask[:, None])


_MAGIC = {torch.bfloat16: 1, torch.float16: 2}
# Steps of at most this many rows use the GEMV kernel (one row per program), larger ones tl.dot tiles: at 4
# rows the GEMV kernel (re-reading the weights per row) took 1.7-3x the tl.dot tiles' time at 8 rows.
GEMV_MAX_ROWS = 1


def pick_config(M: int, N: int, K: int, group: int) -> dict:
    """Tiles by step size: one row through the GEMV kernel; up to 16 rows 16-row tl.dot tiles (its minimum)
    split over K so every SM streams weights; larger steps (only when called directly: linear() dequantizes
    above quant.INT4_DEQUANT_ABOVE_ROWS) wider tiles."""
    if M <= GEMV_MAX_ROWS:  # best of the sweep at 1 row on the Llama-3-8B shapes (H100), within 7%
        return {"kernel": "gemv", "BLOCK_N": 32, "num_warps": 2, "num_stages": 4,
                "split": 4 if triton.cdiv(N, 32) >= 512 else 8}
    if M <= 16:  # best tiles of the sweep at 8 rows (bench/gpu-int4-kernel-bench.py, H100)
        bm, bn, warps, stages = 16, 64 if N <= 4096 else 128, 4, 3
        split = 8 if N <= 8192 else 2
    elif M <= 64:
        bm, bn, warps, stages, split = 64, 64, 4, 3, 1
    else:
        bm, bn, warps, stages, split = 128, 128, 8, 3, 1
    return {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": warps, "num_stages": stages, "split": split}


def int4_linear(x: torch.Tensor, w, config: dict | None = None) -> torch.Tensor:
    """x [..., K] (bf16/fp16/fp32, CUDA) times an Int4Weight [N, K] (group >= 32), result in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M, K = x2.shape
    N = w.packed.shape[0]
    if K != 2 * w.packed.shape[1]:
        raise ValueError(f"int4_linear: x has K={K}, the weight {2 * w.packed.shape[1]}")
    groups = K // w.group
    c = config or pick_config(M, N, K, w.group)
    split = max(1, min(c["split"], groups))
    per = triton.cdiv(groups, split)
    split = triton.cdiv(groups, per)
    if split > 1:
        y = torch.zeros((M, N), dtype=torch.float32, device=x.device)
    else:
        y = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M and c.get("kernel") == "gemv":
        grid = (triton.cdiv(N, c["BLOCK_N"]), split, M)
        _int4_gemv_kernel[grid](x2, w.packed, w.scale, w.offset, y, N, x2.stride(0), w.packed.stride(0), y.stride(0),
                                groups, per, GROUP=w.group, BLOCK_N=c["BLOCK_N"], ATOMIC=split > 1,
                                num_warps=c["num_warps"], num_stages=c["num_stages"])
    elif M:
        grid = (triton.cdiv(M, c["BLOCK_M"]), triton.cdiv(N, c["BLOCK_N"]), split)
        _int4_mm_kernel[grid](x2, w.packed, w.scale, w.offset, y, M, N, x2.stride(0), w.packed.stride(0), y.stride(0),
                              groups, per, GROUP=w.group, BLOCK_M=c["BLOCK_M"], BLOCK_N=c["BLOCK_N"],
                              MAGIC=_MAGIC.get(x.dtype, 0), ATOMIC=split > 1,
                              num_warps=c["num_warps"], num_stages=c["num_stages"])
    if split > 1:
        y = y.to(x.dtype)
    return y.reshape(*shape[:-1], N)


def int4_dequantize(w, dtype) -> torch.Tensor:
    N, K = w.shape
    out = torch.empty((N, K), dtype=dtype, device=w.packed.device)
    bn = 32
    _int4_dequant_kernel[(triton.cdiv(N, bn), K // w.group)](w.packed, w.scale, w.offset, out, N, w.packed.stride(0),
                                                             out.stride(0), GROUP=w.group, BLOCK_N=bn, num_warps=4)
    return out
