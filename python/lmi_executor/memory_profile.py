# Sizes the paged KV cache on a GPU: runs one forward pass as large as the biggest step the engine may
# send (max_num_batched_tokens) plus a full sampler pass, reads the peak, and gives the KV cache what is
# left of gpu_memory_utilization x total memory; after the cache and the graphs exist, the same step runs
# once more so the allocator keeps blocks for it (warm_allocator). Invariant: weights, peak activations,
# memory outside PyTorch's allocator (CUDA context, NCCL), a graph reserve, the penalties' token history and
# contrastive search's hidden-state pool all come out of the budget before KV does.
import torch

from .attention import AttentionMetadata
from .graph_capture import decode_graph_sizes
from .kernels.attention_launch import context_bounds
from .prefill_graphs import enabled as prefill_graphs_enabled
from .prefill_graphs import graph_sizes
from .runner import EXECUTOR_BLOCKS, HISTORY_DTYPE, history_shape
from .sampler import SampleRow, sample

# What the CUDA graphs hold beyond the profiled peak: every bucket's static logits ([b, vocab] for each
# decode graph of bucket b, one per context bound the bucket keeps a graph for: fp32 up to FP32_LOGIT_ROWS rows,
# whose one-row kernels write fp32 themselves, the model's dtype above; [1, vocab] fp32 for each
# prefill bucket) plus a base for the rest (activations the captures
# keep in their shared pool, greedy outputs, block-table gathers). Measured on the Llama-3-8B shape with
# max_num_seqs=256 (Worker.init_cache reports it): decode graphs 410-430 MiB (~370 MiB of it logits; 772-874
# MiB when every bucket's logits were fp32), prefill graphs 62-190 MiB more: about 240 MiB besides the logits.
GRAPH_BASE_BYTES = 384 << 20
FP32_LOGIT_ROWS = 8  # kernels/gemv.MAX_ROWS (that module needs Triton; a GPU test checks they agree)


def graph_reserve_bytes(worker) -> int:
    o = worker.opts
    if not (o.enable_cuda_graph and worker.model.attn.backend == "triton"):
        return 0
    sizes = decode_graph_sizes(o.max_num_seqs)
    kv_bytes = torch.empty((), dtype=worker.kv_dtype).element_size()
    elem = torch.empty((), dtype=worker.dtype).element_size()  # the compute dtype (bf16 for int8/int4 weights)
    nbytes = sum(b * len(context_bounds(b, worker.model.nkv, kv_bytes)) * (4 if b <= FP32_LOGIT_ROWS else elem)
                 for b in sizes)
    if prefill_graphs_enabled():
        nbytes += len(graph_sizes(o.max_num_batched_tokens, worker.max_model_len)) * 4
    return GRAPH_BASE_BYTES + nbytes * worker.cfg.vocab_size


def run_largest_step(worker) -> None:
    """One forward as large as the biggest step the engine may send, plus a full sampler pass, over a
    throwaway cache shared by every layer and sequence (the values are irrelevant, only the allocations)."""
    o, cfg, model, dev = worker.opts, worker.cfg, worker.model, worker.device
    T = max(1, o.max_num_batched_tokens)
    seq_len = min(T, worker.max_model_len)
    lens = [seq_len] * (T // seq_len) + ([T % seq_len] if T % seq_len else [])
    bs = o.block_size
    blocks_per_seq = (seq_len + bs - 1) // bs
    tmp = torch.empty((blocks_per_seq, bs, model.nkv, cfg.head_dim), dtype=worker.kv_dtype, device=dev)
    qsl = [0]
    for n in lens:
        qsl.append(qsl[-1] + n)
    positions = torch.cat([torch.arange(n, device=dev) for n in lens])
    meta = AttentionMetadata(
        slot_mapping=positions.clone(),
        query_start_loc=torch.tensor(qsl, dtype=torch.int32, device=dev),
        seq_lens=torch.tensor(lens, dtype=torch.int32, device=dev),
        block_tables=torch.arange(blocks_per_seq, dtype=torch.int32, device=dev).repeat(len(lens), 1),
        max_query_len=max(lens),
        max_seq_len=max(lens),
        query_start_loc_cpu=qsl,
        seq_lens_cpu=lens,
    )
    ids = torch.randint(0, cfg.vocab_size, (T,), device=dev)
    rows = min(o.max_num_seqs, T)
    logits_idx = torch.arange(T - rows, T, device=dev)
    logits = model.forward(ids, positions, meta, [(tmp, tmp)] * cfg.num_layers, logits_idx)
    s = {"strategy": "sample", "temperature": 0.7, "topK": 50, "topP": 0.9, "typicalP": 1.0, "minP": 0.0,
         "repetitionPenalty": 1.0, "presencePenalty": 0.0, "frequencyPenalty": 0.0, "logitBias": {"0": 0.0}, "seed": 0,
         "numTopLogprobs": 5, "minTokens": 0, "eosTokenIds": []}
    sample(logits, [SampleRow(s, 0, [], 0) for _ in range(rows)])
    torch.cuda.synchronize(dev)


def warm_allocator(worker) -> None:
    """Leaves PyTorch's allocator holding blocks for the largest step, so serving never asks the driver for
    device memory: an allocation from the driver (cudaMalloc) waits for all queued GPU work, which would stall
    a step launched ahead of the running one (seen in a burst: the LM head's growing logits took new segments,
    and each such launch waited ~190 ms for the step before it). The KV cache was sized to leave this room."""
    run_largest_step(worker)


def history_reserve_bytes(worker) -> int:
    """The runner's device token history for penalties (ModelRunner.hist), allocated with the first request that
    has penalties, after the KV cache."""
    rows, cols = history_shape(worker.opts.max_num_seqs, worker.max_model_len)
    return rows * cols * torch.empty((), dtype=HISTORY_DTYPE).element_size()


def hidden_pool_bytes(worker) -> int:
    """Contrastive search's hidden-state pool (contrastive.HiddenPool: fp32 rows of the hidden size), allocated with
    the KV cache."""
    return worker.hidden_positions() * worker.cfg.hidden_size * 4


def profile_cuda_blocks(worker, bytes_per_block: int) -> int:
    o, dev = worker.opts, worker.device
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    run_largest_step(worker)
    peak = torch.cuda.max_memory_allocated(dev)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(dev)
    outside_torch = (total - free) - torch.cuda.memory_reserved(dev)
    reserve = graph_reserve_bytes(worker)
    history = history_reserve_bytes(worker)
    hidden = hidden_pool_bytes(worker)
    # The cache also holds the executor's own blocks past the engine's (runner.EXECUTOR_BLOCKS).
    budget = int(total * o.gpu_memory_utilization) - peak - outside_torch - reserve - history - hidden \
        - EXECUTOR_BLOCKS * bytes_per_block
    if budget < bytes_per_block:
        raise MemoryError(
            f"out of memory for the KV cache: {total * o.gpu_memory_utilization / 2**30:.1f} GiB allowed "
            f"(gpu_memory_utilization={o.gpu_memory_utilization}), weights + activations peak at {peak / 2**30:.1f} GiB"
        )
    worker.profile_info = {"peakBytes": peak, "outsideTorchBytes": outside_torch, "graphReserveBytes": reserve,
                           "historyReserveBytes": history, "hiddenPoolBytes": hidden, "kvBudgetBytes": budget}
    return budget // bytes_per_block
