# The executor on one rank: loads the model, sizes and allocates the paged KV cache, captures decode and
# single-sequence prefill CUDA graphs, and executes steps. Every rank runs the same calls in the same order
# (rank 0 relays Node's messages), so collectives inside the model always pair up.
import os
import sys
import time

import torch

from . import PROTOCOL_VERSION
from .attention import Attention
from .config import ExecutorOptions, load_model_config
from . import contrastive
from .models.gpt import GPTModel
from .models.llama import LlamaModel
from .parallel import TensorParallel
from .reshard import iter_weights
from .runner import EXECUTOR_BLOCKS, RING_STEPS, ModelRunner

_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "float32": torch.float32}


def resolve_dtype(option: str, config_dtype: str, device: torch.device):
    if option in ("int8", "int4"):  # weight-only int8/int4: activations in bf16 on the GPU, fp32 on the CPU
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if option in ("auto", ""):
        # The checkpoint's own dtype on the GPU; fp32 on the CPU, where half precision is slow or missing.
        return _DTYPES.get(config_dtype, torch.float32) if device.type == "cuda" else torch.float32
    if option not in _DTYPES:
        raise ValueError(f"option.dtype={option!r} is not supported by the GPU executor (fp16, bf16, fp32, int8, int4)")
    return _DTYPES[option]


_FP8 = ("fp8", "fp8_e4m3")


def resolve_kv_dtype(option: str, model_dtype, device: torch.device):
    """The KV cache's element type: the model's dtype (auto), another float type, or fp8 e4m3 (CUDA only: the
    Triton kernels round K/V to it when they write the cache and widen it again when attention reads it)."""
    if option in ("auto", ""):
        return model_dtype
    if option in _FP8:
        if device.type != "cuda":
            raise ValueError(f"option.kv_cache_dtype={option} needs the GPU executor on a CUDA device "
                             "(the CPU path keeps the KV cache in the model's dtype)")
        if torch.cuda.get_device_capability(device) < (8, 9):
            raise ValueError(f"option.kv_cache_dtype={option} needs a GPU with fp8 support (compute capability "
                             f"8.9 or newer, e.g. H100, L4, L40S); this one is {torch.cuda.get_device_name(device)}")
        return torch.float8_e4m3fn
    if option in _DTYPES:
        return _DTYPES[option]
    raise ValueError(f"option.kv_cache_dtype={option!r} is not supported (auto, fp8, fp8_e4m3, bf16, fp16, fp32)")


_INT8_QUANTIZE = ("bitsandbytes8", "bitsandbytes", "dynamic_int8")
_INT4_QUANTIZE = ("bitsandbytes4",)
_PREQUANTIZED = ("gptq", "awq")


def effective_dtype(opts: ExecutorOptions) -> str:
    """option.quantize folded into the dtype option (the config layer rewrites option.load_in_8bit to
    bitsandbytes8 and option.load_in_4bit to bitsandbytes4): weight-only int8 or int4, quantized at load."""
    if not opts.quantize:
        return opts.dtype
    if opts.quantize in _INT8_QUANTIZE:
        return "int8"
    if opts.quantize in _INT4_QUANTIZE:
        return "int4"
    offer = (f"it quantizes full-precision checkpoints at load: weight-only int8 (option.quantize="
             f"{' / '.join(_INT8_QUANTIZE)}, option.load_in_8bit or option.dtype=int8) or int4 "
             f"(option.quantize=bitsandbytes4 or option.load_in_4bit)")
    if opts.quantize in _PREQUANTIZED:
        raise ValueError(f"option.quantize={opts.quantize} needs a pre-quantized {opts.quantize.upper()} checkpoint, "
                         f"which the GPU executor does not read; {offer}")
    raise ValueError(f"option.quantize={opts.quantize} is not supported by the GPU executor; {offer}")


def _held_bytes(device) -> int:
    """GPU memory PyTorch holds once its cache of free blocks is returned: what graph captures add to it
    (their pools and the buffers they keep) without the warm-up forwards' transient activations."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    return torch.cuda.memory_reserved(device)


class Worker:
    def __init__(self, opts: ExecutorOptions, rank: int, world_size: int):
        self.opts = opts
        self.tp = TensorParallel(rank, world_size)
        if opts.device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", rank)))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        self.tp.init(opts.dist_init_method, "nccl" if opts.device == "cuda" else "gloo", self.device)
        self.model = None
        self.runner = None
        self.num_blocks = 0
        # Every rank launches a step before the previous one finishes (server.py): rank 0 relays each message to
        # the others over a CPU group (parallel.py), so they receive step N+1 while step N runs, and every rank
        # queues the same collectives in the same order.
        self.pipelined = opts.pipeline_steps

    def hello(self, _msg) -> dict:
        return {"version": PROTOCOL_VERSION, "pid": os.getpid(), "torch": torch.__version__,
                "device": str(self.device), "worldSize": self.tp.world_size,
                "capabilities": ["paged-kv", "prompt-logprobs", "seeded-sampling", "cuda-graphs", "tensor-parallel"]
                + (["pipelined-steps"] if self.pipelined else []),
                # How many execute calls may be in flight at once: each launched step holds one of the runner's
                # output ring buffers until its reply is read, and one is kept for a step launched while the
                # others finish.
                "maxStepsInFlight": RING_STEPS - 1 if self.pipelined else 1}

    def load(self, _msg) -> dict:
        o = self.opts
        t0 = time.perf_counter()
        cfg = load_model_config(o.model_dir)
        self.cfg = cfg
        self.dtype_option = effective_dtype(o)
        self.dtype = resolve_dtype(self.dtype_option, cfg.torch_dtype, self.device)
        self.kv_dtype = resolve_kv_dtype(o.kv_cache_dtype, self.dtype, self.device)
        self.max_model_len = min(o.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings) \
            if cfg.max_position_embeddings else o.max_model_len
        attention = Attention(o.attention_backend, self.device, cfg.sliding_window)
        family = GPTModel if cfg.model_type in ("gpt2", "gpt_neox") else LlamaModel
        self.model = family(cfg, self.dtype, self.device, self.tp, attention, self.max_model_len, o.fused_ops)
        if o.load_format == "dummy":
            self.model.init_dummy(o.seed)
        elif o.parallel_loading or self.tp.world_size == 1:
            self._load_weights()
        else:
            for r in range(self.tp.world_size):  # one rank at a time bounds host page-cache pressure
                if r == self.tp.rank:
                    self._load_weights()
                self.tp.barrier()
        if self.dtype_option in ("int8", "int4"):
            self.model.quantize(self.dtype_option)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return {"architecture": cfg.architecture, "modelType": cfg.model_type, "vocabSize": cfg.vocab_size,
                "maxModelLen": self.max_model_len, "eosTokenIds": list(cfg.eos_token_ids),
                "bosTokenId": cfg.bos_token_id, "kvCacheDtype": str(self.kv_dtype).replace("torch.", ""),
                "dtype": self.dtype_option if self.dtype_option in ("int8", "int4") else str(self.dtype).replace("torch.", ""),
                "loadSeconds": time.perf_counter() - t0, "weightBytes": self.model.weight_bytes()}

    def _load_weights(self) -> None:
        # The model directory's safetensors, or option.checkpoint re-sharded from its saved degree to ours.
        for name, tensor in iter_weights(self.opts, self.cfg, self.tp.rank, self.tp.world_size):
            self.model.load_weight(name, tensor)
            del tensor  # a re-sharded tensor is a fresh buffer: free it before the next one is merged
        self.model.finish_loading()

    def _bytes_per_block(self) -> int:
        m = self.model
        return 2 * self.cfg.num_layers * self.opts.block_size * m.nkv * self.cfg.head_dim * torch.empty((), dtype=self.kv_dtype).element_size()

    def hidden_positions(self) -> int:
        """Capacity of the contrastive hidden-state pool (contrastive.pool_positions), in positions."""
        return contrastive.pool_positions(self.opts.max_num_batched_tokens, self.max_model_len)

    def profile(self, _msg) -> dict:
        per_block = self._bytes_per_block()
        n = self._cuda_blocks(per_block) if self.device.type == "cuda" else \
            max(1, self.opts.cpu_kv_cache_bytes // per_block - EXECUTOR_BLOCKS)  # room for the executor's own blocks
        return {"numBlocks": n, "blockSize": self.opts.block_size, "bytesPerBlock": per_block,
                "contrastivePositions": self.hidden_positions(), "contrastiveChunk": contrastive.HIDDEN_CHUNK}

    def _cuda_blocks(self, per_block: int) -> int:
        """KV blocks that fit on the GPU after the memory profile (memory_profile.profile_cuda_blocks); under tensor
        parallelism the smallest count of any rank, since every rank must allocate the same."""
        from .kernels import decode_gemm, lt_gemm
        from .memory_profile import profile_cuda_blocks

        lt_gemm.get()  # its handle and workspace exist before the profile measures what the model holds
        decode_gemm.get()  # built (nvcc, seconds) before the profile and the CUDA-graph captures
        n = profile_cuda_blocks(self, per_block)
        if self.tp.world_size > 1:
            import torch.distributed as dist

            t = torch.tensor([n], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            n = int(t.item())
        return n

    def init_cache(self, msg) -> dict:
        n = int(msg["numBlocks"])
        cfg, m = self.cfg, self.model
        # Blocks past the engine's n: index n, where padded rows of captured graphs write (never into real blocks),
        # then contrastive search's look-ahead blocks (runner.EXECUTOR_BLOCKS: the profiles leave room for them).
        shape = (cfg.num_layers, 2, n + EXECUTOR_BLOCKS, self.opts.block_size, m.nkv, cfg.head_dim)
        self.kv = torch.zeros(shape, dtype=self.kv_dtype, device=self.device)
        caches = [(self.kv[i, 0], self.kv[i, 1]) for i in range(cfg.num_layers)]
        self.num_blocks = n
        self.runner = ModelRunner(m, caches, self.opts.block_size, self.opts.max_num_seqs, self.max_model_len, self.device,
                                  scratch_block=n, contrastive_blocks=range(n + 1, n + EXECUTOR_BLOCKS),
                                  hidden_positions=self.hidden_positions())
        if self.device.type == "cuda":
            self.runner.hidden_pool.allocate()  # now, from the room the memory profile left for it
        self.runner.rank = self.tp.rank  # the step log's rank field
        graph_seconds = prefill_seconds = 0.0
        decode_bytes = prefill_bytes = 0
        if self.opts.enable_cuda_graph and self.device.type == "cuda" and m.attn.backend == "triton":
            from .cuda_graphs import DecodeGraphs

            r0, t0 = _held_bytes(self.device), time.perf_counter()
            self.runner.graphs = DecodeGraphs(self.runner, scratch_block=n)
            graph_seconds = time.perf_counter() - t0
            decode_bytes = _held_bytes(self.device) - r0
            from .prefill_graphs import PrefillGraphs
            from .prefill_graphs import enabled as prefill_graphs_enabled

            if prefill_graphs_enabled():
                r0, t0 = _held_bytes(self.device), time.perf_counter()
                pg = PrefillGraphs(self.runner, scratch_block=n, pool=self.runner.graphs.pool,
                                   max_tokens=self.opts.max_num_batched_tokens)
                self.runner.prefill_graphs = pg if pg.sizes else None
                prefill_seconds = time.perf_counter() - t0
                prefill_bytes = _held_bytes(self.device) - r0
        if self.device.type == "cuda":
            from .sampler import warm_draw_kernels

            try:
                warm_draw_kernels(cfg.vocab_size, self.dtype, self.device)
            except Exception as e:  # noqa: BLE001 - then the first sampled request compiles them: slower, not broken
                sys.stderr.write(f"lmi_executor rank {self.tp.rank}: draw kernels not compiled at start: {e}\n")
            from .memory_profile import warm_allocator

            warm_allocator(self)  # last: nothing may return the blocks it leaves cached (no empty_cache after)
        prefill_sizes = self.runner.prefill_graphs.sizes if self.runner.prefill_graphs else []
        graphs = self.runner.graphs
        bounded = {b: bs[1:] for b, bs in graphs.bounds.items() if len(bs) > 1} if graphs else {}
        short = f" + short-context graphs {bounded} (bucket: context bounds)" if bounded else ""
        mib = 1 << 20
        from .kernels.decode_gemm import status as dg_status
        from .kernels.lt_gemm import status as lt_status

        sys.stderr.write(
            f"lmi_executor rank {self.tp.rank}: KV cache {n} blocks x {self.opts.block_size} tokens; CUDA graphs "
            f"{graphs.sizes if graphs else 'off'}{short} ({graph_seconds:.1f} s, "
            f"{decode_bytes / mib:.0f} MiB); prefill graphs {prefill_sizes or 'off'} tokens "
            f"({prefill_seconds:.1f} s, {prefill_bytes / mib:.0f} MiB); tuned cuBLASLt GEMMs {lt_status()}; fused "
            f"gate/up + SiLU kernel {dg_status()}\n"
        )
        return {"numBlocks": n, "cudaGraphSeconds": graph_seconds,
                "cudaGraphBatchSizes": self.runner.graphs.sizes if self.runner.graphs else [],
                "prefillGraphTokens": prefill_sizes, "prefillGraphSeconds": prefill_seconds,
                "cudaGraphBytes": decode_bytes, "prefillGraphBytes": prefill_bytes}

    def execute(self, msg) -> dict:
        return self.runner.execute(msg["plan"])

    def health(self, _msg) -> dict:
        info = {"ok": True, "rank": self.tp.rank, "loaded": self.model is not None, "numBlocks": self.num_blocks}
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            info["gpuFreeBytes"], info["gpuTotalBytes"] = free, total
        return info
