# Our Hopper GEMM (kernels/cuda/decode_gemm.cu), used for one thing: the gate/up projection with SiLU-and-mul in its
# epilogue, act[T, I] = silu(x @ gate.T) * (x @ up.T), in place of the GEMM and the separate silu_and_mul pass, for
# the step sizes where it measured faster (fuses_rows: row counts that are whole 256-token blocks, the decode bucket's
# 256 and full prompt steps among them; docs/gpu-executor.md, "The fused gate/up kernel"). linear() is the same
# kernel without the SiLU, for benchmarks (it only matches cuBLASLt, so the executor does not use it).
#
# Built with nvcc on first use, once per source, compiler and flags, into LMI_KERNEL_CACHE (default
# ~/.cache/lmi-serving/kernels), keyed by their hash so a second process (or rank) loads it at once; called through
# ctypes on torch's current stream, so CUDA graphs capture it. It serves what it was written for: an sm_90 device,
# bf16, 2-D contiguous operands, K a multiple of 64, 2I a multiple of the tile (224 rows: 112 features), 16-byte
# aligned pointers, any row count (the kernel works in 256-token blocks and zero-fills the last one past the end);
# anything else returns None and the caller takes the unfused path. No nvcc, no sm_90 device or a failed build:
# get() is None and status() says why. LMI_DECODE_GEMM=0 turns it off.
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import torch

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda", "decode_gemm.cu")
NVCC_FLAGS = ["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-shared", "-Xcompiler", "-fPIC"]
K_MULTIPLE = 64
TILE_ROWS = (64, 96, 112)  # weight rows a tile of linear(); N must be a multiple of the one asked for
SWIGLU_TILE = 224  # weight rows a tile of swiglu() in the executor: 112 gate rows and their 112 up rows
# Step sizes where the fused gate/up + SiLU beats the GEMM + silu_and_mul it replaces at Llama-3-8B's shape: every
# multiple of the kernel's 256-token block measured, 256 to 8,192 rows, both in short interleaved rounds and replayed
# at the card's 700 W power limit, where prompt steps run (bench/gpu-decode-gemm.py --swiglu --rows R --secs 0.5,
# H100, us, fused against unfused at the limit): 256 106.8 / 122.0 (the shipped cuBLASLt entry + silu_and_mul 116.1),
# 512 193.8 / 200.5, 1,024 369.0 / 384.8, 2,048 729.4 / 779.3, 3,072 1,120.7 / 1,146.2, 4,096 1,506.4 / 1,536.6,
# 5,120 1,766.3 / 1,948.1, 6,144 2,116.3 / 2,233.5, 8,192 2,917.9 / 3,057.6. Other row counts pay for the zero-filled
# rest of their last block, which costs more than the fusion saves: 1,100 450.2 / 436.6, 2,100 835.5 / 783.3, 3,000
# 1,122.8 / 1,096.1, 4,200 1,554.3 / 1,553.1, 6,700 2,469.1 / 2,377.4 (600 won, 266.4 / 309.4: cuBLAS is slow there
# too; not taken). Decode buckets below 256 rows keep their tuned cuBLASLt entries.
FUSED_ROW_MULTIPLE = 256


def fuses_rows(rows: int) -> bool:
    return rows > 0 and rows % FUSED_ROW_MULTIPLE == 0


def nvcc_path():
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc")


def cache_dir() -> str:
    return os.environ.get("LMI_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lmi-serving",
                                                                "kernels")


def build(nvcc: str, out_dir: str, defines=()) -> str:
    """The shared library's path, compiling SOURCE unless a build of the same source, compiler and flags is there.
    defines: extra -D flags (a benchmark's variants; the executor passes none)."""
    flags = NVCC_FLAGS + [f"-D{d}" for d in defines]
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    with open(SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + version.encode() + " ".join(flags).encode()).hexdigest()[:16]
    path = os.path.join(out_dir, f"decode_gemm-{key}.so")
    if os.path.isfile(path):
        return path
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)  # renamed into place: concurrent ranks never see half a file
    os.close(fd)
    try:
        r = subprocess.run([nvcc, *flags, "-o", tmp, SOURCE], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def shape_ok(x: torch.Tensor, w: torch.Tensor) -> bool:
    """The operand checks both entry points share (the CUDA side checks the shape again and returns -1)."""
    if x.dim() != 2 or w.dim() != 2 or x.dtype != torch.bfloat16 or w.dtype != torch.bfloat16:
        return False
    if not (x.is_cuda and x.is_contiguous() and w.is_contiguous()) or x.shape[1] != w.shape[1]:
        return False
    return x.shape[0] > 0 and x.shape[1] % K_MULTIPLE == 0 and x.data_ptr() % 16 == 0 and w.data_ptr() % 16 == 0


class DecodeGemm:
    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        self.fn = self.lib.lmi_decode_gemm
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 5 + [ctypes.c_void_p]
        self.calls = 0

    def _run(self, x, w, n_out, tile_rows, swiglu):
        y = torch.empty((x.shape[0], n_out), dtype=x.dtype, device=x.device)
        rc = self.fn(x.data_ptr(), w.data_ptr(), y.data_ptr(), x.shape[0], w.shape[0], x.shape[1], tile_rows,
                     int(swiglu), ctypes.c_void_p(torch.cuda.current_stream(x.device).cuda_stream))
        if rc == -1:
            return None
        if rc != 0:
            raise RuntimeError(f"decode GEMM ({x.shape[0]} x {w.shape[0]} x {x.shape[1]}) failed to launch: "
                               f"CUDA error {rc}")
        self.calls += 1
        return y

    def swiglu(self, x: torch.Tensor, w: torch.Tensor, tile_rows: int = SWIGLU_TILE):
        """silu(x @ gate.T) * (x @ up.T) for w = [gate; up], rounded as kernels/fused.py's silu_and_mul of the
        unfused product rounds (gate and up to the dtype, then SiLU, then the product); tile_rows 112 or 224 (56 or
        112 features a tile); None where it does not serve."""
        if not shape_ok(x, w) or tile_rows not in (112, 224) or w.shape[0] % tile_rows != 0:
            return None
        return self._run(x, w, w.shape[0] // 2, tile_rows, True)

    def linear(self, x: torch.Tensor, w: torch.Tensor, tile_rows: int = 112):
        """x @ w.T with tile_rows (TILE_ROWS) weight rows a tile; None where it does not serve."""
        if not shape_ok(x, w) or tile_rows not in TILE_ROWS or w.shape[0] % tile_rows != 0:
            return None
        return self._run(x, w, w.shape[0], tile_rows, False)


_STATE = {"loaded": False, "gemm": None, "why": "not used"}
ACTIVE = True  # benchmarks flip this to time the unfused path in the same process


def get():
    """The process's DecodeGemm, or None (off, inactive, no sm_90 device, no nvcc, or the build failed); why in
    status(). The worker calls it once at start-up (kernels are built before the memory profile), so later calls
    from the forward only read the state."""
    if not ACTIVE:
        return None
    if _STATE["loaded"]:
        return _STATE["gemm"]
    _STATE["loaded"] = True
    if os.environ.get("LMI_DECODE_GEMM", "1") == "0":
        _STATE["why"] = "off (LMI_DECODE_GEMM=0)"
        return None
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        _STATE["why"] = "needs an sm_90 (Hopper) device"
        return None
    nvcc = nvcc_path()
    if nvcc is None:
        _STATE["why"] = "nvcc not found (CUDA_HOME, /usr/local/cuda, PATH)"
        return None
    try:
        _STATE["gemm"] = DecodeGemm(build(nvcc, cache_dir()))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        _STATE["why"] = f"build failed: {e}"
        return None
    _STATE["why"] = f"on (built with {nvcc})"
    return _STATE["gemm"]


def status() -> str:
    return _STATE["why"]
