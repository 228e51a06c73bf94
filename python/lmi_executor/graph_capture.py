# What the CUDA graphs share outside their kernels (importable without Triton): the capture itself, and the
# decode graphs' batch buckets (the memory profile sizes its reserve from them) and the choice of one.
import contextlib
import gc

import torch


@contextlib.contextmanager
def collector_paused():
    """The cyclic garbage collector off for the block, after one full collection (skipped when the collector is
    already off: an enclosing block collected). A collection inside a graph capture could free an earlier graph
    (a dropped worker's, in tests), and tearing a graph down is not allowed while a stream captures (it
    invalidates the capture). Wrap a whole capture loop in it: one full collection of the process costs 60-75
    ms once the model and Triton are loaded (H100, Llama-3-8B shape), and with one before each of the 56 decode
    and prefill graphs their captures took 3.8-3.9 s and 2.5-2.6 s, against 1.4 s and 0.7 s with one a loop."""
    enabled = gc.isenabled()
    if enabled:
        gc.collect()
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def capturing(g: torch.cuda.CUDAGraph, pool=None):
    """torch.cuda.graph with the cyclic garbage collector paused (collector_paused)."""
    with collector_paused(), torch.cuda.graph(g, pool=pool):
        yield


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
