# Standalone benchmark of the GPU executor (in process, no Node): Llama-3-8B-shaped bf16 with dummy
# weights. Measures batch-1 decode tok/s (with MBU), time to first token for one 512-token prompt on an
# idle executor, and offline throughput for N requests of I input / O output tokens sent at once, with
# a minimal FCFS scheduler (token budget per step, decodes first, chunked prefill). Prints JSON + a table.
import argparse
import json
import os
import sys
import tempfile
import time

import torch

# LMI_PYTHON_DIR=path: another copy of python/ (A/B); the benches that load this file as a module rely on it too,
# since it imports lmi_executor first.
sys.path.insert(0, os.environ.get("LMI_PYTHON_DIR") or os.path.join(os.path.dirname(__file__), "..", "python"))

from lmi_executor.attention import AttentionMetadata  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402

LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
             "tie_word_embeddings": False, "eos_token_id": 128001, "bos_token_id": 128000, "torch_dtype": "bfloat16"}



def llama3_8b_dir() -> str:
    """A fresh temporary model folder holding only LLAMA3_8B as config.json (load it with load_format=dummy)."""
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(LLAMA3_8B, f)
    return tmp


def batch1_worker(num_blocks: int = 256) -> Worker:
    """The Llama-3-8B-shaped dummy bf16 model on CUDA for batch-1 forward benchmarks (CUDA graphs off, at most 8
    sequences), with a KV cache of num_blocks 16-token blocks filled with random values (never time on zeros)."""
    w = Worker(ExecutorOptions(model_dir=llama3_8b_dir(), device="cuda", dtype="bf16", load_format="dummy",
                               max_num_seqs=8, max_model_len=4096, max_num_batched_tokens=8192,
                               enable_cuda_graph=False), 0, 1)
    w.load({})
    w.init_cache({"numBlocks": num_blocks})
    for k, v in w.runner.kv_caches:
        k.normal_()
        v.normal_()
    return w


def batch1_inputs(ctx: int, pool: int, device) -> tuple:
    """(input ids, positions, AttentionMetadata, logits indices) of one sequence's decode step at context ctx,
    16-token blocks drawn at random from the first `pool` blocks of the cache."""
    nb = (ctx + 15) // 16
    bt = torch.randperm(pool, device=device)[:nb].to(torch.int32)[None, :].contiguous()
    pos = torch.tensor([ctx - 1], dtype=torch.int64, device=device)
    slots = (bt[0, (ctx - 1) // 16].long() * 16 + (ctx - 1) % 16).reshape(1)
    meta = AttentionMetadata(slot_mapping=slots, query_start_loc=torch.tensor([0, 1], dtype=torch.int32, device=device),
                             seq_lens=torch.tensor([ctx], dtype=torch.int32, device=device), block_tables=bt,
                             max_query_len=1, max_seq_len=ctx, query_start_loc_cpu=[0, 1], seq_lens_cpu=[ctx])
    ids = torch.tensor([1234], dtype=torch.int64, device=device)
    return ids, pos, meta, torch.zeros(1, dtype=torch.int64, device=device)


GREEDY = {"strategy": "greedy", "temperature": 1.0, "topK": 0, "topP": 1.0, "typicalP": 1.0, "minP": 0.0,
          "repetitionPenalty": 1.0, "presencePenalty": 0.0, "frequencyPenalty": 0.0, "logitBias": {}, "seed": 0,
          "penaltyAlpha": 0.0, "numTopLogprobs": 0, "promptLogprobs": False, "minTokens": 0, "eosTokenIds": [],
          "ignoreEos": True}


class MiniScheduler:
    """FCFS continuous batching: running requests decode first, then prompts fill the token budget."""

    def __init__(self, worker, num_blocks, block_size, budget, max_seqs):
        self.w, self.bs, self.budget, self.max_seqs = worker, block_size, budget, max_seqs
        self.free = list(range(num_blocks))
        self.step = 0

    def _plan(self, finished):
        self.step += 1
        return {"stepId": self.step, "scheduledNewReqs": [], "scheduledCachedReqs": [], "numScheduledTokens": {},
                "totalNumScheduledTokens": 0, "finishedReqIds": finished, "preemptedReqIds": []}

    def run(self, prompts, out_len):
        waiting = [{"id": f"r{i}", "prompt": p, "known": len(p), "computed": 0, "blocks": [], "out": 0, "sent": False}
                   for i, p in enumerate(prompts)]
        running, finished, done = [], [], []
        t0 = time.perf_counter()
        while waiting or running:
            plan = self._plan(finished)
            finished = []
            budget, batch = self.budget, []
            for r in running:  # decodes (and unfinished prompt chunks) of admitted requests first
                n = min(budget, r["known"] - r["computed"])
                if n > 0:
                    batch.append((r, n))
                    budget -= n
            while waiting and budget > 0 and len(running) < self.max_seqs:
                r = waiting.pop(0)
                running.append(r)
                n = min(budget, r["known"])
                batch.append((r, n))
                budget -= n
            for r, n in batch:
                need = (r["computed"] + n + self.bs - 1) // self.bs - len(r["blocks"])
                fresh = [self.free.pop() for _ in range(need)]
                r["blocks"] += fresh
                if not r["sent"]:
                    r["sent"] = True
                    plan["scheduledNewReqs"].append({"reqId": r["id"], "promptTokenIds": r["prompt"], "sampling": GREEDY,
                                                     "blockIds": list(r["blocks"]), "numComputedTokens": 0})
                else:
                    plan["scheduledCachedReqs"].append({"reqId": r["id"], "newBlockIds": fresh,
                                                        "numComputedTokens": r["computed"], "resumedFromPreemption": False})
                plan["numScheduledTokens"][r["id"]] = n
            plan["totalNumScheduledTokens"] = self.budget - budget
            out = self.w.execute({"plan": plan})
            now = time.perf_counter() - t0
            for r, n in batch:
                r["computed"] += n
                if r["id"] in out["sampledTokenIds"]:
                    r["known"] += 1
                    r["out"] += 1
                    r.setdefault("ttft", now)
                    if r["out"] >= out_len:
                        running.remove(r)
                        finished.append(r["id"])
                        self.free.extend(r["blocks"])
                        r["e2e"] = now
                        done.append(r)
        self.w.execute({"plan": self._plan(finished)})
        return done, time.perf_counter() - t0


def sync():
    torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decode-steps", type=int, default=256)
    ap.add_argument("--num-requests", type=int, default=256)
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument("--budget", type=int, default=8192)
    ap.add_argument("--no-cuda-graph", action="store_true")
    ap.add_argument("--no-fused", action="store_true", help="plain PyTorch norm/rotary/activation (A/B)")
    ap.add_argument("--dtype", default="bf16", help="bf16 | fp16 | int8 | int4 (weight-only, bf16 activations)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    opts = ExecutorOptions(model_dir=llama3_8b_dir(), device="cuda", dtype=args.dtype, load_format="dummy",
                           block_size=16, max_num_seqs=256, max_model_len=4096, enable_cuda_graph=not args.no_cuda_graph,
                           gpu_memory_utilization=0.9, max_num_batched_tokens=args.budget,
                           fused_ops=not args.no_fused)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cudaGraph": not args.no_cuda_graph,
           "fusedOps": not args.no_fused, "dtype": args.dtype}
    t = time.perf_counter()
    w = Worker(opts, 0, 1)
    info = w.load({})
    res["loadSeconds"] = time.perf_counter() - t
    res["weightBytes"] = info["weightBytes"]
    prof = w.profile({})
    res["numBlocks"] = prof["numBlocks"]
    t = time.perf_counter()
    ic = w.init_cache({"numBlocks": prof["numBlocks"]})
    res["initCacheSeconds"] = time.perf_counter() - t
    res["graphSizes"] = ic["cudaGraphBatchSizes"]
    g = torch.Generator().manual_seed(0)

    def prompt(n):
        return torch.randint(0, 128000, (n,), generator=g).tolist()

    # TTFT: one 512-token prompt on an idle executor, first token sampled (median of 5 after a warm-up).
    ttfts = []
    for i in range(6):
        s = MiniScheduler(w, prof["numBlocks"], 16, args.budget, 256)
        p = prompt(args.input_len)
        t = time.perf_counter()
        plan = s._plan([])
        nb = (len(p) + 15) // 16
        plan["scheduledNewReqs"].append({"reqId": f"ttft{i}", "promptTokenIds": p, "sampling": GREEDY,
                                         "blockIds": list(range(nb)), "numComputedTokens": 0})
        plan["numScheduledTokens"][f"ttft{i}"] = len(p)
        w.execute({"plan": plan})
        ttfts.append(time.perf_counter() - t)
        w.execute({"plan": {**s._plan([f"ttft{i}"])}})
    res["ttft512Ms"] = sorted(ttfts[1:])[len(ttfts[1:]) // 2] * 1000

    # Batch-1 decode after a 128-token prompt: per-step wall time of execute(), sampling included.
    s = MiniScheduler(w, prof["numBlocks"], 16, args.budget, 256)
    steps = []
    orig = w.execute

    def timed(msg):
        t = time.perf_counter()
        r = orig(msg)
        steps.append((msg["plan"]["totalNumScheduledTokens"], time.perf_counter() - t))
        return r

    w.execute = timed
    s.run([prompt(128)], args.decode_steps)
    w.execute = orig
    dec = sorted(dt for n, dt in steps if n == 1)
    med = dec[len(dec) // 2]
    res["batch1DecodeMsMedian"] = med * 1000
    res["batch1DecodeTokPerS"] = 1.0 / med
    kv_bytes_per_tok = 2 * 32 * 8 * 128 * 2
    avg_ctx = 128 + args.decode_steps / 2
    moved = info["weightBytes"] + avg_ctx * kv_bytes_per_tok
    res["batch1BytesPerStep"] = moved
    res["batch1MBU_vs_3.35TBps"] = moved / med / 3.35e12
    # What a decode step reads: every weight but the embedding table (one row of it), plus the KV cache.
    read = moved - LLAMA3_8B["vocab_size"] * LLAMA3_8B["hidden_size"] * 2
    res["batch1BytesReadPerStep"] = read
    res["batch1TBpsOverReadBytes"] = read / med / 1e12

    if not args.skip_throughput:
        s = MiniScheduler(w, prof["numBlocks"], 16, args.budget, 256)
        prompts = [prompt(args.input_len) for _ in range(args.num_requests)]
        steps.clear()
        w.execute = timed
        done, wall = s.run(prompts, args.output_len)
        w.execute = orig
        out_tokens = sum(r["out"] for r in done)
        res["throughput"] = {
            "requests": len(done), "outputTokens": out_tokens, "wallSeconds": wall,
            "outputTokPerS": out_tokens / wall, "totalTokPerS": (out_tokens + args.input_len * len(done)) / wall,
            "meanTtftMs": 1000 * sum(r["ttft"] for r in done) / len(done),
            "steps": len(steps), "decodeOnlySteps": sum(1 for n, _ in steps if n <= 256),
            "decodeStepMsMedian": 1000 * sorted(dt for n, dt in steps if 0 < n <= 256)[len([1 for n, _ in steps if 0 < n <= 256]) // 2],
            "prefillSeconds": sum(dt for n, dt in steps if n > 256),
            "decodeSeconds": sum(dt for n, dt in steps if n <= 256),
        }
    text = json.dumps(res, indent=1)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text)
    print(text)
    print("| metric | value |\n|---|---|")
    print(f"| batch-1 decode tok/s | {res['batch1DecodeTokPerS']:.1f} (step {res['batch1DecodeMsMedian']:.2f} ms, MBU {res['batch1MBU_vs_3.35TBps']:.2f}, "
          f"{res['batch1BytesReadPerStep'] / 1e9:.2f} GB read at {res['batch1TBpsOverReadBytes']:.2f} TB/s) |")
    print(f"| TTFT 512 prompt ms | {res['ttft512Ms']:.1f} |")
    if "throughput" in res:
        th = res["throughput"]
        print(f"| {args.num_requests}x({args.input_len} in/{args.output_len} out) output tok/s | {th['outputTokPerS']:.0f} (wall {th['wallSeconds']:.2f} s) |")


if __name__ == "__main__":
    main()
