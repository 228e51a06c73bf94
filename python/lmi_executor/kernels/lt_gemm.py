# Dense projections through cuBLASLt with algorithms chosen by measurement on the card, instead of the one kernel
# cuBLAS's heuristic hands torch (F.linear). y[M, N] = x[M, K] @ W[N, K].T, bf16/fp16 in and out, fp32 accumulation.
#
# cuBLASLt exposes every configuration of its kernels (tile, stages, split-K, swizzle, custom option, cluster shape);
# its heuristic ranks them by a model, and on the H100 the first answer is not the fastest for the decode-batch and
# prefill shapes of an 8B model (bench/gpu-cublaslt-algos.py enumerates and times them; docs/benchmarks.md).
# A tuning table records, per (N, K, dtype) and row count M, the configuration that beat F.linear in interleaved
# timings, as the 64 opaque bytes of cublasLtMatmulAlgo_t. A table applies only on the device name and cuBLASLt
# version it was measured with, and an entry only at its own row count: a configuration tuned for 256 rows ran up to
# 55% slower than F.linear at 136-224 (bench/gpu-cublaslt-algos.py --check-table), so row counts are matched exactly,
# which suits the CUDA-graph decode buckets (a step's rows are padded to its bucket). Each (N, K, M) served is first
# checked with cublasLtMatmulAlgoCheck; anything the table does not cover, or the check refuses, goes to F.linear.
# Tables: kernels/lt_tables/*.json (shipped), or the file LMI_CUBLASLT_TABLE names; LMI_CUBLASLT=0 turns this off.
# Invariants: only bias-free, 2-D contiguous operands whose pointers are 256-byte aligned take this path; the split-K
# configurations kept reduce through the workspace (no in-place atomics), so a result never depends on timing.
import ctypes
import glob
import json
import os
import sys
import threading

import torch

TABLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lt_tables")
ALIGN = 256
WORKSPACE_BYTES = 32 << 20
DTYPES = {torch.bfloat16: ("bf16", 14), torch.float16: ("fp16", 2)}  # name, cudaDataType
CUBLAS_COMPUTE_32F, CUDA_R_32F = 68, 0
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
DESC_TRANSA, DESC_TRANSB = 3, 4




class Table:
    """Tuned entries for one (device name, cuBLASLt version): {(n, k, dtype): {m: algo bytes}}."""

    def __init__(self, doc: dict, source: str = ""):
        for key in ("device", "cublaslt", "entries"):
            if key not in doc:
                raise ValueError(f"cuBLASLt table {source}: missing {key!r}")
        self.device, self.version, self.source = doc["device"], int(doc["cublaslt"]), source
        self.entries = {}
        for e in doc["entries"]:
            algo = bytes.fromhex(e["algo"])
            if len(algo) != 64:
                raise ValueError(f"cuBLASLt table {source}: algo of n={e['n']} k={e['k']} m={e['m']} is "
                                 f"{len(algo)} bytes, expected 64")
            self.entries.setdefault((int(e["n"]), int(e["k"]), e["dtype"]), {})[int(e["m"])] = algo

    def lookup(self, n: int, k: int, dtype: str, rows: int):
        """The configuration tuned for exactly this row count, or None."""
        return self.entries.get((n, k, dtype), {}).get(rows)


def load_tables(paths) -> list:
    out = []
    for p in paths:
        with open(p) as f:
            out.append(Table(json.load(f), p))
    return out


def table_for(tables, device: str, version: int):
    for t in tables:
        if t.device == device and t.version == version:
            return t
    return None


def table_paths() -> list:
    env = os.environ.get("LMI_CUBLASLT_TABLE")
    if env:
        return [env]
    return sorted(glob.glob(os.path.join(TABLE_DIR, "*.json")))


def load_library():
    """libcublasLt as torch loaded it (by soname), else from the nvidia wheels on sys.path; None if absent."""
    for name in ("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    for d in sys.path:
        for p in sorted(glob.glob(os.path.join(d, "nvidia", "**", "libcublasLt.so*"), recursive=True)):
            try:
                return ctypes.CDLL(p)
            except OSError:
                pass
    return None


class Algo(ctypes.Structure):
    """cublasLtMatmulAlgo_t: 64 opaque bytes (uint64_t data[8])."""
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class HeuristicResult(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t."""
    _fields_ = [("algo", Algo), ("workspaceSize", ctypes.c_size_t), ("state", ctypes.c_int),
                ("wavesCount", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


def check(status, what):
    if status != 0:
        raise RuntimeError(f"cublasLt {what}: status {status}")


class TnGemm:
    """The descriptors of one TN GEMM y[M, N] = x[M, K] @ W[N, K].T in cuBLASLt's column-major terms: D (N x M, ld N)
    = op(A) B with A = W (K x N, ld K, transposed) and B = x^T (K x M, ld K)."""

    def __init__(self, lib, M, N, K, cuda_type):
        self.lib = lib
        self.desc = ctypes.c_void_p()
        check(lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc")
        t, n = ctypes.c_int(CUBLAS_OP_T), ctypes.c_int(CUBLAS_OP_N)
        check(lib.cublasLtMatmulDescSetAttribute(self.desc, DESC_TRANSA, ctypes.byref(t), ctypes.c_size_t(4)), "ta")
        check(lib.cublasLtMatmulDescSetAttribute(self.desc, DESC_TRANSB, ctypes.byref(n), ctypes.c_size_t(4)), "tb")
        self.a, self.b, self.d = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        for lay, rows, cols, ld in ((self.a, K, N, K), (self.b, K, M, K), (self.d, N, M, N)):
            check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(lay), cuda_type, ctypes.c_uint64(rows),
                                                 ctypes.c_uint64(cols), ctypes.c_int64(ld)), "layout")
        self.alpha, self.beta, self.one = ctypes.c_float(1.0), ctypes.c_float(0.0), ctypes.c_float(1.0)

    def run(self, handle, algo, w, x, y, workspace, workspace_bytes, accumulate: bool = False):
        """y = x @ w.T with `algo` on torch's current stream (captured when a CUDA graph is); accumulate: y += x @ w.T
        in place (beta = 1; bench/gpu-gemm-sustained.py --accumulate times that form)."""
        beta = self.one if accumulate else self.beta
        check(self.lib.cublasLtMatmul(
            handle, self.desc, ctypes.byref(self.alpha), ctypes.c_void_p(w.data_ptr()), self.a,
            ctypes.c_void_p(x.data_ptr()), self.b, ctypes.byref(beta), ctypes.c_void_p(y.data_ptr()), self.d,
            ctypes.c_void_p(y.data_ptr()), self.d, ctypes.byref(algo), ctypes.c_void_p(workspace.data_ptr()),
            ctypes.c_size_t(workspace_bytes), ctypes.c_void_p(torch.cuda.current_stream(x.device).cuda_stream)),
            "matmul")


class _Plan(TnGemm):
    """A TnGemm and the table's algorithm for it, checked with cublasLtMatmulAlgoCheck."""

    def __init__(self, lib, handle, M, N, K, cuda_type, algo_bytes):
        super().__init__(lib, M, N, K, cuda_type)
        self.algo = Algo()
        ctypes.memmove(ctypes.byref(self.algo), algo_bytes, 64)
        res = HeuristicResult()
        ok = lib.cublasLtMatmulAlgoCheck(handle, self.desc, self.a, self.b, self.d, self.d, ctypes.byref(self.algo),
                                         ctypes.byref(res)) == 0
        self.ok = ok and res.workspaceSize <= WORKSPACE_BYTES
        self.workspace = res.workspaceSize


class LtGemm:
    """The process's cuBLASLt path: one handle and workspace per device, a plan per (N, K, M, dtype) served."""

    def __init__(self, lib, table: Table):
        self.lib, self.table = lib, table
        self._handles, self._workspaces, self._plans = {}, {}, {}
        self._lock = threading.Lock()
        self.calls = 0  # GEMMs issued through cuBLASLt (tests and logs read it)
        self._device_state(torch.cuda.current_device())  # handle + workspace outside any graph capture

    def _device_state(self, dev: int):
        h = self._handles.get(dev)
        if h is None:
            if torch.cuda.is_current_stream_capturing():
                return None, None  # no allocation inside a capture: the caller falls back to F.linear
            h = ctypes.c_void_p()
            with torch.cuda.device(dev):
                check(self.lib.cublasLtCreate(ctypes.byref(h)), "create")
                self._workspaces[dev] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=f"cuda:{dev}")
            self._handles[dev] = h
        return h, self._workspaces[dev]

    def plan(self, dev, M, N, K, dtype):
        key = (dev, M, N, K, dtype)
        p = self._plans.get(key)
        if p is None:
            name, cuda_type = DTYPES[dtype]
            algo = self.table.lookup(N, K, name, M)
            if algo is None:
                p = False
            else:
                with self._lock:
                    handle, _ = self._device_state(dev)
                    if handle is None:
                        return False
                    p = _Plan(self.lib, handle, M, N, K, cuda_type, algo)
                    p = p if p.ok else False
            self._plans[key] = p
        return p

    def linear(self, x: torch.Tensor, w: torch.Tensor):
        """x @ w.T through the tuned algorithm, or None when this call is not one the table serves."""
        if x.dim() != 2 or w.dim() != 2 or x.dtype not in DTYPES or w.dtype != x.dtype or not x.is_cuda:
            return None
        if not (x.is_contiguous() and w.is_contiguous()):
            return None
        if x.data_ptr() % ALIGN or w.data_ptr() % ALIGN:
            return None
        M, K = x.shape
        N = w.shape[0]
        p = self.plan(x.device.index, M, N, K, x.dtype)
        if not p:
            return None
        y = torch.empty((M, N), dtype=x.dtype, device=x.device)
        if y.data_ptr() % ALIGN:
            return None
        handle, ws = self._device_state(x.device.index)
        p.run(handle, p.algo, w, x, y, ws, p.workspace)
        self.calls += 1
        return y


_STATE = {"loaded": False, "gemm": None, "why": "not used"}


def get():
    """The process's LtGemm, or None (no CUDA, LMI_CUBLASLT=0, no library, or no table for this card); the reason
    is in status()."""
    if _STATE["loaded"]:
        return _STATE["gemm"]
    _STATE["loaded"] = True
    if os.environ.get("LMI_CUBLASLT", "1") == "0":
        _STATE["why"] = "off (LMI_CUBLASLT=0)"
        return None
    if not torch.cuda.is_available():
        _STATE["why"] = "no CUDA device"
        return None
    lib = load_library()
    if lib is None:
        _STATE["why"] = "libcublasLt not found"
        return None
    lib.cublasLtGetVersion.restype = ctypes.c_size_t
    version, device = int(lib.cublasLtGetVersion()), torch.cuda.get_device_name()
    table = table_for(load_tables(table_paths()), device, version)
    if table is None:
        _STATE["why"] = f"no tuning table for {device!r} with cuBLASLt {version}"
        return None
    _STATE["gemm"] = LtGemm(lib, table)
    _STATE["why"] = f"on: {table.source} ({sum(len(v) for v in table.entries.values())} entries)"
    return _STATE["gemm"]


def status() -> str:
    return _STATE["why"]
