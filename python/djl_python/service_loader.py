"""Finds and loads a handler entry point (spec §5.4) and calls its functions.

An absolute path is imported as a file; `X.py` is imported from the model dir; anything else is a
module name (e.g. `djl_python.huggingface`). Import errors (a SyntaxError in model.py included) are
raised with the file and line so the server can print a clear startup failure.
"""

import importlib
import importlib.util
import inspect
import os
import sys


class EntryPointError(RuntimeError):
    """The entry point could not be found or imported."""


def _load_file(path: str, module_name: str):
    if not os.path.isfile(path):
        raise EntryPointError(f"entry point file not found: {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise EntryPointError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[module_name]
        raise EntryPointError(f"syntax error in {e.filename}, line {e.lineno}: {e.msg}") from e
    except Exception:
        del sys.modules[module_name]
        raise
    return module


def load_module(entry_point: str, model_dir: str):
    entry_point = (entry_point or "").strip() or "model.py"
    if os.path.isabs(entry_point):
        name = os.path.splitext(os.path.basename(entry_point))[0]
        return _load_file(entry_point, name)
    if entry_point.endswith(".py"):
        return _load_file(os.path.join(model_dir, entry_point), entry_point[:-3].replace(os.sep, "."))
    try:
        return importlib.import_module(entry_point)
    except SyntaxError as e:
        raise EntryPointError(f"syntax error in {e.filename}, line {e.lineno}: {e.msg}") from e
    except ModuleNotFoundError as e:
        if e.name and entry_point.startswith(e.name):
            raise EntryPointError(f"entry point module '{entry_point}' not found on the Python path") from e
        raise


# Old DJL handlers import the runtime's modules by bare name (`from outputs import Output`), because
# DJL put the djl_python folder itself on sys.path. Aliasing keeps them one class with djl_python's.
LEGACY_MODULE_NAMES = ("inputs", "outputs", "pair_list", "np_util", "encode_decode", "streaming_utils")


def install_legacy_aliases(model_dir: str):
    """Makes `import inputs` etc. resolve to djl_python's modules, unless the model dir has its own."""
    for name in LEGACY_MODULE_NAMES:
        if name in sys.modules or os.path.exists(os.path.join(model_dir, name + ".py")):
            continue
        sys.modules[name] = importlib.import_module(f"djl_python.{name}")


class ModelService:
    """A loaded entry-point module; invoke_handler calls one of its functions by name."""

    def __init__(self, module, entry_point: str):
        self.module = module
        self.entry_point = entry_point

    def has_function(self, name: str) -> bool:
        return callable(getattr(self.module, name, None))

    def invoke_handler(self, function_name: str, inputs):
        fn = getattr(self.module, function_name, None)
        if not callable(fn):
            raise AttributeError(f"entry point '{self.entry_point}' has no function '{function_name}'")
        result = fn(inputs)
        if inspect.isawaitable(result):
            result = _event_loop().run_until_complete(result)
        return result


_LOOP = None


def _event_loop():
    """One loop for the worker's life, so async handlers may keep loop-bound state between calls."""
    global _LOOP
    if _LOOP is None:
        import asyncio

        _LOOP = asyncio.new_event_loop()
    return _LOOP


def load_model_service(entry_point: str, model_dir: str) -> ModelService:
    return ModelService(load_module(entry_point, model_dir), entry_point or "model.py")
