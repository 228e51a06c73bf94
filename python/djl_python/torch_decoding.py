"""Token-by-token decoding steps with torch, for the streaming loop in hf_streaming.stream_text.

CausalStepper feeds a left-padded batch to a decoder-only model, then one token per step with the
KV cache; Seq2SeqStepper runs the encoder once and steps the decoder. Both pick tokens the same way
(greedy, or sampling with temperature / top-k / top-p, plus repetition penalty) and return plain
lists of ids. torch is imported when a stepper is built, never at module import.
"""

import inspect

from .hf_streaming import sampling_settings


class _Chooser:
    def __init__(self, parameters: dict):
        _, self.do_sample, self.temperature, self.top_k, self.top_p, self.penalty = sampling_settings(parameters)

    def __call__(self, logits, history):
        import torch

        logits = logits.float()
        if self.penalty != 1.0:
            # CTRL-style: make every token already in the sequence less likely.
            seen = torch.gather(logits, 1, history)
            seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
            logits = logits.scatter(1, history, seen)
        if not self.do_sample:
            return torch.argmax(logits, dim=-1)
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1])).values[..., -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = sorted_probs.cumsum(-1) - sorted_probs > self.top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        return torch.multinomial(probs, num_samples=1).squeeze(-1)


class CausalStepper:
    """state: None at first, then (last ids, attention mask, past_key_values, history)."""

    def __init__(self, model, input_ids, attention_mask, parameters: dict):
        self.model = model
        self.choose = _Chooser(parameters)
        self.takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        self.initial = (input_ids, attention_mask)

    def __call__(self, state):
        import torch

        if state is None:
            ids, mask = self.initial
            past, history = None, ids
        else:
            ids, mask, past, history = state
        kwargs = {"input_ids": ids, "attention_mask": mask, "past_key_values": past, "use_cache": True}
        if self.takes_position_ids:
            # Left padding shifts real tokens right; positions must count real tokens only.
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
            kwargs["position_ids"] = pos if past is None else pos[:, -ids.shape[1]:]
        with torch.no_grad():
            out = self.model(**kwargs)
        next_ids = self.choose(out.logits[:, -1, :], history)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        col = next_ids.unsqueeze(-1)
        return next_ids.tolist(), (col, mask, out.past_key_values, torch.cat([history, col], dim=-1))


class Seq2SeqStepper:
    """state: None at first, then (decoder ids so far, past_key_values, encoder outputs)."""

    def __init__(self, model, input_ids, attention_mask, parameters: dict, decoder_start_token_id: int):
        self.model = model
        self.choose = _Chooser(parameters)
        self.input_ids, self.attention_mask = input_ids, attention_mask
        self.start_id = decoder_start_token_id

    def __call__(self, state):
        import torch

        if state is None:
            decoder_ids = torch.full((self.input_ids.shape[0], 1), self.start_id, dtype=torch.long,
                                     device=self.input_ids.device)
            past, encoder_outputs = None, None
        else:
            decoder_ids, past, encoder_outputs = state
        kwargs = {"attention_mask": self.attention_mask, "decoder_input_ids": decoder_ids[:, -1:] if past is not None else decoder_ids,
                  "past_key_values": past, "use_cache": True}
        if encoder_outputs is None:
            kwargs["input_ids"] = self.input_ids
        else:
            kwargs["encoder_outputs"] = encoder_outputs
        with torch.no_grad():
            out = self.model(**kwargs)
        next_ids = self.choose(out.logits[:, -1, :], decoder_ids)
        encoder_outputs = encoder_outputs or (out.encoder_last_hidden_state,)
        decoder_ids = torch.cat([decoder_ids, next_ids.unsqueeze(-1)], dim=-1)
        return next_ids.tolist(), (decoder_ids, out.past_key_values, encoder_outputs)
