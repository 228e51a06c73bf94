# Shared by the tensor-parallel check scripts (tp-check.py, tp-small-step-check.py): one process per rank
# (torch.multiprocessing, spawn) around a free TCP port for torch.distributed, rank 0's report back through a
# queue, and a Worker for a later model that reuses the rank's process group.
import socket

import torch
import torch.multiprocessing as mp


def run_ranks(target, world: int, *args, timeout: float = 600) -> tuple:
    """Starts target(rank, world, *args, port, result_q) in `world` processes; returns (what rank 0 put on the
    queue, every process's exit code)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(r, world, *args, port, q)) for r in range(world)]
    for p in procs:
        p.start()
    report = q.get(timeout=timeout)
    for p in procs:
        p.join()
    return report, [p.exitcode for p in procs]


def reuse_worker(opts, rank: int, tp):
    """A Worker for another model in the same rank process: torch.distributed is initialised once per process, so
    it takes the first Worker's TensorParallel instead of starting another process group."""
    from lmi_executor.worker import Worker

    w = Worker.__new__(Worker)
    w.opts, w.tp = opts, tp
    w.device = torch.device("cuda", rank) if opts.device == "cuda" else torch.device("cpu")
    w.model, w.runner, w.num_blocks = None, None, 0
    return w
