"""Computes golden.json for a model folder with Hugging Face transformers in float32 (eager
attention, no TF32): for each fixed prompt, the prompt ids, the top-20 logits of the last position,
full-vocabulary log-softmax at three positions and a 32-token greedy continuation. Executors are
tested against these. Usage: golden.py MODEL_DIR [MODEL_DIR ...]"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

PROMPTS = [
    "And God said",
    "In the beginning",
    "The LORD is my shepherd; I shall not want.",
    # What the chat template renders for one user turn (the tokenizer adds <s> itself); tiny-kjv
    # answers it and stops with </s> inside 32 tokens.
    "### User:\nWhat did God say?\n### Assistant:\n",
    # Longer than 40 tokens: crosses KV blocks of 16 and Mistral's sliding window.
    "And it came to pass, when men began to multiply on the face of the earth, and daughters were "
    "born unto them, That the sons of God saw the daughters of men that they were fair; and they "
    "took them wives of all which they chose. And the LORD said, My spirit shall not always strive "
    "with man",
    # Not KJV: digits, punctuation and multi-byte UTF-8 through the byte-level tokenizer.
    "The quick brown fox, café ünïcode 42!",
]
MAX_NEW_TOKENS = 32
TOP_K = 20


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def compute(model_dir: str, dev: torch.device) -> tuple[dict, dict]:
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    raw_tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    # Weights are upcast from the stored dtype, so an executor loading the same file can match.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.to(dev).eval()
    cfg = model.config
    eos = cfg.eos_token_id
    gen_cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
                               eos_token_id=eos, pad_token_id=tok.pad_token_id, bos_token_id=cfg.bos_token_id,
                               repetition_penalty=1.0)
    # Record router logits of MoE layers to report how close top-k routing comes to a tie.
    router_gaps: list[float] = []
    k_route = getattr(cfg, "num_experts_per_tok", None)
    hooks = []
    if k_route:
        for name, mod in model.named_modules():
            if name.endswith(".gate") and hasattr(mod, "weight") and mod.weight.shape[0] == cfg.num_local_experts:
                def hook(_m, inp, _out):
                    x = inp[0].reshape(-1, inp[0].shape[-1])
                    logits = torch.nn.functional.linear(x, _m.weight)
                    s = logits.sort(dim=-1, descending=True).values
                    router_gaps.append(float((s[:, k_route - 1] - s[:, k_route]).min()))
                hooks.append(mod.register_forward_hook(hook))

    cases = []
    greedy_gaps: list[float] = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tok(prompt).input_ids
            if ids != raw_tok.encode(prompt).ids:
                raise SystemExit(f"{model_dir}: transformers and tokenizers disagree on {prompt!r}")
            x = torch.tensor([ids], device=dev)
            logits = model(x).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            top = torch.topk(logits[-1], TOP_K)
            n = len(ids)
            positions = sorted({0, n // 2, n - 1})
            out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gen_cfg,
                                 output_logits=True, return_dict_in_generate=True)
            new = out.sequences[0, n:].tolist()
            if eos in new:
                new = new[: new.index(eos) + 1]
            for step_logits in out.logits[: len(new)]:
                s = step_logits[0].float().sort(descending=True).values
                greedy_gaps.append(float(s[0] - s[1]))
            cases.append({
                "prompt": prompt,
                "input_ids": ids,
                "last_top20": {"ids": top.indices.tolist(), "logits": [round(v, 6) for v in top.values.tolist()]},
                "logsoftmax": [{"position": p, "values": [round(v, 5) for v in logp[p].tolist()]} for p in positions],
                "greedy": {"max_new_tokens": MAX_NEW_TOKENS, "ids": new,
                           "text": tok.decode(new, skip_special_tokens=True)},
            })
    for h in hooks:
        h.remove()
    golden = {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "architecture": cfg.architectures[0],
        "reference": f"transformers {transformers.__version__} torch {torch.__version__} float32 on {device_name(dev)}",
        "cases": cases,
    }
    stats = {"min_greedy_gap": min(greedy_gaps), "min_router_gap": min(router_gaps) if router_gaps else None}
    return golden, stats


def compare(new: dict, old: dict) -> tuple[bool, str]:
    """Same ids and greedy tokens, and logits/log-probs within 1e-3 of a committed golden.json."""
    same, d_top, d_ls = True, 0.0, 0.0
    for a, b in zip(new["cases"], old["cases"], strict=True):
        same &= a["input_ids"] == b["input_ids"] and a["greedy"]["ids"] == b["greedy"]["ids"]
        same &= a["last_top20"]["ids"] == b["last_top20"]["ids"]
        d_top = max(d_top, *(abs(x - y) for x, y in zip(a["last_top20"]["logits"], b["last_top20"]["logits"])))
        for la, lb in zip(a["logsoftmax"], b["logsoftmax"], strict=True):
            d_ls = max(d_ls, *(abs(x - y) for x, y in zip(la["values"], lb["values"])))
    ok = same and d_top < 1e-3 and d_ls < 1e-3
    return ok, (f"ids and greedy tokens {'identical' if same else 'DIFFER'}; max |d logit| (top-20) {d_top:.1e}; "
                f"max |d log-softmax| {d_ls:.1e}; reference was {old['reference']!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dirs", nargs="+")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out-name", default="golden.json", help="file name written inside each model dir")
    ap.add_argument("--check", action="store_true",
                    help="compare with the existing golden.json instead of writing; exit 1 on a mismatch")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device(args.device)
    failed = False
    for d in args.model_dirs:
        golden, stats = compute(d, dev)
        if args.check:
            with open(os.path.join(d, args.out_name)) as f:
                ok, msg = compare(golden, json.load(f))
            print(f"golden --check {d}: {'ok' if ok else 'MISMATCH'}: {msg}", flush=True)
            failed |= not ok
            continue
        path = os.path.join(d, args.out_name)
        with open(path, "w") as f:
            json.dump(golden, f, separators=(",", ":"))
            f.write("\n")
        first = golden["cases"][0]["greedy"]["text"]
        print(f"golden: {path}: {os.path.getsize(path)} bytes; min greedy top1-top2 gap "
              f"{stats['min_greedy_gap']:.4f}" + (f"; min router gap {stats['min_router_gap']:.4f}"
              if stats["min_router_gap"] is not None else "") + f"; 'And God said' -> {first!r}")
        sys.stdout.flush()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
