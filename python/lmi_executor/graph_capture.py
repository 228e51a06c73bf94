# One CUDA-graph capture (decode and prefill graphs both use it).
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
