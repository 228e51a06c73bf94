# Weight-only quantization of the projection matrices, activations stay in the compute dtype.
# - int8 (option.dtype=int8, option.quantize=bitsandbytes8): each linear weight [N, K] becomes int8 values
#   plus one fp32 scale per output row (symmetric, scale = max|w_row| / 127).
# - int4 (option.quantize=bitsandbytes4, option.load_in_4bit): groups of `group` consecutive weights along K
#   (128, or the largest power of two dividing K when 128 does not), asymmetric: per group an fp16 scale s and
#   an fp16 offset m (the group's minimum), w ~= q * s + m with q in 0..15. Two values per byte: q[:, 2j] in
#   the low nibble, q[:, 2j+1] in the high one. Scales are stored [K/group, N] so a kernel reads one group's
#   scales for a run of output rows contiguously.
# Invariant: linear() computes (x @ dequant(w).T) + b on every device; unquantized bias-free weights on CUDA may go
# through cuBLASLt with a tuned algorithm (kernels/lt_gemm.py); quantized ones on CUDA through our Triton kernels
# (kernels/int8_matmul.py, kernels/int4_matmul.py) for decode-sized steps, elsewhere by dequantizing in
# PyTorch (the CPU tests check that path; the GPU tests check the kernels against it).
import math
from dataclasses import dataclass

import torch

from .kernels import lt_gemm


# Above this many activation rows, linear() dequantizes and calls cuBLAS instead of the int8 kernel.
DEQUANT_ABOVE_ROWS = 512
# The same switch for int4 (kernels/int4_matmul.py picks its tiles below it): at 64 rows the Triton pass that
# writes the weight in bf16 plus cuBLAS already beat our tl.dot tiles on every Llama-3-8B shape
# (bench/gpu-int4-kernel-bench.py, H100), at 8 rows the kernel wins.
INT4_DEQUANT_ABOVE_ROWS = 16
INT4_GROUP = 128
# The int4 Triton kernel takes one group per loop step and splits it into even/odd halves for tl.dot, whose
# inner dimension must be at least 16: smaller groups (K not divisible by 32) dequantize in PyTorch instead.
INT4_KERNEL_MIN_GROUP = 32


@dataclass
class Int8Weight:
    q: torch.Tensor  # [N, K] int8
    scale: torch.Tensor  # [N] fp32

    @property
    def shape(self):
        return self.q.shape

    def storage_bytes(self) -> int:
        return self.q.numel() + 4 * self.scale.numel()

    def dequantize(self, dtype) -> torch.Tensor:
        if dtype == torch.float32 or not self.q.is_cuda:
            return (self.q.float() * self.scale[:, None]).to(dtype)
        # On the GPU, skip an fp32 copy of the whole matrix: widen straight to the compute dtype.
        return self.q.to(dtype) * self.scale.to(dtype)[:, None]


def quantize_int8(w: torch.Tensor) -> Int8Weight:
    wf = w.float()
    scale = (wf.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(wf / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q.contiguous(), scale.contiguous())


@dataclass
class Int4Weight:
    packed: torch.Tensor  # [N, K // 2] uint8: low nibble q[:, 2j], high nibble q[:, 2j + 1]
    scale: torch.Tensor  # [K // group, N] fp16
    offset: torch.Tensor  # [K // group, N] fp16: the value of q = 0
    group: int

    @property
    def shape(self):
        return torch.Size((self.packed.shape[0], 2 * self.packed.shape[1]))

    def storage_bytes(self) -> int:
        return self.packed.numel() + 2 * (self.scale.numel() + self.offset.numel())

    def unpack(self) -> torch.Tensor:
        """The 4-bit codes as uint8 [N, K], values 0..15."""
        p = self.packed
        return torch.stack((p & 15, p >> 4), dim=-1).reshape(p.shape[0], 2 * p.shape[1])

    def dequantize(self, dtype) -> torch.Tensor:
        """PyTorch reference (fp32 arithmetic): q * scale + offset per group, rounded once to dtype."""
        N, K = self.shape
        G = K // self.group
        q = self.unpack().view(N, G, self.group).float()
        w = q * self.scale.t().float()[:, :, None] + self.offset.t().float()[:, :, None]
        return w.reshape(N, K).to(dtype)


def int4_group_size(K: int, group: int = INT4_GROUP) -> int:
    """`group` when it divides K, else the largest power of two dividing both (64 or 32 for the zoo models)."""
    if K % 2:
        raise ValueError(f"int4 quantization packs two values per byte along K; K={K} is odd")
    return group if K % group == 0 else math.gcd(K, group)


def quantize_int4(w: torch.Tensor, group: int = INT4_GROUP, symmetric: bool = False) -> Int4Weight:
    """Round-to-nearest int4 per group. Asymmetric (default): s = (max - min) / 15, m = min. Symmetric (for
    comparison, bench/gpu-quant-accuracy.py): s = max|w| / 7, codes -8..7 stored as 0..15 with m = -8 s."""
    N, K = w.shape
    g = int4_group_size(K, group)
    wf = w.float().reshape(N, K // g, g)
    if symmetric:
        scale = wf.abs().amax(dim=-1) / 7.0
    else:
        lo, hi = wf.amin(dim=-1), wf.amax(dim=-1)
        scale = (hi - lo) / 15.0
    # A constant group gets the smallest fp16 step instead of 0 (no division by zero; its codes are all 0).
    s16 = scale.clamp(min=2.0**-24).half()
    m16 = (-8.0 * s16.float()).half() if symmetric else lo.half()
    if not (torch.isfinite(s16).all() and torch.isfinite(m16).all()):
        raise ValueError("int4 quantization: a weight group's range overflows fp16 scales")
    q = torch.round((wf - m16.float()[..., None]) / s16.float()[..., None]).clamp(0, 15).to(torch.uint8)
    return Int4Weight(pack_int4(q.reshape(N, K)), s16.t().contiguous(), m16.t().contiguous(), g)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """uint8 codes [N, K] (0..15, K even) -> [N, K // 2] bytes, q[:, 2j] in the low nibble."""
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()


QUANTIZED = (Int8Weight, Int4Weight)


def quantize_weight(w: torch.Tensor, kind: str):
    if kind == "int8":
        return quantize_int8(w)
    if kind == "int4":
        return quantize_int4(w)
    raise ValueError(f"unknown weight-only quantization {kind!r} (int8, int4)")


def linear(x: torch.Tensor, w, b=None) -> torch.Tensor:
    if isinstance(w, Int4Weight):
        return _linear_int4(x, w, b)
    if not isinstance(w, Int8Weight):
        if x.is_cuda and b is None:
            # cuBLASLt with an algorithm measured faster on this card, where a tuning table covers the shape
            # (kernels/lt_gemm.py); None otherwise.
            lt = lt_gemm.get()
            y = lt.linear(x, w) if lt is not None else None
            if y is not None:
                return y
        return torch.nn.functional.linear(x, w, b)
    rows = x.numel() // x.shape[-1]
    if x.is_cuda and rows <= DEQUANT_ABOVE_ROWS:
        from .kernels.int8_matmul import int8_linear

        y = int8_linear(x, w.q, w.scale)
        return y if b is None else y + b
    # Large steps (prefill) are compute-bound: widening the weight once and using cuBLAS costs one extra pass
    # over it, far less than the matmul, and our kernel is slower than cuBLAS there.
    return torch.nn.functional.linear(x, w.dequantize(x.dtype), b)


def _linear_int4(x: torch.Tensor, w: Int4Weight, b=None) -> torch.Tensor:
    if x.is_cuda and w.group >= INT4_KERNEL_MIN_GROUP:
        from .kernels.int4_matmul import int4_dequantize, int4_linear

        if x.numel() // x.shape[-1] <= INT4_DEQUANT_ABOVE_ROWS:
            y = int4_linear(x, w)
            return y if b is None else y + b
        # Prefill-sized steps: one Triton pass writes the weight in the compute dtype, then cuBLAS.
        return torch.nn.functional.linear(x, int4_dequantize(w, x.dtype), b)
    return torch.nn.functional.linear(x, w.dequantize(x.dtype), b)
