# The small-step GEMVs' weight loads with the L2 policy evict_first (kernels/gemv.py FLAGS["w_evict"], the default)
# against the default policy, at batches 1-8 and contexts 128-2,048, inside the whole Llama-3-8B-shaped
# forward + greedy sampling graph (dummy bf16 weights, a KV cache of random values, every sequence at the same
# context, 16-token blocks drawn at random), replayed in interleaved rounds (gpu_timing.interleaved_rounds: 5
# rounds x 20 replays, median round printed). "evict_first again" repeats the first variant last, so drift shows.
# "diff": each variant's logits against the first's (relative norm; a cache policy changes no result: 0).
#   python3 bench/gpu-decode-evict-ab.py [auto|fp8]      (the KV cache dtype; default auto)
import importlib.util
import os
import sys

import torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
spec = importlib.util.spec_from_file_location("eb", os.path.join(HERE, "gpu-executor-bench.py"))
eb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eb)
from gpu_timing import interleaved_rounds  # noqa: E402
from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.kernels import gemv  # noqa: E402
from lmi_executor.kernels import paged_attention as pa  # noqa: E402
from lmi_executor.kernels.greedy import greedy_into  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402
NB = 4400
w = Worker(ExecutorOptions(model_dir=eb.llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                           max_num_seqs=16, max_model_len=4096, max_num_batched_tokens=8192,
                           enable_cuda_graph=False, kv_cache_dtype=sys.argv[1] if len(sys.argv) > 1 else "auto"), 0, 1)
w.load({})
w.init_cache({"numBlocks": NB})
for k, v in w.runner.kv_caches:
    k.copy_(torch.randn(k.shape, device="cuda", dtype=torch.bfloat16).to(k.dtype))
    v.copy_(torch.randn(v.shape, device="cuda", dtype=torch.bfloat16).to(v.dtype))
model, caches = w.runner.model, w.runner.kv_caches
dev = torch.device("cuda")
pa.WORKSPACE.get(16, 16, model.nq, model.cfg.head_dim, dev)
last = torch.zeros(32, dtype=torch.int64, device=dev)
VARIANTS = [("evict_first", "evict_first"), ("default policy", ""), ("evict_first again", "evict_first")]
for B in (1, 2, 4, 8):
    for ctx in (128, 512, 2048):
        nb = (ctx + 15) // 16
        bt = torch.randperm(NB, device=dev)[: B * nb].to(torch.int32).view(B, nb).contiguous()
        pos = torch.full((B,), ctx - 1, dtype=torch.int64, device=dev)
        slots = bt[:, (ctx - 1) // 16].long() * 16 + (ctx - 1) % 16
        meta = AttentionMetadata(
            slot_mapping=slots, query_start_loc=torch.arange(B + 1, dtype=torch.int32, device=dev),
            seq_lens=torch.full((B,), ctx, dtype=torch.int32, device=dev), block_tables=bt, max_query_len=1,
            max_seq_len=ctx, query_start_loc_cpu=list(range(B + 1)), seq_lens_cpu=[ctx] * B)
        ids = torch.randint(0, 128000, (B,), device=dev)
        idx = torch.arange(B, device=dev)
        rows = torch.arange(B, device=dev)

        def step():
            logits = model.forward(ids, pos, meta, caches, idx)
            out = torch.empty((2, B), dtype=torch.float64, device=dev)
            greedy_into(logits, out, rows=rows, last_token=last)
            return logits
        graphs, diffs, ref = {}, {}, None
        for name, policy in VARIANTS:
            gemv.FLAGS["w_evict"] = policy
            try:
                out = step().clone()
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    step()
                for _ in range(3):
                    g.replay()
                torch.cuda.synchronize()
            finally:
                gemv.FLAGS["w_evict"] = "evict_first"
            ref = out if ref is None else ref
            diffs[name] = ((out - ref).norm() / ref.norm()).item()
            graphs[name] = g
        res = interleaved_rounds(graphs, rounds=5, replays=20)
        cells = " | ".join(f"{n} {xs[2]:.4f} ms (diff {diffs[n]:.3f})" for n, xs in res.items())
        print(f"B {B} ctx {ctx} | {cells}", flush=True)
        del graphs
