"""Built-in handler `djl_python.huggingface`: transformers pipelines for rolling_batch=disable and
non-generation tasks (spec §3.5): text-generation (optionally streamed), text2text-generation,
fill-mask, text-classification, token-classification, question-answering, feature-extraction.

The init request loads one pipeline; each request (or dynamic batch) is parsed, run through it and
answered as a JSON array with one result per input. torch and transformers are imported only when
the model loads, so the module imports (and its pure parts test) with the standard library alone.
"""

import logging
import sys
import threading

from .encode_decode import encode
from .hf_config import parse_options, read_local_architectures, resolve_task
from .hf_streaming import jsonlines_formatter, sampling_settings
from .streaming_utils import StreamingUtils
from .inputs import Input
from .outputs import Output


def _require(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"djl_python.huggingface needs the '{name}' package, which cannot be imported by "
                          f"{sys.executable} ({e}); install torch and transformers in the worker's Python "
                          "or point option.pythonExecutable at one that has them") from e


def _version_at_least(version: str, minimum: tuple) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= minimum


def parse_request(item: Input):
    """One request -> (list of pipeline inputs, parameters). JSON bodies follow {"inputs", "parameters"};
    a JSON object without "inputs" is itself the input (question-answering); other bodies are text."""
    content_type = (item.get_property("content-type") or "").lower()
    if content_type.startswith("application/json"):
        body = item.get_as_json()
        if isinstance(body, dict):
            parameters = body.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise ValueError("'parameters' must be a JSON object")
            data = body["inputs"] if "inputs" in body else {k: v for k, v in body.items() if k != "parameters"}
        else:
            data, parameters = body, {}
    else:
        data, parameters = item.get_as_string(), {}
    inputs = data if isinstance(data, list) else [data]
    if not inputs:
        raise ValueError("'inputs' is an empty list")
    return inputs, parameters


def reply_content_type(item: Input) -> str:
    """The request's Accept, as DJL reads it: tensor requests default to their own type, else JSON."""
    accept = item.get_property("Accept")
    if not accept or "*/*" in accept:
        content_type = item.get_property("Content-Type") or ""
        return content_type if content_type.startswith("tensor/") and not accept else "application/json"
    return accept


def parse_batch(batch):
    """All requests of a dynamic batch -> (flat inputs, per-request sizes, shared parameters)."""
    flat, sizes, parameters = [], [], None
    for item in batch:
        inputs, params = parse_request(item)
        if parameters is None:
            parameters = params
        elif params != parameters:
            raise ValueError("In order to enable dynamic batching, all input batches must have the same parameters")
        flat.extend(inputs)
        sizes.append(len(inputs))
    return flat, sizes, parameters or {}


# Pipelines that, given a one-element list, return that element's result instead of a list of one.
_UNWRAPS_SINGLE_INPUT = ("fill-mask", "question-answering")


def normalize_predictions(task: str, predictions, num_inputs: int) -> list:
    """Pipeline output -> one entry per input. text-generation returns a list per prompt; with one
    sequence per prompt it becomes the {"generated_text"} object itself, as DJL's handler answers."""
    if num_inputs == 1 and task in _UNWRAPS_SINGLE_INPUT:
        predictions = [predictions]
    if not isinstance(predictions, list) or len(predictions) != num_inputs:
        raise ValueError(f"the {task} pipeline returned {type(predictions).__name__} for {num_inputs} inputs")
    if task == "text-generation":
        predictions = [p[0] if isinstance(p, list) and len(p) == 1 else p for p in predictions]
    return predictions


def split_results(predictions: list, sizes: list) -> list:
    out, offset = [], 0
    for size in sizes:
        out.append(predictions[offset:offset + size])
        offset += size
    return out


class HuggingFaceService:
    def __init__(self):
        self.initialized = False
        self.pipeline = None
        self.task = ""
        self.opts = None

    def initialize(self, properties: dict):
        torch = _require("torch")
        self.opts = parse_options(properties, cuda_available=torch.cuda.is_available())
        rolling = (properties.get("rolling_batch") or "disable").lower()
        if rolling not in ("disable", "auto"):
            logging.warning("rolling_batch=%s is served by the engine, not this handler; batching statically", rolling)
        self.task = resolve_task(self.opts, self._architectures)
        if self.opts.enable_streaming != "false" and self.task not in ("text-generation", "text2text-generation"):
            raise ValueError(f"option.enable_streaming applies to text generation tasks only, not {self.task}")
        self.pipeline = self._load_pipeline(torch)
        self.initialized = True
        logging.info("loaded %s for %s on %s", self.opts.model_id_or_path, self.task,
                     self.opts.device_map or self.opts.device)

    def _architectures(self):
        local = read_local_architectures(self.opts.model_id_or_path)
        if local is not None:
            return local
        transformers = _require("transformers")
        config = transformers.AutoConfig.from_pretrained(self.opts.model_id_or_path, revision=self.opts.revision,
                                                         trust_remote_code=self.opts.trust_remote_code)
        return config.architectures or []

    def _load_pipeline(self, torch):
        transformers = _require("transformers")
        o = self.opts
        model_kwargs = {"low_cpu_mem_usage": o.low_cpu_mem_usage}
        if o.dtype:
            # transformers 4.56 renamed torch_dtype to dtype; 5.x may drop the old name.
            key = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
            model_kwargs[key] = "auto" if o.dtype == "auto" else getattr(torch, o.dtype)
        if o.quantize_bits:
            model_kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_8bit=o.quantize_bits == 8, load_in_4bit=o.quantize_bits == 4)
        kwargs = {"task": self.task, "model": o.model_id_or_path, "revision": o.revision,
                  "trust_remote_code": o.trust_remote_code, "model_kwargs": model_kwargs}
        if o.device_map:
            kwargs["device_map"] = o.device_map
        else:
            kwargs["device"] = o.device
        pipe = transformers.pipeline(**kwargs)
        tokenizer = getattr(pipe, "tokenizer", None)
        if self.task == "text-generation" and tokenizer is not None:
            # Batched prompts need a pad token, and decoder-only models need padding on the left.
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
        return pipe

    def inference(self, inputs: Input) -> Output:
        batch = inputs.get_batches()
        flat, sizes, parameters = parse_batch(batch)
        if self.opts.enable_streaming != "false":
            if len(batch) > 1:
                raise ValueError("We cannot enable streaming for dynamic batching")
            return self._stream(flat, parameters)
        if len(flat) > 1:
            parameters = {"batch_size": len(flat), **parameters}
        predictions = normalize_predictions(self.task, self.pipeline(flat, **parameters), len(flat))
        out = Output()
        for i, (item, result) in enumerate(zip(batch, split_results(predictions, sizes))):
            encode(out, result, reply_content_type(item), key="data" if inputs.is_batch() else None,
                   batch_index=i if inputs.is_batch() else None)
        return out

    def _stream(self, prompts: list, parameters: dict) -> Output:
        model, tokenizer = self.pipeline.model, self.pipeline.tokenizer
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("streaming generation needs string inputs")
        parameters = {"max_new_tokens": StreamingUtils.DEFAULT_MAX_NEW_TOKENS, **parameters}
        sampling_settings(parameters)  # reject bad values before the reply starts
        out = Output().add_property("content-type", "application/jsonlines")
        if self.opts.enable_streaming == "huggingface":
            # Checked here, not in the generator, so the client gets a 424 instead of a broken stream.
            if len(prompts) != 1:
                raise ValueError("enable_streaming=huggingface streams one prompt at a time; send a single input")
            enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
            return out.add_stream_content(self._hf_streamer(enc, parameters), output_formatter=jsonlines_formatter)
        texts = StreamingUtils._hf_model_stream_generator(model, tokenizer, prompts, model.device, **parameters)
        return out.add_stream_content(({"outputs": t} for t in texts), output_formatter=jsonlines_formatter)

    def _hf_streamer(self, enc, parameters: dict):
        transformers = _require("transformers")
        streamer = transformers.TextIteratorStreamer(self.pipeline.tokenizer, skip_special_tokens=True)
        failure = []

        def run():
            try:
                self.pipeline.model.generate(**enc, streamer=streamer, **parameters)
            except Exception as e:  # noqa: BLE001 — surfaced to the client as the stream's last chunk
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        for text in streamer:
            yield {"outputs": [text]}
        thread.join()
        if failure:
            raise failure[0]


_service = HuggingFaceService()


def handle(inputs: Input):
    if not _service.initialized:
        _service.initialize(inputs.get_properties())
    if inputs.is_empty():
        return None
    return _service.inference(inputs)
