"""Options of the built-in huggingface handler, parsed from the init request (standard library only).

Owns: task inference from config.json architectures, dtype names, device choice, bitsandbytes
quantization options (load_in_8bit/4bit, quantize=bitsandbytes*) and enable_streaming. Every bad
value raises ValueError naming the option, so a wrong serving.properties fails at load, clearly.
"""

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field

# Architecture suffix -> pipeline task, most specific first (DJL's ARCHITECTURES_2_TASK, plus bare
# `*Model` -> feature-extraction for encoder checkpoints such as sentence embedders).
ARCHITECTURE_SUFFIX_TO_TASK = (
    ("TapasForQuestionAnswering", "table-question-answering"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForTokenClassification", "token-classification"),
    ("ForSequenceClassification", "text-classification"),
    ("ForMultipleChoice", "multiple-choice"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("MTModel", "text2text-generation"),
    ("EncoderDecoderModel", "text2text-generation"),
    ("BloomModel", "text-generation"),
    ("Model", "feature-extraction"),
)

SUPPORTED_TASKS = ("text-generation", "text2text-generation", "fill-mask", "text-classification",
                   "token-classification", "question-answering", "feature-extraction")

# serving.properties dtype spelling -> torch attribute name ("auto" lets transformers pick).
DTYPES = {"fp16": "float16", "float16": "float16", "fp32": "float32", "float32": "float32",
          "bf16": "bfloat16", "bfloat16": "bfloat16", "auto": "auto"}

BITSANDBYTES_MODES = {"bitsandbytes": 8, "bitsandbytes8": 8, "bitsandbytes4": 4}


def _bool(props: dict, key: str, default: bool) -> bool:
    raw = props.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    value = str(raw).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"option.{key} must be true or false, got '{raw}'")


def infer_task(architectures) -> str:
    for arch in architectures or []:
        for suffix, task in ARCHITECTURE_SUFFIX_TO_TASK:
            if arch.endswith(suffix):
                return task
    raise ValueError(f"Task couldn't be inferred from the architectures {list(architectures or [])}; "
                     "set option.task (e.g. text-generation)")


def read_local_architectures(model_path: str):
    """Architectures from <model_path>/config.json, or None when the model is not a local dir."""
    config = os.path.join(model_path, "config.json")
    if not os.path.isfile(config):
        return None
    with open(config, encoding="utf-8") as f:
        return json.load(f).get("architectures") or []


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


@dataclass
class HfOptions:
    model_id_or_path: str
    task: str = ""
    dtype: str = ""  # torch attribute name or "auto"; "" = the checkpoint's default
    device: object = None  # "cuda:N", "cpu", or None when device_map places the model
    device_map: object = None
    trust_remote_code: bool = False
    revision: object = None
    low_cpu_mem_usage: bool = False
    quantize_bits: int = 0  # 0, 4 or 8 (bitsandbytes)
    enable_streaming: str = "false"  # false | true | huggingface
    tensor_parallel_degree: int = 1
    model_kwargs: dict = field(default_factory=dict)


def parse_options(props: dict, cuda_available: bool, bnb_available=None) -> HfOptions:
    """init-request properties -> HfOptions. `bnb_available` is injectable for tests."""
    model_id = props.get("model_id") or props.get("s3url") or props.get("model_dir")
    if not model_id:
        raise ValueError("option.model_id is required (or a model directory with config.json)")
    opts = HfOptions(model_id_or_path=model_id)
    opts.task = (props.get("task") or "").strip()
    if opts.task and opts.task not in SUPPORTED_TASKS:
        raise ValueError(f"option.task={opts.task} is not supported; supported: {', '.join(SUPPORTED_TASKS)}")

    dtype = (props.get("dtype") or props.get("data_type") or "").strip().lower()
    quantize = (props.get("quantize") or "").strip().lower()
    if dtype == "int8":
        quantize = quantize or "bitsandbytes8"
        dtype = ""
    if dtype and dtype not in DTYPES:
        raise ValueError(f"Invalid data type: {dtype}. option.dtype must be one of {', '.join(DTYPES)}, int8")
    opts.dtype = DTYPES.get(dtype, "")

    if _bool(props, "load_in_8bit", False):
        quantize = quantize or "bitsandbytes8"
    if _bool(props, "load_in_4bit", False):
        quantize = quantize or "bitsandbytes4"
    if quantize:
        if quantize not in BITSANDBYTES_MODES:
            raise ValueError(f"option.quantize={quantize} is not supported by the huggingface handler "
                             f"(supported: {', '.join(BITSANDBYTES_MODES)})")
        has_bnb = bitsandbytes_available() if bnb_available is None else bnb_available
        if not has_bnb:
            raise ValueError(f"option.quantize={quantize} (or load_in_8bit/load_in_4bit) needs the bitsandbytes "
                             f"package, which is not installed for {sys.executable}; install it "
                             "(pip install bitsandbytes) or remove the quantization option")
        opts.quantize_bits = BITSANDBYTES_MODES[quantize]

    env_trust = os.environ.get("HF_TRUST_REMOTE_CODE", "").strip().lower() == "true"  # classic DJL env
    opts.trust_remote_code = _bool(props, "trust_remote_code", env_trust)
    opts.revision = props.get("revision") or None
    opts.low_cpu_mem_usage = _bool(props, "low_cpu_mem_usage", False)
    streaming = (props.get("enable_streaming") or "false").strip().lower()
    if streaming not in ("false", "true", "huggingface"):
        raise ValueError(f"option.enable_streaming must be false, true or huggingface, got '{streaming}'")
    opts.enable_streaming = streaming

    tp_raw = (props.get("tensor_parallel_degree") or "1").strip()
    try:
        opts.tensor_parallel_degree = -1 if tp_raw == "max" else int(tp_raw)
    except ValueError:
        raise ValueError(f"option.tensor_parallel_degree must be an integer or max, got '{tp_raw}'") from None

    device_map = (props.get("device_map") or "").strip()
    device_id = int(props.get("device_id") or "-1")
    if device_map:
        opts.device_map = device_map
    elif opts.quantize_bits or (cuda_available and opts.tensor_parallel_degree != 1):
        # bitsandbytes needs a device_map; TP > 1 (or max) spreads layers over the visible GPUs.
        opts.device_map = "auto"
    elif cuda_available:
        # The server remaps the assigned GPU to 0 via CUDA_VISIBLE_DEVICES; -1 means "unassigned".
        opts.device = f"cuda:{max(device_id, 0)}"
    else:
        opts.device = "cpu"
    return opts


def resolve_task(opts: HfOptions, load_architectures) -> str:
    """opts.task, else inferred from the architectures that `load_architectures()` returns."""
    if opts.task:
        return opts.task
    task = infer_task(load_architectures())
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"the inferred task {task} is not supported; set option.task")
    return task
