# Small host lists (token ids, row indices, per-request settings) to the device. Invariant: never a
# blocking copy: steps are launched ahead of the GPU (pipelined steps), and a blocking host-to-device copy
# would wait for every step still queued there.
import torch


def to_device(values, device, dtype=None) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)
