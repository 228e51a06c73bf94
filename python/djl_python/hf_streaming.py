"""Static-batch streaming for the huggingface handler (option.enable_streaming, spec §3.5).

`stream_text` is the token loop of enable_streaming=true, written against two callables so it
runs without torch in tests: `step(state) -> (next_ids, state)` and `decode(ids) -> str`. Each yielded
item is {"outputs": [new text of input 0, ...]}. Text is emitted by decoding a sequence's whole
generated ids and sending the suffix not yet sent, so multi-token characters come out whole.
The real `step` functions (torch, KV cache) are in torch_decoding.py.
"""

import json

_REPLACEMENT_CHAR = "\ufffd"


def stream_text(step, decode, state, batch_size: int, max_new_tokens: int, eos_token_id=None):
    generated = [[] for _ in range(batch_size)]
    sent = ["" for _ in range(batch_size)]
    finished = [False] * batch_size
    for _ in range(max_new_tokens):
        next_ids, state = step(state)
        if len(next_ids) != batch_size:
            raise ValueError(f"step returned {len(next_ids)} tokens for a batch of {batch_size}")
        deltas = []
        for i, token in enumerate(next_ids):
            if finished[i]:
                deltas.append("")
                continue
            if eos_token_id is not None and token == eos_token_id:
                finished[i] = True
                deltas.append("")
                continue
            generated[i].append(token)
            text = decode(generated[i])
            # A trailing U+FFFD means a character is split across tokens: wait for the rest.
            if text.endswith(_REPLACEMENT_CHAR) or not text.startswith(sent[i]):
                deltas.append("")
                continue
            deltas.append(text[len(sent[i]):])
            sent[i] = text
        yield {"outputs": deltas}
        if all(finished):
            return


def jsonlines_formatter(item) -> str:
    """The wire form of one streamed item: one JSON object per line."""
    return json.dumps(item, ensure_ascii=False) + "\n"


def sampling_settings(parameters: dict):
    """(max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty), validated. As in DJL's
    token loop, any of temperature/top_k/top_p in the request turns sampling on, as does do_sample."""
    max_new_tokens = int(parameters.get("max_new_tokens", 50))
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    do_sample = bool(parameters.get("do_sample", False)) or any(
        k in parameters for k in ("temperature", "top_k", "top_p"))
    temperature = float(parameters.get("temperature", 1.0))
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    top_k = int(parameters.get("top_k", 0))
    top_p = float(parameters.get("top_p", 1.0))
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    repetition_penalty = float(parameters.get("repetition_penalty", 1.0))
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    return max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty
