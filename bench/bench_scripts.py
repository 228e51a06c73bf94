# Bench scripts whose file names carry hyphens (gpu-executor-bench.py, ...) cannot be imported by name: load_script
# loads a sibling one as a module, load_file any Python file by path (e.g. an older copy of a kernel module).
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load_file(path: str, name: str):
    """The module `name` executed from `path` (not entered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script(file_name: str):
    """bench/<file_name> as a module named after it ('-' -> '_')."""
    return load_file(os.path.join(HERE, file_name), os.path.splitext(file_name)[0].replace("-", "_"))
