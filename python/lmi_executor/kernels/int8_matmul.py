# y[M, N] = x[M, K] @ (q[N, K] * scale[N]).T for int8 weights and bf16/fp16/fp32 activations. Each
# program owns a BLOCK_M x BLOCK_N tile, streams K in BLOCK_K steps, widens the int8 tile to the activation
# dtype before the dot (fp32 accumulation), and applies the per-row scale once at the end. Decode-sized M
# uses a narrow BLOCK_M and a split over K so a batch of one still spreads the weight stream over the GPU.
# fp32 activations are multiplied in TF32 (about 3e-4 relative error); the GPU path runs int8 with bf16.
import torch
import triton
import triton.language as tl


@triton.jit(do_not_specialize=["M"])  # M (the step's tokens) changes every step: no recompiles mid-serving
def _int8_mm_kernel(x_ptr, q_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_qn, stride_ym,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_per = tl.cdiv(K, SPLIT_K * BLOCK_K) * BLOCK_K
    k_lo = pid_k * k_per
    for k0 in range(k_lo, tl.minimum(k_lo + k_per, K), BLOCK_K):
        kk = k0 + rk
        a = tl.load(x_ptr + rm[:, None].to(tl.int64) * stride_xm + kk[None, :],
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        w = tl.load(q_ptr + rn[:, None].to(tl.int64) * stride_qn + kk[None, :],
                    mask=(rn[:, None] < N) & (kk[None, :] < K), other=0)
        acc += tl.dot(a, tl.trans(w.to(a.dtype)))
    scale = tl.load(s_ptr + rn, mask=rn < N, other=0.0)
    acc = acc * scale[None, :]
    y_off = rm[:, None].to(tl.int64) * stride_ym + rn[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    if SPLIT_K == 1:
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(y_ptr + y_off, acc, mask=mask)


def int8_linear(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M, K = x2.shape
    N = q.shape[0]
    if M <= 16:
        bm, bn, bk, warps = 16, 64, 256, 4
        split = max(1, min(8, K // 1024))
    else:
        bm, bn, bk, warps = (64, 128, 64, 4) if M <= 128 else (128, 128, 64, 8)
        split = 1
    if split > 1:
        y = torch.zeros((M, N), dtype=torch.float32, device=x.device)
    else:
        y = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M:
        grid = (triton.cdiv(M, bm), triton.cdiv(N, bn), split)
        _int8_mm_kernel[grid](x2, q, scale, y, M, N, K, x2.stride(0), q.stride(0), y.stride(0),
                              BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPLIT_K=split, num_warps=warps, num_stages=3)
    if split > 1:
        y = y.to(x.dtype)
    return y.reshape(*shape[:-1], N)
