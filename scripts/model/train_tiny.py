"""Trains models/tiny-kjv: a Llama-architecture causal LM (RMSNorm, rotary, SwiGLU, grouped-query
attention) on the KJV training chapters, with a share of chat-formatted verse pairs, in bf16
autocast; keeps the weights of the best validation loss and writes the Hugging Face folder
(config.json, generation_config.json, model.safetensors in bf16) beside the tokenizer files."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kjv_corpus as kc  # noqa: E402

SAMPLE_PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd;"]
CHAT_SAMPLE = [{"role": "user", "content": "Who made the heaven and the earth?"}]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer in the words of the King James Bible."]


def log(msg: str, report: list[str]) -> None:
    print(msg, flush=True)
    report.append(msg)


def config_json(a: argparse.Namespace, transformers_version: str) -> dict:
    # Field names as real Llama checkpoints carry them (rope_theta, torch_dtype), like the zoo.
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2,
        "head_dim": a.hidden // a.heads, "hidden_act": "silu", "hidden_size": a.hidden,
        "initializer_range": 0.02, "intermediate_size": a.intermediate,
        "max_position_embeddings": a.max_positions, "mlp_bias": False, "num_attention_heads": a.heads,
        "num_hidden_layers": a.layers, "num_key_value_heads": a.kv_heads, "pretraining_tp": 1,
        "rms_norm_eps": 1e-5, "rope_scaling": None, "rope_theta": a.rope_theta,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": transformers_version, "use_cache": True, "vocab_size": a.vocab_size,
    }


class Data:
    """Token streams of the train and validation chapters (one verse a line) and a batch sampler
    whose rows start with <s> at a verse start, with a share of rows packed with chat samples."""

    def __init__(self, tok, chapters_train, chapters_val, seq: int, chat_frac: float, seed: int):
        self.tok, self.seq, self.chat_frac = tok, seq, chat_frac
        self.rng = np.random.default_rng(seed)
        self.train_chapters = chapters_train
        self.train, self.train_starts, _ = self._stream(chapters_train)
        self.val, _, self.val_bytes = self._stream(chapters_val)
        self.bos = tok.token_to_id(kc.BOS)

    def _stream(self, chapters):
        ids, starts, nbytes = [], [], 0
        texts = [v + "\n" for c in chapters for v in c.verses]
        for enc, t in zip(self.tok.encode_batch(texts, add_special_tokens=False), texts):
            starts.append(len(ids))
            ids.extend(enc.ids)
            nbytes += len(t.encode("utf-8"))
        return np.array(ids, dtype=np.int64), np.array(starts, dtype=np.int64), nbytes

    def _chat_ids(self) -> list[int]:
        c = self.train_chapters[self.rng.integers(len(self.train_chapters))]
        if len(c.verses) < 2:
            return []
        i = int(self.rng.integers(len(c.verses) - 1))
        answer = " ".join(c.verses[i + 1 : i + 1 + int(self.rng.integers(1, 3))])
        msgs = [{"role": "user", "content": c.verses[i]}, {"role": "assistant", "content": answer}]
        if self.rng.random() < 0.2:
            msgs.insert(0, {"role": "system", "content": SYSTEM_PROMPTS[int(self.rng.integers(len(SYSTEM_PROMPTS)))]})
        return self.tok.encode(kc.render_chat(msgs, False), add_special_tokens=False).ids

    def batch(self, b: int) -> torch.Tensor:
        n = self.seq + 1
        out = np.empty((b, n), dtype=np.int64)
        for r in range(b):
            row: list[int] = []
            while len(row) < n:
                if self.rng.random() < self.chat_frac:
                    row.extend(self._chat_ids())
                else:
                    s = int(self.train_starts[self.rng.integers(len(self.train_starts))])
                    row.append(self.bos)
                    row.extend(self.train[s : s + n - len(row)].tolist())
            out[r] = row[:n]
        return torch.from_numpy(out)

    def val_windows(self) -> torch.Tensor:
        k = len(self.val) // self.seq
        w = self.val[: k * self.seq].reshape(k, self.seq)
        return torch.from_numpy(np.concatenate([np.full((k, 1), self.bos), w], axis=1))


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, dev, batch: int, autocast: bool) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x = windows[i : i + batch].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total += float(loss)
        count += x[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def continuations(model, hf_tok, dev, max_new: int) -> list[tuple[str, str]]:
    model.eval()
    out = []
    prompts = [(p, hf_tok(p, return_tensors="pt").input_ids) for p in SAMPLE_PROMPTS]
    chat = hf_tok.apply_chat_template(CHAT_SAMPLE, add_generation_prompt=True, tokenize=False)
    prompts.append((chat, hf_tok(chat, add_special_tokens=False, return_tensors="pt").input_ids))
    for p, ids in prompts:
        ids = ids.to(dev)
        g = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
                           eos_token_id=1, pad_token_id=2)
        out.append((p, hf_tok.decode(g[0, ids.shape[1]:], skip_special_tokens=True)))
    model.train()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default=kc.DEFAULT_CORPUS)
    ap.add_argument("--out", default="models/tiny-kjv")
    ap.add_argument("--tokenizer", default="models/tiny-kjv", help="folder with tokenizer.json (train_tokenizer.py)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--max-positions", type=int, default=1024)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.2, help="on attention and MLP outputs, training only")
    ap.add_argument("--chat-frac", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=8, help="evaluations without improvement before stopping")
    ap.add_argument("--time-limit", type=float, default=420.0, help="seconds of training at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new", type=int, default=40)
    ap.add_argument("--metrics", help="write the final numbers as JSON here")
    ap.add_argument("--report", default=os.path.join(os.environ["OUT"], "report.txt") if os.environ.get("OUT") else None)
    a = ap.parse_args()

    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    report: list[str] = []
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    devname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    log(f"train_tiny: {devname}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"args {' '.join(sys.argv[1:]) or '(defaults)'}", report)

    tok_path = os.path.join(a.tokenizer, "tokenizer.json")
    if not os.path.exists(tok_path):
        raise SystemExit(f"{tok_path} is missing: run scripts/model/train_tokenizer.py first")
    os.makedirs(a.out, exist_ok=True)
    if os.path.abspath(a.tokenizer) != os.path.abspath(a.out):
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(a.tokenizer, f), os.path.join(a.out, f))
    tok = Tokenizer.from_file(tok_path)
    if tok.get_vocab_size() != a.vocab_size:
        raise SystemExit(f"tokenizer vocab {tok.get_vocab_size()} != --vocab-size {a.vocab_size}")

    train_ch, val_ch = kc.split_chapters(kc.read_chapters(a.corpus))
    data = Data(tok, train_ch, val_ch, a.seq, a.chat_frac, a.seed)
    val = data.val_windows()
    log(f"corpus: train {len(train_ch)} chapters {len(data.train)} tokens; validation {len(val_ch)} chapters "
        f"{len(data.val)} tokens ({len(val)} windows of {a.seq}); chat share {a.chat_frac}", report)

    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config_json(a, transformers.__version__), f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2,
                   "transformers_version": transformers.__version__}, f, indent=2)
        f.write("\n")
    config = AutoConfig.from_pretrained(a.out)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: {a.layers} layers, hidden {a.hidden}, {a.heads} heads / {a.kv_heads} KV heads, "
        f"intermediate {a.intermediate}, {nparams} parameters (tied embeddings)", report)

    if a.dropout > 0:
        def drop(mod, _inp, out):
            return F.dropout(out, a.dropout, mod.training)
        for name, mod in model.named_modules():
            if name.endswith("o_proj") or name.endswith("down_proj"):
                mod.register_forward_hook(drop)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), fused=dev.type == "cuda")

    def lr_at(step: int) -> float:
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    best_loss, best_step, best_state, since_best = float("inf"), -1, None, 0
    train_ema = None
    t0 = time.time()
    step = 0
    model.train()
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = data.batch(a.batch).to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 10 == 0 or train_ema is None:
            lv = loss.item()
            train_ema = lv if train_ema is None else 0.9 * train_ema + 0.1 * lv
        last = step + 1 == a.steps or time.time() - t0 > a.time_limit
        if (step + 1) % a.eval_every == 0 or last:
            vl = evaluate(model, val, dev, a.batch, autocast)
            better = vl < best_loss
            if better:
                best_loss, best_step, since_best = vl, step + 1, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                since_best += 1
            print(f"step {step + 1:5d}  {time.time() - t0:6.1f}s  lr {lr_at(step):.2e}  train {train_ema:.4f}  "
                  f"val {vl:.4f}  ppl {math.exp(vl):7.2f}{'  *' if better else ''}", flush=True)
            if since_best >= a.patience:
                print(f"no improvement in {a.patience} evaluations: stopping", flush=True)
                break
        if last:
            break
    train_s = time.time() - t0
    log(f"trained {step + 1} steps of {a.batch}x{a.seq} tokens in {train_s:.1f}s; best validation loss "
        f"{best_loss:.4f} at step {best_step}", report)

    model.load_state_dict(best_state)
    model.to(torch.bfloat16)
    tmp = a.out.rstrip("/") + ".save"
    model.save_pretrained(tmp)
    shutil.move(os.path.join(tmp, "model.safetensors"), os.path.join(a.out, "model.safetensors"))
    shutil.rmtree(tmp)

    # Measure what ships: the bf16 file, upcast, computed in float32.
    shipped = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32).to(dev)
    vl = evaluate(shipped, val, dev, a.batch, autocast=False)
    bpb = vl * len(data.val) / data.val_bytes / math.log(2)
    size = os.path.getsize(os.path.join(a.out, "model.safetensors"))
    log(f"shipped weights (bf16 file, float32 compute): validation loss {vl:.4f} nats/token, perplexity "
        f"{math.exp(vl):.2f}, ~{bpb:.3f} bits/byte; model.safetensors {size} bytes", report)
    hf_tok = AutoTokenizer.from_pretrained(a.out)
    for p, text in continuations(shipped, hf_tok, dev, a.max_new):
        log(f"greedy {p!r} -> {text!r}", report)
    if a.metrics:
        with open(a.metrics, "w") as f:
            json.dump({"val_loss": vl, "perplexity": math.exp(vl), "bits_per_byte": bpb, "best_step": best_step,
                       "steps": step + 1, "train_seconds": train_s, "bytes": size, "device": devname}, f)
    if size > 16 * 1000 * 1000:
        raise SystemExit(f"model.safetensors is {size} bytes, over 16 MB")
    if a.report:
        with open(a.report, "a") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
