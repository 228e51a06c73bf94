# What every model family shares about its weights: the dummy initialisation for load_format=dummy
# (seeded per rank), walking every weight tensor, and counting weight bytes (quantized payload + scales).
# Subclasses hold `params` (a dict of tensors), `layers` (a list of dicts), `tp` and `_finalize()`.

import torch

from ..quant import QUANTIZED


class ModelWeights:
    def init_dummy(self, seed: int) -> None:
        g = torch.Generator(device=self.device)
        g.manual_seed(seed + 7919 * self.tp.rank)
        for t in self._all_tensors():
            if t.dim() == 1:
                t.fill_(1.0)
            else:
                t.normal_(0.0, 0.02, generator=g)
        self._finalize()

    def _all_tensors(self):
        yield from self.params.values()
        for L in self.layers:
            yield from L.values()

    def weight_bytes(self) -> int:
        total = 0
        for t in self._all_tensors():
            total += t.storage_bytes() if isinstance(t, QUANTIZED) else t.numel() * t.element_size()
        return total
