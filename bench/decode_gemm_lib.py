# Builds and calls the candidate decode GEMM (bench/cuda/decode_gemm.cu: TMA loads, the activation tile multicast
# across a cluster, warp-specialized wgmma, a persistent stream-K schedule) for bench/gpu-decode-gemm.py. It is not
# used by the executor: measured against cuBLASLt it is slower so far (docs/benchmarks.md, twenty-second session).
# nvcc builds it once per source, compiler and flags into LMI_KERNEL_CACHE (default ~/.cache/lmi-serving/kernels);
# it is called through ctypes on torch's current stream, so CUDA graphs capture it. y[256, N] = x[256, K] @ W[N, K].T,
# bf16; it serves an sm_90 device, exactly 256 rows, N a multiple of 256 (128 a CTA, 2 CTAs a cluster), K of 64.
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

import torch

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda", "decode_gemm.cu")
NVCC_FLAGS = ["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-shared", "-Xcompiler", "-fPIC"]


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


class DecodeGemm:
    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        self.fn = self.lib.lmi_decode_gemm
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 3 + [ctypes.c_void_p, ctypes.c_longlong,
                                                                         ctypes.c_void_p]
        self.lib.lmi_decode_gemm_workspace_bytes.restype = ctypes.c_longlong
        self.rows = int(self.lib.lmi_decode_gemm_rows())
        self.n_multiple = int(self.lib.lmi_decode_gemm_n_multiple())
        self.k_multiple = int(self.lib.lmi_decode_gemm_k_multiple())
        self.workspaces = {}  # device index -> zero-filled bytes (the kernel's stream-K flags and partials)
        self.calls = 0

    def workspace(self, device: torch.device) -> torch.Tensor:
        """The device's workspace, made on first use. Launches that share it must be stream-ordered: the executor
        runs every projection of a step on one stream."""
        ws = self.workspaces.get(device.index)
        if ws is None:
            with torch.cuda.device(device):
                size = int(self.lib.lmi_decode_gemm_workspace_bytes())
            if size <= 0:
                raise RuntimeError("decode GEMM: the kernel cannot run on this device (no resident cluster)")
            ws = self.workspaces[device.index] = torch.zeros(size, dtype=torch.uint8, device=device)
        return ws

    def serves(self, x: torch.Tensor, w: torch.Tensor) -> bool:
        if x.dim() != 2 or w.dim() != 2 or x.dtype != torch.bfloat16 or w.dtype != torch.bfloat16:
            return False
        if not (x.is_cuda and x.is_contiguous() and w.is_contiguous()) or x.shape[1] != w.shape[1]:
            return False
        (m, k), n = x.shape, w.shape[0]
        return (m == self.rows and n % self.n_multiple == 0 and k % self.k_multiple == 0
                and x.data_ptr() % 16 == 0 and w.data_ptr() % 16 == 0)

    def linear(self, x: torch.Tensor, w: torch.Tensor):
        """x @ w.T, or None when this call is not one the kernel serves."""
        if not self.serves(x, w):
            return None
        (m, k), n = x.shape, w.shape[0]
        ws = self.workspace(x.device)
        y = torch.empty((m, n), dtype=x.dtype, device=x.device)
        rc = self.fn(x.data_ptr(), w.data_ptr(), y.data_ptr(), m, n, k, ws.data_ptr(), ws.numel(),
                     ctypes.c_void_p(torch.cuda.current_stream(x.device).cuda_stream))
        if rc == -1:
            return None
        if rc != 0:
            raise RuntimeError(f"decode GEMM ({m} x {n} x {k}) failed to launch: CUDA error {rc}")
        self.calls += 1
        return y


_STATE = {"loaded": False, "gemm": None, "why": "not used"}
_LOCK = threading.Lock()


def get():
    """The process's DecodeGemm, or None (off, no sm_90 device, no nvcc, or the build failed); why in status()."""
    with _LOCK:
        if _STATE["loaded"]:
            return _STATE["gemm"]
        _STATE["loaded"] = True
        if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
            _STATE["why"] = "needs an sm_90 (Hopper) device"
            return None
        nvcc = nvcc_path()
        if nvcc is None:
            _STATE["why"] = "nvcc not found (CUDA_HOME, /usr/local/cuda, PATH)"
            return None
        try:
            gemm = DecodeGemm(build(nvcc, cache_dir()))
            gemm.workspace(torch.device("cuda", torch.cuda.current_device()))  # before any CUDA-graph capture
            _STATE["gemm"] = gemm
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            _STATE["why"] = f"build failed: {e}"
            return None
        _STATE["why"] = f"on: {_STATE['gemm'].rows} rows, built with {nvcc}"
        return _STATE["gemm"]


def status() -> str:
    return _STATE["why"]
