# The model's elementwise steps behind one switch: fused Triton kernels on CUDA, plain PyTorch elsewhere
# (the CPU path CI runs). Invariant: both paths compute the same function (tested against each other on
# the GPU), so the CPU tests vouch for the model logic the GPU runs.
import torch

from .attention import write_kv
from .layers import apply_rope, rms_norm
from .layers import silu_and_mul as torch_silu_and_mul


class TorchOps:
    def add_rms_norm(self, x, residual, weight, eps):
        if residual is None:
            return rms_norm(x, weight, eps)
        residual.copy_(residual + x)
        return rms_norm(residual, weight, eps)

    def rope_and_cache(self, qkv, cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd, q_norm, k_norm, eps,
                       k_back=False):
        q, k, v = qkv.split([nq * hd, nkv * hd, nkv * hd], dim=-1)
        q, k, v = q.reshape(-1, nq, hd), k.reshape(-1, nkv, hd), v.reshape(-1, nkv, hd)
        if q_norm is not None:
            q, k = rms_norm(q, q_norm, eps), rms_norm(k, k_norm, eps)
        cs = cos_sin[positions]
        q, k = apply_rope(q, cs), apply_rope(k, cs)
        write_kv(k_cache, v_cache, k, v.contiguous(), slots)
        if k_back:
            qkv[:, nq * hd:(nq + nkv) * hd] = k.reshape(k.shape[0], -1)
        return q

    def silu_and_mul(self, gate_up):
        return torch_silu_and_mul(gate_up)


class TritonOps:
    def __init__(self):
        from .kernels import fused

        self.f = fused

    def add_rms_norm(self, x, residual, weight, eps):
        return self.f.add_rms_norm(x, residual, weight, eps)

    def rope_and_cache(self, qkv, cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd, q_norm, k_norm, eps,
                       k_back=False):
        return self.f.rope_and_cache(qkv, cos_sin, positions, slots, k_cache, v_cache, nq, nkv, hd, q_norm, k_norm, eps,
                                     k_back)

    def silu_and_mul(self, gate_up):
        return self.f.silu_and_mul(gate_up)


def make_ops(device: torch.device, fused: bool = True):
    return TritonOps() if device.type == "cuda" and fused else TorchOps()
