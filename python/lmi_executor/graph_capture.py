# What the CUDA graphs share outside their kernels (importable without Triton): the capture itself, and the
# decode graphs' batch buckets (the memory profile sizes its reserve from them) and the choice of one.
import contextlib
import gc

import torch


@contextlib.contextmanager
def capturing(g: torch.cuda.CUDAGraph, pool=None):
    """torch.cuda.graph with the cyclic garbage collector paused: a collection inside the capture could free an
    earlier graph (a dropped worker's, in tests), and tearing a graph down is not allowed while a stream
    captures (it invalidates the capture)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with torch.cuda.graph(g, pool=pool):
            yield
    finally:
        if enabled:
            gc.enable()


_DECODE_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


def bucket_for(sizes: list, n: int):
    """The smallest of the ascending buckets `sizes` that holds n rows, or None when none does."""
    return next((s for s in sizes if s >= n), None)


def decode_graph_sizes(max_num_seqs: int) -> list:
    """The batch buckets of the decode graphs: those up to max_num_seqs, and max_num_seqs itself last."""
    sizes = [b for b in _DECODE_BUCKETS if b <= max_num_seqs]
    if max_num_seqs not in sizes:
        sizes.append(max_num_seqs)
    return sizes
