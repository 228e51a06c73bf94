# Launch parameters of kernels/paged_attention.py, apart from the kernels so that code without Triton (the
# memory profile, CPU tests) can ask which launches a batch gets. Everything here depends on the batch, the
# model's KV heads, the cache's element size, the SM count and a context bound, never on a step's own lengths:
# CUDA graphs captured with one launch stay valid for every step of their bucket (and bound).
import torch


def next_pow2(n: int) -> int:
    return 1 << (max(1, n) - 1).bit_length()


_NUM_SMS = None


def _num_sms() -> int:
    global _NUM_SMS
    if _NUM_SMS is None:
        _NUM_SMS = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return _NUM_SMS


# Bounds on a decode step's context lengths that the split path's launch may assume. Its programs are latency-
# bound there, and a narrower tile shortens each one's chain (batch-1 forward + greedy graph, H100, interleaved
# rounds): 32-key tiles within 512 keys, 5.341 -> 5.317 ms at context 128, 5.358 -> 5.333 at 300, 5.364 -> 5.333 at
# 512, but 5.369 -> 5.387 at 768 and 5.387 -> 5.405 at 1,024 (past it, twice the loop steps cost more); within 256
# keys, where 8 splits of one 32-key tile cover the context, 8 splits instead of 16 (the merge reads half the
# partials): 5.260 -> 5.238 ms at 128, 5.320 -> 5.297 at 200, 5.323 -> 5.299 at 256 (another lease), but 5.331 ->
# 5.352 at 300. The decode graphs capture one graph of a
# bucket per bound whose launch differs (cuda_graphs.DecodeGraphs) and replay the tightest that holds a step.
SHORT_CONTEXT = 512
SHORTER_CONTEXT = 256
CONTEXT_BOUNDS = (SHORTER_CONTEXT, SHORT_CONTEXT)

# Decode batches from this many sequences (over a 16-bit cache) take 2-warp attention programs. A Llama-3-8B decode
# step reaches the H100's 700 W limit there, and a launch that spends less energy wins though it is no faster alone.
# bench/gpu-decode-attention-sustained.py (the whole decode step + greedy as one graph, replayed back to back for
# 1.5-2 s, shipped 4 warps -> 2 warps, ms): batch 256 at context 520 13.873 -> 13.822, 640 14.970 -> 14.953, 768
# 16.362 -> 16.349 (689-694 W, 1,755-1,822 MHz; the shipped graph again: 13.870 / 14.969 / 16.359); batch 128 at 640
# 10.193 -> 10.175 (693 W); under the limit 2 warps lose: batch 64 8.056 -> 8.085 (640 W, 1,980 MHz), 32 6.922 -> 6.926.
POWER_LIMITED_DECODE_BATCH = 128


def decode_launch(batch: int, num_kv_heads: int, kv_bytes: int = 2, max_context: int = 0) -> dict:
    """Launch parameters of a pure-decode step. They depend on the batch, the KV heads, the cache's element
    size and a bound on the context lengths (max_context; 0 = none known), never on the lengths themselves, so
    a CUDA graph captured for a batch size (and bound) stays valid for every later step within it."""
    pairs = batch * num_kv_heads
    if pairs >= _num_sms():
        splits = 1  # every SM has a (sequence, KV head) already: a merge pass costs more than splitting gains
    else:  # cover the SMs about twice
        want = (2 * _num_sms() + pairs - 1) // pairs
        splits = max(1, min(16, next_pow2(want)))
    fp8 = kv_bytes == 1
    if splits == 1:
        # One program per (sequence, KV head), KV-bandwidth-bound: the KV heads of a sequence on neighbouring
        # programs (they read the interleaved heads of the same pages together) and a 3-deep load pipeline.
        # An fp8 cache is instruction-bound with that launch (widening, softmax and address work per byte
        # double): it computes in fp16 (one instruction widens e4m3) with one warp, 32-key tiles and a 5-deep
        # pipeline, for occupancy (bench/gpu-attention-fp8-sweep.py, H100, batch 256: 0.170 -> 0.114 ms at
        # context 520, 0.525 -> 0.399 ms at 2,048, against 0.194 / 0.712 ms over a bf16 cache).
        if fp8:
            return {"splits": 1, "block_n": 32, "num_warps": 1, "num_stages": 5, "head_fast": True, "f16": True}
        # 2 warps from POWER_LIMITED_DECODE_BATCH sequences, where the step runs at the power limit (see there).
        warps = 2 if batch >= POWER_LIMITED_DECODE_BATCH else 4
        return {"splits": 1, "block_n": 64, "num_warps": warps, "num_stages": 3, "head_fast": True}
    cfg = {"splits": splits, "block_n": 64, "num_warps": 4, "num_stages": 2, "head_fast": False, "f16": fp8}
    if fp8 and batch >= 4:
        # An fp8 cache at batch 4 or more: 32-key tiles at any context. Forward + greedy graph, H100, interleaved
        # rounds (ms, 64 -> 32-key tiles): batch 4 6.263 -> 6.206 / 6.432 -> 6.344 / 6.742 -> 6.612 at context
        # 1,024 / 2,048 / 4,000; batch 8 6.460 -> 6.373 / 6.775 -> 6.659 / 7.445 -> 7.162; batch 16 7.019 -> 6.899 /
        # 7.672 -> 7.426 / 9.000 -> 8.388. At batches 1-2 they lose past 512 keys (batch 1: 5.303 -> 5.329 / 5.447
        # -> 5.488 / 5.585 -> 5.678), and over a bf16 cache batches 4-16 are even (-0.5% to +0.4%).
        cfg["block_n"] = 32
        return cfg
    # Short contexts: 32-key tiles where the programs are latency-bound (8 or more splits of a bf16 cache; any
    # split launch of an fp8 one below batch 4). Attention alone, H100, context 512: batch 4 8.4 -> 7.4 us, batch 8 9.1 -> 8.8,
    # but batch 16 (4 splits) 13.1 -> 14.1 over bf16; fp8 batch 16 13.9 -> 12.8.
    if 0 < max_context <= SHORT_CONTEXT and (splits >= 8 or fp8):
        cfg["block_n"] = 32
        if max_context <= SHORTER_CONTEXT and splits == 16 and not fp8:
            cfg["splits"] = 8  # 8 x 32 keys cover the bound: the other 8 programs would only add partials
    return cfg


def context_bounds(batch: int, num_kv_heads: int, kv_bytes: int = 2) -> list:
    """The context bounds, loosest first, that the decode graphs keep a graph of this batch for: 0 (any context),
    then each of CONTEXT_BOUNDS under which the launch differs from the one for the next looser bound."""
    out = [0]
    for bound in sorted(CONTEXT_BOUNDS, reverse=True):
        if decode_launch(batch, num_kv_heads, kv_bytes, bound) != decode_launch(batch, num_kv_heads, kv_bytes, out[-1]):
            out.append(bound)
    return out


# Prompt steps whose longest context reaches this many keys walk them in 64-key tiles, shorter ones in 32-key tiles.
# bench/gpu-attention-prefill-ab.py (H100, the unmasked causal loop on, ms per layer, 32 -> 64-key tiles): 16 x 512
# 0.192 -> 0.208, 8 x 1,024 0.322 -> 0.331, 1 x 1,024 0.059 -> 0.059; 1 x 2,048 0.188 -> 0.174, 4 x 2,048 0.572 ->
# 0.568, 1 x 4,096 0.589 -> 0.561, 2 x 4,096 1.067 -> 1.042, 1 x 8,192 2.026 -> 1.936.
LONG_PROMPT_CONTEXT = 2048


def prefill_launch(group: int, head_dim: int, kv_bytes: int = 2, max_context: int = 0, fresh: bool = False) -> dict:
    """Launch parameters of a step with prefill (or mixed) rows: BLOCK_Q query tokens times the GROUP heads of
    one KV head per program; max_context is the step's longest context (0 = unknown). Over an fp8 cache, fp16
    compute and 64-key tiles (bench/gpu-attention-fp8-sweep.py --prefill, H100, 16 x 512 new tokens: 0.260 ->
    0.189 ms a layer; 2 x 4,096: 1.59 -> 1.02 ms). A launch only changes speed, never the result, so a prefill
    graph captured with one stays correct for any context. fresh: the step reads its own token-major K/V, not the
    paged cache (bench/gpu-attention-prefill-sdpa.py, H100, ms a layer, paged tuned -> fresh 32-key tiles 3 stages:
    16 x 512 0.194 -> 0.158, 4 x 2,048 0.574 -> 0.488, 1 x 4,096 0.564 -> 0.502; 64-key or wider query tiles slower).
    With the base-2 softmax and the K/V brought in by the copy engine (paged_attention FLAGS["fresh_tma"]), fresh steps
    from LONG_PROMPT_CONTEXT keys on take 64-key tiles (bench/gpu-attention-prefill-tma.py, H100, head_dim 128, ms a
    layer, 32- -> 64-key tiles: 4 x 2,048 0.355 -> 0.324, 1 x 8,192 1.325 -> 1.158; 8 warps over 32-token query
    tiles 0.383 / 1.376; below the bound 16 x 512 0.127 -> 0.134, 8 x 1,024 0.197 -> 0.191), 16-bit K/V only (fp32
    tiles of that size, 3 deep, would pass the 228 KB of shared memory). The start-up profile step
    (memory_profile.run_largest_step: one fresh prompt of the token budget) compiles it."""
    block_q = max(1, 64 // group) if head_dim <= 128 else max(1, 32 // group)
    if kv_bytes == 1:
        return {"block_q": block_q, "block_n": 64, "num_warps": 4, "num_stages": 2, "head_fast": False, "f16": True}
    if fresh:  # the step's own K/V, token-major, with a 3-deep pipeline
        if max_context >= LONG_PROMPT_CONTEXT and head_dim <= 128 and kv_bytes == 2:  # fp32: no room for 3 stages
            return {"block_q": block_q, "block_n": 64, "num_warps": 4, "num_stages": 3, "head_fast": False}
        return {"block_q": block_q, "block_n": 32, "num_warps": 4, "num_stages": 3, "head_fast": False}
    block_n = 64 if max_context >= LONG_PROMPT_CONTEXT else 32
    return {"block_q": block_q, "block_n": block_n, "num_warps": 4, "num_stages": 2, "head_fast": False}


def decode_splits(batch: int, num_kv_heads: int) -> int:
    """How many programs share one sequence's KV range in a decode step with no context bound: the most any
    bound's launch uses (sizes the split workspace)."""
    return decode_launch(batch, num_kv_heads)["splits"]
