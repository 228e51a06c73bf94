"""KJV corpus for models/tiny-kjv: reads the verse dump of dump_kjv.sh, splits it into train and
validation chapters, and renders the chat format that the tokenizer's chat_template produces.
Shared by train_tokenizer.py and train_tiny.py so both see the same text."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_CORPUS = os.path.join(".cache", "kjv", "kjv.tsv")
# Every VAL_EVERY-th chapter (counting from 0, offset VAL_OFFSET) is held out: 30 chapters of 1189
# spread over the whole book, so validation covers law, history, poetry, prophecy and letters.
VAL_EVERY = 40
VAL_OFFSET = 20

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# Jinja (Hugging Face convention: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`).
# render_chat() below is the same thing in Python; train_tokenizer.py checks that they agree.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '### System:\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '### Assistant:\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)


def render_chat(messages: list[dict], add_generation_prompt: bool, bos: str = BOS, eos: str = EOS) -> str:
    out = [bos]
    for m in messages:
        if m["role"] == "system":
            out.append("### System:\n" + m["content"] + "\n")
        elif m["role"] == "user":
            out.append("### User:\n" + m["content"] + "\n")
        elif m["role"] == "assistant":
            out.append("### Assistant:\n" + m["content"] + eos + "\n")
    if add_generation_prompt:
        out.append("### Assistant:\n")
    return "".join(out)


@dataclass
class Chapter:
    book: str
    chapter: int
    verses: list[str]


def read_chapters(path: str = DEFAULT_CORPUS) -> list[Chapter]:
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run scripts/model/dump_kjv.sh first")
    chapters: list[Chapter] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            book, chap, _verse, text = line.rstrip("\n").split("\t")
            c = int(chap)
            if not chapters or chapters[-1].book != book or chapters[-1].chapter != c:
                chapters.append(Chapter(book, c, []))
            chapters[-1].verses.append(text)
    if len(chapters) != 1189:
        raise SystemExit(f"{path}: expected 1189 chapters, found {len(chapters)}")
    return chapters


def split_chapters(chapters: list[Chapter]) -> tuple[list[Chapter], list[Chapter]]:
    train = [c for i, c in enumerate(chapters) if i % VAL_EVERY != VAL_OFFSET]
    val = [c for i, c in enumerate(chapters) if i % VAL_EVERY == VAL_OFFSET]
    return train, val
