# Weight-only int8 quantization (option.dtype=int8): each linear weight [N, K] becomes int8 values plus one
# fp32 scale per output row (symmetric, scale = max|w_row| / 127), activations stay in the compute dtype.
# Invariant: linear() computes (x @ dequant(w).T) + b on every device; on CUDA through our Triton kernel
# (kernels/int8_matmul.py) for decode-sized steps, elsewhere by dequantizing in PyTorch (CPU tests check that).
from dataclasses import dataclass

import torch


# Above this many activation rows, linear() dequantizes and calls cuBLAS instead of the int8 kernel.
DEQUANT_ABOVE_ROWS = 512


@dataclass
class Int8Weight:
    q: torch.Tensor  # [N, K] int8
    scale: torch.Tensor  # [N] fp32

    @property
    def shape(self):
        return self.q.shape

    def numel(self) -> int:
        return self.q.numel() + self.scale.numel()

    def element_size(self) -> int:
        return 1  # weight_bytes() counts the int8 payload; scales add N * 4 bytes, noted in numel()

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


def linear(x: torch.Tensor, w, b=None) -> torch.Tensor:
    if not isinstance(w, Int8Weight):
        return torch.nn.functional.linear(x, w, b)
    rows = x.numel() // x.shape[-1]
    if x.is_cuda and rows <= DEQUANT_ABOVE_ROWS:
        from .kernels.int8_matmul import int8_linear

        y = int8_linear(x, w.q, w.scale)
        return y if b is None else y + b
    # Large steps (prefill) are compute-bound: widening the weight once and using cuBLAS costs one extra pass
    # over it, far less than the matmul, and our kernel is slower than cuBLAS there.
    return torch.nn.functional.linear(x, w.dequantize(x.dtype), b)
