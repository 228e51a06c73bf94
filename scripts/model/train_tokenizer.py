"""Trains the byte-level BPE tokenizer of models/tiny-kjv on the KJV training chapters and writes
tokenizer.json + tokenizer_config.json (bos/eos/pad, TemplateProcessing that prepends <s>, chat
template). Deterministic: the same corpus gives the same file."""

from __future__ import annotations

import argparse
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import kjv_corpus as kc


def train(corpus: str, vocab_size: int) -> Tokenizer:
    train_chapters, _ = kc.split_chapters(kc.read_chapters(corpus))
    texts = ["\n".join(c.verses) + "\n" for c in train_chapters]
    # The chat markers appear in a share of the training text (train_tiny.py), so give them merges.
    texts += [kc.render_chat([{"role": "user", "content": "x"}], True)[len(kc.BOS):]] * 200
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[kc.BOS, kc.EOS, kc.PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{kc.BOS} $A", pair=f"{kc.BOS} $A {kc.BOS} $B", special_tokens=[(kc.BOS, 0)]
    )
    if tok.get_vocab_size() != vocab_size:
        raise SystemExit(f"vocab came out at {tok.get_vocab_size()}, wanted {vocab_size}")
    for i, t in enumerate([kc.BOS, kc.EOS, kc.PAD]):
        assert tok.token_to_id(t) == i, t
    return tok


def tokenizer_config(model_max_length: int) -> dict:
    def added(content: str) -> dict:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}

    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {str(i): added(t) for i, t in enumerate([kc.BOS, kc.EOS, kc.PAD])},
        "bos_token": kc.BOS,
        "eos_token": kc.EOS,
        "pad_token": kc.PAD,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": kc.CHAT_TEMPLATE,
    }


def check_template() -> None:
    import jinja2

    env = jinja2.Environment()
    t = env.from_string(kc.CHAT_TEMPLATE)
    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"},
             {"role": "assistant", "content": "Moses."}, {"role": "user", "content": "Where?"}]
    for gen in (True, False):
        got = t.render(messages=convo, add_generation_prompt=gen, bos_token=kc.BOS, eos_token=kc.EOS)
        want = kc.render_chat(convo, gen)
        if got != want:
            raise SystemExit(f"chat_template and render_chat disagree:\n{got!r}\n{want!r}")


def save(tok: Tokenizer, out_dir: str, model_max_length: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(model_max_length), f, indent=2)
        f.write("\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default=kc.DEFAULT_CORPUS)
    ap.add_argument("--out", default="models/tiny-kjv")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--model-max-length", type=int, default=1024)
    args = ap.parse_args()
    check_template()
    tok = train(args.corpus, args.vocab_size)
    save(tok, args.out, args.model_max_length)
    sample = "In the beginning God created the heaven and the earth."
    enc = tok.encode(sample)
    print(f"train_tokenizer: {args.out}: vocab {tok.get_vocab_size()}; {sample!r} -> {len(enc.ids)} ids {enc.ids}")


if __name__ == "__main__":
    main()
