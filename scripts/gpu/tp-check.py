# Tensor-parallel check: every supported zoo model (fp32) at tensor_parallel_degree=N, one process per rank
# (NCCL on GPUs, gloo with --device cpu), greedy continuations alone and batched with chunked prefill must
# equal the transformers goldens, with CUDA graphs on and off. Each rank drives the same plans in the same
# order, as rank 0's relay would make them. Usage: python3 scripts/gpu/tp-check.py [--tp 2] [--device cuda]
import argparse
import json
import os
import socket
import sys

import torch
import torch.multiprocessing as mp

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]


def rank_main(rank, world, device, port, result_q):
    from lmi_executor.config import SUPPORTED_ARCHITECTURES, ExecutorOptions
    from lmi_executor.worker import Worker
    from test_executor_model import greedy_goldens_batched

    os.environ["LOCAL_RANK"] = str(rank)
    torch.backends.cuda.matmul.allow_tf32 = False
    report = []
    zoo = os.path.join(ROOT, "models", "zoo")
    first = True
    for name in sorted(os.listdir(zoo)):
        d = os.path.join(zoo, name)
        if not os.path.exists(os.path.join(d, "golden.json")):
            continue
        with open(os.path.join(d, "config.json")) as f:
            if json.load(f)["architectures"][0] not in SUPPORTED_ARCHITECTURES:
                continue
        with open(os.path.join(d, "golden.json")) as f:
            cases = json.load(f)["cases"]
        for graphs in (False, True) if device == "cuda" else (False,):
            opts = ExecutorOptions(model_dir=d, device=device, dtype="fp32", block_size=16, max_num_seqs=16,
                                   tensor_parallel_degree=world, enable_cuda_graph=graphs,
                                   dist_init_method=f"tcp://127.0.0.1:{port}" if first else "")
            w = Worker(opts, rank, world) if first else _reuse(opts, rank, world, keep)
            keep = w.tp
            first = False
            w.load({})
            w.init_cache({"numBlocks": 256})
            ok = greedy_goldens_batched(w, cases)
            report.append({"model": name, "graphs": graphs, "tokenExact": ok})
    if rank == 0:
        result_q.put(report)
    keep.barrier()


def _reuse(opts, rank, world, tp):
    # One process group per process: later models reuse it instead of initialising torch.distributed again.
    from lmi_executor.worker import Worker

    w = Worker.__new__(Worker)
    w.opts, w.tp = opts, tp
    w.device = torch.device("cuda", rank) if opts.device == "cuda" else torch.device("cpu")
    w.model, w.runner, w.num_blocks = None, None, 0
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, a.tp, a.device, port, q)) for r in range(a.tp)]
    for p in procs:
        p.start()
    report = q.get(timeout=600)
    for p in procs:
        p.join()
    for r in report:
        print(f"| TP={a.tp} {a.device} | {r['model']} | graphs={r['graphs']} | token-exact={r['tokenExact']} |")
    bad = [r for r in report if not r["tokenExact"]] or [p for p in procs if p.exitcode != 0]
    print("tp-check", "FAILED" if bad or not report else "OK")
    sys.exit(1 if bad or not report else 0)


if __name__ == "__main__":
    main()
