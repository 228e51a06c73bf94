# Old name of bench/gpu-quant-accuracy.py (same arguments, now with int4 next to int8).
import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu-quant-accuracy.py"), run_name="__main__")
