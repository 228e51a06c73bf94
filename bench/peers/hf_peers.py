"""Same-machine peers for the GPU sweep: Hugging Face transformers on the same Llama-3-8B shape with random
bf16 weights (AutoModelForCausalLM.from_config), run at the same concurrency levels and lengths as `lmi bench`.
  - hf-generate: plain `model.generate`, one static batch of c prompts per level (eager, dynamic cache, SDPA).
  - hf-generate-batch: `model.generate_batch` continuous batching (paged|sdpa), c prompts submitted at once.
Lengths are forced (min_new_tokens / an EOS id the model never sees) and checked; every level writes its
numbers to --out as soon as it finishes, so a run cut short still returns what it measured.
Metrics follow lmi bench: TTFT, TPOT = (E2E - TTFT)/(n - 1), output tok/s = generated tokens / wall time.
"""
import argparse
import json
import statistics
import sys
import time
import traceback

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.generation import GenerationConfig

# An id inside the vocabulary that is not Llama-3's EOS: used as the EOS of the continuous-batching peer so
# that requests run to max_new_tokens (HF's own benchmark does the same with the pad id); lengths are checked.
UNUSED_EOS = 128255


def prompts(n, length, vocab, seed):
    """Token-id prompts like lmi bench's random dataset: consecutive ids from a random offset."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, vocab, (n,), generator=g).tolist()
    return [[(o + i + j) % vocab for j in range(length)] for i, o in enumerate(offsets)]


def sync():
    torch.cuda.synchronize()


def median(xs):
    return statistics.median(xs) if xs else None


def run_generate(model, c, args):
    """One static batch of c prompts: TTFT from a 1-token generate, E2E from the full one."""
    ids = torch.tensor(prompts(c, args.input_len, args.vocab, args.seed + c), device="cuda")
    mask = torch.ones_like(ids)
    common = dict(attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=UNUSED_EOS)
    sync()
    t0 = time.perf_counter()
    model.generate(ids, max_new_tokens=1, min_new_tokens=1, **common)
    sync()
    ttft = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.generate(ids, max_new_tokens=args.output_len, min_new_tokens=args.output_len, **common)
    sync()
    e2e = time.perf_counter() - t0
    n = out.shape[1] - ids.shape[1]
    return {
        "concurrency": c,
        "num_requests": c,
        "output_tokens": c * n,
        "length_mismatches": 0 if n == args.output_len else c,
        "wall_s": e2e,
        "output_tok_s": c * n / e2e,
        "median_ttft_ms": ttft * 1000,
        "median_tpot_ms": (e2e - ttft) / (n - 1) * 1000 if n > 1 else None,
        "median_e2el_ms": e2e * 1000,
    }


def run_generate_batch(model, c, args, gen, cb):
    """c prompts submitted at once; per-request TTFT/TPOT from the manager's own timestamps."""
    inputs = prompts(c, args.input_len, args.vocab, args.seed + c)
    sync()
    t0 = time.perf_counter()
    outs = model.generate_batch(inputs=inputs, generation_config=gen, continuous_batching_config=cb,
                                record_timestamps=True, persistent_manager=True, warmup=False)
    sync()
    wall = time.perf_counter() - t0
    outs = list(outs.values())
    lens = [len(o.generated_tokens) for o in outs]
    ttfts, tpots, e2els, first, last = [], [], [], [], []
    for o in outs:
        ts = getattr(o, "timestamps", None)
        created = getattr(o, "created_time", None)
        if not ts or created is None:
            continue
        ttft, e2e = ts[0] - created, ts[-1] - created
        ttfts.append(ttft * 1000)
        e2els.append(e2e * 1000)
        if len(ts) > 1:
            tpots.append((e2e - ttft) / (len(ts) - 1) * 1000)
        first.append(created)
        last.append(ts[-1])
    total = sum(lens)
    return {
        "concurrency": c,
        "num_requests": c,
        "output_tokens": total,
        "length_mismatches": sum(1 for n in lens if n != args.output_len),
        "failed": sum(1 for o in outs if getattr(o, "error", None)),
        "wall_s": wall,
        # Throughput over the requests' own span (first creation to last token) leaves out the manager's
        # per-call setup; the wall-clock figure is kept beside it.
        "output_tok_s": total / (max(last) - min(first)) if last else total / wall,
        "output_tok_s_wall": total / wall,
        "median_ttft_ms": median(ttfts),
        "median_tpot_ms": median(tpots),
        "median_e2el_ms": median(e2els),
    }


def save(args, doc):
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.json of the model shape (Llama-3-8B)")
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--levels", default="1,8,32,128", help="concurrency levels, comma-separated")
    p.add_argument("--vocab", type=int, default=128000, help="prompt ids are drawn below this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", default="hf-generate,hf-generate-batch")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    peers = args.peers.split(",")
    doc = {"transformers": transformers.__version__, "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(0), "input_len": args.input_len, "output_len": args.output_len,
           "peers": {}}
    torch.manual_seed(args.seed)
    cfg = AutoConfig.from_pretrained(args.config)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    doc["model_init_s"] = time.perf_counter() - t0
    print(f"model ready in {doc['model_init_s']:.1f} s", flush=True)
    save(args, doc)
    # No torch.inference_mode() here: generate_batch's manager updates its tensors in place from a worker
    # thread, which inference tensors forbid ("Inplace update to inference tensor outside InferenceMode",
    # seen on the H100). generate() already runs under no_grad.
    if "hf-generate" in peers:
        rows = doc["peers"]["hf-generate"] = {"how": "model.generate, static batch, SDPA, dynamic cache, eager",
                                             "levels": []}
        try:
            model.generate(torch.tensor(prompts(1, 16, args.vocab, 1), device="cuda"), max_new_tokens=4,
                           do_sample=False, pad_token_id=0)  # warm-up, not measured
            for c in levels:
                rows["levels"].append(run_generate(model, c, args))
                print("hf-generate", rows["levels"][-1], flush=True)
                save(args, doc)
        except Exception:  # keep the other peer's numbers if this one breaks
            rows["error"] = traceback.format_exc()[-2000:]
            print(rows["error"], file=sys.stderr, flush=True)
        torch.cuda.empty_cache()
    if "hf-generate-batch" in peers:
        rows = doc["peers"]["hf-generate-batch"] = {
            "how": "model.generate_batch continuous batching, paged|sdpa, defaults (no CUDA graphs, no compile)",
            "levels": []}
        try:
            # Imported here: if this transformers lacks continuous batching, the generate peer still ran.
            from transformers.generation import ContinuousBatchingConfig

            gen = GenerationConfig(max_new_tokens=args.output_len, do_sample=False, eos_token_id=UNUSED_EOS,
                                   pad_token_id=0)
            cb = ContinuousBatchingConfig()
            model.generate_batch(inputs=prompts(2, args.input_len, args.vocab, 2), generation_config=gen,
                                 continuous_batching_config=cb, persistent_manager=True, warmup=True)
            rows["attn_implementation"] = str(model.config._attn_implementation)
            for c in levels:
                rows["levels"].append(run_generate_batch(model, c, args, gen, cb))
                print("hf-generate-batch", rows["levels"][-1], flush=True)
                save(args, doc)
        except Exception:
            rows["error"] = traceback.format_exc()[-2000:]
            print(rows["error"], file=sys.stderr, flush=True)
    save(args, doc)


if __name__ == "__main__":
    main()
