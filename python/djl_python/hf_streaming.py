"""Static-batch streaming for the huggingface handler (option.enable_streaming, spec §3.5).

`stream_text` is the token loop of enable_streaming=true, written against two callables so it
runs without torch in tests: `step(state) -> (next_ids, state)` and `decode(ids) -> str`. Each yielded
item is {"outputs": [new text of input 0, ...]}. Text is emitted by decoding a sequence's whole
generated ids and sending the suffix not yet sent, so multi-token characters come out whole.
`TorchStepper` is the real `step` (greedy or sampling with KV cache); torch is imported lazily.
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
    """(max_new_tokens, do_sample, temperature, top_k, top_p) from request parameters, validated."""
    max_new_tokens = int(parameters.get("max_new_tokens", 50))
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    do_sample = bool(parameters.get("do_sample", False))
    temperature = float(parameters.get("temperature", 1.0))
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    top_k = int(parameters.get("top_k", 0))
    top_p = float(parameters.get("top_p", 1.0))
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return max_new_tokens, do_sample, temperature, top_k, top_p


class TorchStepper:
    """One decoding step of a causal LM over a left-padded batch, reusing past_key_values."""

    def __init__(self, model, input_ids, attention_mask, parameters: dict):
        import inspect

        self.model = model
        _, self.do_sample, self.temperature, self.top_k, self.top_p = sampling_settings(parameters)
        self.takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        self.initial = (input_ids, attention_mask)

    def _positions(self, mask):
        # Left padding shifts real tokens right; positions must count real tokens only.
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def _choose(self, logits):
        import torch

        if not self.do_sample:
            return torch.argmax(logits, dim=-1)
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1])).values[..., -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits.float(), dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = sorted_probs.cumsum(-1) - sorted_probs > self.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, num_samples=1).squeeze(-1)

    def __call__(self, state):
        import torch

        if state is None:
            ids, mask = self.initial
            past = None
        else:
            ids, mask, past = state
        kwargs = {"input_ids": ids, "attention_mask": mask, "past_key_values": past, "use_cache": True}
        if self.takes_position_ids:
            pos = self._positions(mask)
            kwargs["position_ids"] = pos if past is None else pos[:, -ids.shape[1]:]
        with torch.no_grad():
            out = self.model(**kwargs)
        next_ids = self._choose(out.logits[:, -1, :])
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        return next_ids.tolist(), (next_ids.unsqueeze(-1), mask, out.past_key_values)
