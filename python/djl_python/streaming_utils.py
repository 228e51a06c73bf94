"""`from djl_python.streaming_utils import StreamingUtils` for custom model.py streaming (DJL's API).

StreamingUtils.get_stream_generator("Accelerate"|"DeepSpeed"|"transformers-neuronx") returns a
function (model, tokenizer, inputs, device, **parameters) that yields, per step, a list with the new
text of every input ("" once an input has finished). use_hf_default_streamer wraps generate() with a
streamer that yields lists of decoded texts. Built on hf_streaming + torch_decoding.
"""

import threading
from queue import Queue

from .hf_streaming import sampling_settings, stream_text
from .torch_decoding import CausalStepper, Seq2SeqStepper


def is_seq2seq(model) -> bool:
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return True
    return any(a.endswith("ForConditionalGeneration") and a.startswith("T5")
               for a in (getattr(config, "architectures", None) or []))


class _ListStreamer:
    """A transformers streamer (put/end) that queues one list of decoded texts per put()."""

    _END = object()

    def __init__(self, tokenizer, **decode_kwargs):
        self.tokenizer, self.decode_kwargs, self.queue = tokenizer, decode_kwargs, Queue()

    def put(self, value):
        # generate() puts the prompt as (batch, len), then each step's tokens as (batch,).
        rows = value.view(-1, 1) if len(value.shape) == 1 else value
        self.queue.put([self.tokenizer.decode(row, **self.decode_kwargs) for row in rows])

    def put_text(self, texts):
        self.queue.put(texts)

    def end(self):
        self.queue.put(self._END)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            yield item


class StreamingUtils:
    DEFAULT_MAX_NEW_TOKENS = 50
    BUILTIN_ENGINES = {"DeepSpeed", "Accelerate", "transformers-neuronx"}

    @staticmethod
    def get_stream_generator(execution_engine: str):
        if execution_engine not in StreamingUtils.BUILTIN_ENGINES:
            raise ValueError(f"{execution_engine} engine is not supported for streaming "
                             f"(supported: {', '.join(sorted(StreamingUtils.BUILTIN_ENGINES))})")
        return StreamingUtils._hf_model_stream_generator

    @staticmethod
    def _hf_model_stream_generator(model, tokenizer, inputs, device=None, **parameters):
        if not isinstance(inputs, list) or not inputs:
            raise ValueError("inputs to the stream generator must be a non-empty list of strings")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        parameters = {"max_new_tokens": StreamingUtils.DEFAULT_MAX_NEW_TOKENS, **parameters}
        max_new_tokens = sampling_settings(parameters)[0]
        seq2seq = is_seq2seq(model)
        if not seq2seq:
            tokenizer.padding_side = "left"
        enc = tokenizer(inputs, return_tensors="pt", padding=True)
        if device is not None:
            enc = enc.to(device)
        if seq2seq:
            start = getattr(model.config, "decoder_start_token_id", None)
            start = tokenizer.pad_token_id if start is None else start
            step = Seq2SeqStepper(model, enc["input_ids"], enc["attention_mask"], parameters, start)
        else:
            step = CausalStepper(model, enc["input_ids"], enc["attention_mask"], parameters)

        def decode(ids):
            return tokenizer.decode(ids, skip_special_tokens=True)

        for item in stream_text(step, decode, None, len(inputs), max_new_tokens, tokenizer.eos_token_id):
            yield item["outputs"]

    @staticmethod
    def use_hf_default_streamer(model, tokenizer, inputs, device=None, **kwargs):
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        enc = tokenizer(inputs, padding=True, return_tensors="pt")
        if device is not None:
            enc = enc.to(device)
        streamer = _ListStreamer(tokenizer, skip_special_tokens=True)

        def run():
            try:
                model.generate(**enc, streamer=streamer, **kwargs)
            except Exception as e:  # noqa: BLE001 — the client sees the error as the last streamed item
                streamer.put_text([str(e)])
            finally:
                streamer.end()

        threading.Thread(target=run, daemon=True).start()
        return streamer
