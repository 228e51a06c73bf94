# Entry point of one rank: `python -m lmi_executor --socket PATH --options JSON`. The rank and world size
# come from torchrun-style variables (RANK, WORLD_SIZE) or Open MPI's (OMPI_COMM_WORLD_*), so the same
# command line serves direct spawning and mpirun.
import argparse
import os
import sys

from .config import ExecutorOptions


def _rank_and_world() -> tuple:
    env = os.environ
    if "OMPI_COMM_WORLD_RANK" in env:
        return int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"])
    return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))


def _exit_with_parent() -> None:
    """Ends this rank when its parent (Node, or mpirun's daemon) is gone: a rank blocked in a collective
    would otherwise outlive the server that started it. Linux's parent-death signal does it even while
    a C++ call holds the GIL; the polling thread covers other systems."""
    import signal
    import threading
    import time

    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                sys.stderr.write("lmi_executor: parent process exited; stopping this rank\n")
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lmi_executor")
    p.add_argument("--socket", required=True, help="Unix socket path Node listens on (rank 0 connects)")
    p.add_argument("--options", required=True, help="ExecutorOptions as JSON")
    args = p.parse_args(argv)
    opts = ExecutorOptions.from_json(args.options)
    _exit_with_parent()
    rank, world = _rank_and_world()
    if world != opts.tensor_parallel_degree:
        raise SystemExit(f"world size {world} != tensor_parallel_degree {opts.tensor_parallel_degree}")
    # Imported late so argument errors surface without paying for torch's import.
    from .server import serve_follower, serve_rank0
    from .worker import Worker

    worker = Worker(opts, rank, world)
    if rank == 0:
        serve_rank0(worker, args.socket)
    else:
        serve_follower(worker)
    _leave()
    return 0


def _leave() -> None:
    """Ends a rank after a clean shutdown (every reply sent) without the interpreter's teardown. That teardown
    destroys the CUDA context, NCCL communicators and graphs while the daemon step-finisher thread may still hold
    CUDA objects, in whatever order the collector meets them: at tensor_parallel_degree=4 two ranks aborted
    there (`terminate called ... CUDA driver error: unknown error`) after their work was done, and tearing the
    process group down first (destroy_process_group) made every rank hang instead. The OS frees the GPU memory
    and sockets of an exited process either way."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
