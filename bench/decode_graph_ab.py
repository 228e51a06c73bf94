# Shared by the decode A/B benches (gpu-decode-tiles-ab.py, gpu-decode-evict-ab.py, gpu-decode-logits-ab.py,
# gpu-decode-cublaslt-ab.py): the Llama-3-8B-shaped model (dummy bf16 weights, as many sequences as the largest
# batch, CUDA graphs off) with a KV cache of random values, and for each batch and context a decode step (every
# sequence at that context, 16-token blocks drawn at random) run as the whole forward + greedy sampling graph once
# per variant, the graphs replayed in interleaved rounds (gpu_timing.interleaved_rounds: 5 rounds x 20 replays,
# median round printed). Repeating the first variant last shows the drift over a run. "diff": each variant's logits
# against the first's (relative norm).
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
from bench_scripts import load_script  # noqa: E402

_eb = load_script("gpu-executor-bench.py")
from gpu_timing import captured, interleaved_rounds, sustained_rounds  # noqa: E402
from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402
from lmi_executor.kernels.greedy import greedy_into  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402

NUM_BLOCKS = 4400


def run(variants, apply, restore, batches, contexts, kv_cache_dtype: str = "auto", sustained: float = 0.0,
        rounds: int = 3) -> None:
    """variants: [(name, value)]; apply(value) sets the knob before a variant's warm-up and capture, restore()
    puts the default back. Prints one line per (batch, context). sustained > 0: instead of the interleaved rounds,
    each graph replayed back to back for that many seconds (gpu_timing.sustained_replay: the card at its power
    limit, as in a burst), `rounds` rounds in rotating order; median ms, SM clock and board power per variant."""
    num_blocks = max(NUM_BLOCKS, max(batches) * ((max(contexts) + 15) // 16))
    w = Worker(ExecutorOptions(model_dir=_eb.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                               max_num_seqs=max(16, max(batches)), max_model_len=4096, max_num_batched_tokens=8192,
                               enable_cuda_graph=False, kv_cache_dtype=kv_cache_dtype), 0, 1)
    w.load({})
    w.init_cache({"numBlocks": num_blocks})
    for k, v in w.runner.kv_caches:
        k.copy_(torch.randn(k.shape, device="cuda", dtype=torch.bfloat16).to(k.dtype))
        v.copy_(torch.randn(v.shape, device="cuda", dtype=torch.bfloat16).to(v.dtype))
    model, caches = w.runner.model, w.runner.kv_caches
    dev = torch.device("cuda")
    pa.WORKSPACE.get(16, 16, model.nq, model.cfg.head_dim, dev)
    last = torch.zeros(max(32, max(batches)), dtype=torch.int64, device=dev)
    for B in batches:
        for ctx in contexts:
            nb = (ctx + 15) // 16
            bt = torch.randperm(num_blocks, device=dev)[: B * nb].to(torch.int32).view(B, nb).contiguous()
            pos = torch.full((B,), ctx - 1, dtype=torch.int64, device=dev)
            slots = bt[:, (ctx - 1) // 16].long() * 16 + (ctx - 1) % 16
            meta = AttentionMetadata(
                slot_mapping=slots, query_start_loc=torch.arange(B + 1, dtype=torch.int32, device=dev),
                seq_lens=torch.full((B,), ctx, dtype=torch.int32, device=dev), block_tables=bt, max_query_len=1,
                max_seq_len=ctx, query_start_loc_cpu=list(range(B + 1)), seq_lens_cpu=[ctx] * B)
            ids = torch.randint(0, 128000, (B,), device=dev)
            rows = torch.arange(B, device=dev)

            def step():
                logits = model.forward(ids, pos, meta, caches, rows)
                out = torch.empty((2, B), dtype=torch.float64, device=dev)
                greedy_into(logits, out, rows=rows, last_token=last)
                return logits

            graphs, diffs, ref = {}, {}, None
            for name, value in variants:
                apply(value)
                try:
                    out, g = captured(step)
                finally:
                    restore()
                ref = out if ref is None else ref
                diffs[name] = ((out - ref).norm() / ref.norm()).item()
                graphs[name] = g
            if sustained > 0:
                runs = sustained_rounds(graphs, sustained, rounds)  # (ms, MHz, W) a round
                med = {n: [sorted(x[i] for x in xs)[len(xs) // 2] for i in range(3)] for n, xs in runs.items()}
                cells = " | ".join(f"{n} {m[0]:.4f} ms {m[1]:.0f} MHz {m[2]:.0f} W (diff {diffs[n]:.3f})"
                                   for n, m in med.items())
                print(f"B {B} ctx {ctx} sustained | {cells}", flush=True)
            else:
                res = interleaved_rounds(graphs, rounds=5, replays=20)
                cells = " | ".join(f"{n} {xs[2]:.4f} ms (diff {diffs[n]:.3f})" for n, xs in res.items())
                print(f"B {B} ctx {ctx} | {cells}", flush=True)
            del graphs
