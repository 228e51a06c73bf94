# Shared by the tensor-parallel check scripts (tp-check.py, tp-small-step-check.py): one process per rank
# (torch.multiprocessing, spawn) around a free TCP port for torch.distributed, a Worker per model (later models
# reuse the rank's process group), rank 0's report back through a queue, and the verdict.
import socket
import sys

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


def rank_worker(rank: int, world: int, port: int, tp, **options):
    """A Worker for this rank at tensor_parallel_degree=world: the first one (tp None) starts torch.distributed on
    port; torch.distributed is initialised once per process, so a later one (another model) takes the first
    Worker's TensorParallel (tp) instead of starting another process group."""
    from lmi_executor.config import ExecutorOptions
    from lmi_executor.worker import Worker

    opts = ExecutorOptions(tensor_parallel_degree=world, dist_init_method=f"tcp://127.0.0.1:{port}" if tp is None
                           else "", **options)
    if tp is None:
        return Worker(opts, rank, world)
    w = Worker.__new__(Worker)
    w.opts, w.tp = opts, tp
    w.device = torch.device("cuda", rank) if opts.device == "cuda" else torch.device("cpu")
    w.model, w.runner, w.num_blocks = None, None, 0
    return w


def hand_in(rank: int, report: list, result_q, tp) -> None:
    """Rank 0 puts the report on the queue; every rank waits at the barrier, so none leaves the group early."""
    if rank == 0:
        result_q.put(report)
    tp.barrier()


def verdict(name: str, report: list, failed: list, exits: list) -> None:
    """Prints `name OK` or `name FAILED` and exits with 0 or 1: failed when a row failed, a rank exited non-zero or
    no report came back."""
    bad = failed or [c for c in exits if c != 0] or not report
    print(name, "FAILED" if bad else "OK")
    sys.exit(1 if bad else 0)
