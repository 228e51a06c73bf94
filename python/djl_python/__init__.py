"""djl_python-compatible handler runtime: `from djl_python import Input, Output` works unchanged.

Only the core (wire protocol, Input/Output, handler loading, the worker loop) lives here and uses
the standard library alone; built-in handlers such as djl_python.huggingface import their heavy
dependencies lazily, when a model is loaded.
"""

from .inputs import Input
from .outputs import Output
from . import wire
from .pair_list import PairList

__all__ = ["Input", "Output", "PairList", "wire"]
