# CUDA graphs for steps that compute several new tokens of ONE sequence (a whole prompt, a prompt chunk, the
# rest of a prompt after a prefix-cache hit), over bucketed token counts. Launching the eager forward costs
# the host about as long as the GPU work (~350 kernels for a 512-token Llama-3-8B prefill), so on an idle
# server the time to first token would follow the host's speed; a replay is one launch.
# A step's inputs are one host tensor: the token ids padded to the bucket, then q_len (new tokens), start
# (tokens already in the cache) and the block-table row. One contiguous copy takes them to the device;
# the graph derives positions, KV slots and the attention metadata there, runs the model and leaves the fp32
# logits of the last new token in a static [1, vocab] buffer.
# Invariants: padded tokens sit at position 0 and write their K/V to the scratch block's first slot, never
# into a block a request owns; the attention kernel masks query rows >= q_len (read on the device) and rows
# never mix elsewhere in the model, so padding does not change the real tokens' K/V or logits; the prefill
# work list of the attention kernel (`AttentionMetadata.tiles`) is built before capture, never inside it;
# the copy in is staged like every other host-to-device copy (transfer.copy_into): a launch never waits.
import os

import torch

from .attention import AttentionMetadata
from .graph_capture import capturing, collector_paused
from .transfer import copy_into

_BUCKETS = (32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024)


def enabled() -> bool:
    """Whether prefill graphs are captured at all (LMI_PREFILL_GRAPHS=0: prompts launch eagerly)."""
    return os.environ.get("LMI_PREFILL_GRAPHS", "1") != "0"


def bucket_sizes(max_tokens: int) -> list:
    """The buckets up to max_tokens (the largest step of one sequence); max_tokens itself closes the list
    when it falls below the largest bucket and between two of them. Steps of one token are decode graphs'."""
    sizes = [b for b in _BUCKETS if b <= max_tokens]
    if 1 < max_tokens < _BUCKETS[-1] and max_tokens not in sizes:
        sizes.append(max_tokens)
    return sizes


def graph_sizes(max_tokens: int, max_model_len: int) -> list:
    """The buckets PrefillGraphs captures: max_tokens (max_num_batched_tokens; 0 or less: unbounded) and
    max_model_len both bound a step of one sequence. The memory profile reserves room for the same ones."""
    return bucket_sizes(max_model_len if max_tokens <= 0 else min(max_tokens, max_model_len))


def worth_padding(q_len: int, size: int) -> bool:
    """The padding rule: a bucket of `size` tokens runs a q_len-token step only if size <= 1.25 q_len + 32.
    Padded tokens cost GPU time (their matmul rows; their attention tiles are masked but walk the context),
    which the replay must win back from the host's launch time: up to 32 tokens are always worth it (the
    eager launch of a short step costs far more than 32 rows of GPU work), beyond that a quarter."""
    return 4 * size <= 5 * q_len + 128


def choose_bucket(sizes: list, q_len: int) -> int:
    """The bucket (from ascending `sizes`) that a q_len-token step of one sequence replays, or 0 when it
    runs eagerly: one token (decode graphs' business), longer than every bucket, or too much padding."""
    if q_len < 2:
        return 0
    for s in sizes:
        if s >= q_len:
            return s if worth_padding(q_len, s) else 0
    return 0


class PrefillGraphs:
    def __init__(self, runner, scratch_block: int, pool=None, max_tokens: int = 0):
        """max_tokens: the largest step (max_num_batched_tokens); 0 means only max_model_len bounds it.
        pool: a graph memory pool to share (the decode graphs'); graphs replay one at a time on one stream."""
        self.runner, self.scratch = runner, scratch_block
        dev = runner.device
        self.bs = runner.block_size
        self.sizes = graph_sizes(max_tokens, runner.max_model_len)
        self.replays = 0
        self.graphs, self.logits, self.tiles = {}, {}, {}
        self.pool = pool
        if not self.sizes:
            return
        n = self.sizes[-1]
        scratch_row = runner.store.bt.scratch_row
        # Bucket b reads inp[: b + 3]: b token ids, then q_len, start, row (one contiguous staged copy).
        self.inp = torch.zeros(n + 3, dtype=torch.int64, device=dev)
        self.arange = torch.arange(n, dtype=torch.int64, device=dev)
        self.zero = torch.zeros(1, dtype=torch.int32, device=dev)
        self.one_query = torch.tensor([0, 1], dtype=torch.int32, device=dev)
        with collector_paused():  # one full collection for the whole loop, none per graph
            for b in reversed(self.sizes):  # largest first: the smaller ones reuse its freed pool memory
                # Warm-up on the scratch row (every block of it is the scratch block): Triton compiles, cuBLAS
                # picks its kernels, and the attention kernel builds the bucket's prefill tiles, kept for capture.
                self.inp[b : b + 3].copy_(torch.tensor([b, 0, scratch_row]))
                _, meta = self._forward(b, None)
                tiles = getattr(meta, "tiles", None)
                if tiles is None:
                    raise RuntimeError("the attention backend built no prefill tiles for a graph step to reuse")
                self.tiles[b] = tiles
                torch.cuda.synchronize(dev)
                g = torch.cuda.CUDAGraph()
                with capturing(g, self.pool):
                    self.logits[b], meta = self._forward(b, tiles)
                if meta.tiles is not tiles:  # rebuilt inside the capture: the graph would read a freed host copy
                    raise RuntimeError("the attention backend rebuilt its prefill tiles inside a graph capture")
                if self.pool is None:
                    self.pool = g.pool()
                self.graphs[b] = g
        torch.cuda.synchronize(dev)

    def _forward(self, b: int, tiles):
        """The captured step for bucket b: (logits [1, vocab] fp32 of token q_len - 1, its metadata)."""
        r, bs = self.runner, self.bs
        inp = self.inp[: b + 3]
        ids = inp[:b]
        q_len, start, row = inp[b : b + 1], inp[b + 1 : b + 2], inp[b + 2 : b + 3]
        pad = self.arange[:b] >= q_len
        pos = (self.arange[:b] + start).masked_fill(pad, 0)  # position 0 keeps the rotary lookup in range
        bt = r.store.bt.table.index_select(0, row)  # [1, max_blocks] int32
        blk = bt[0].index_select(0, pos // bs).long()
        slots = (blk * bs + pos % bs).masked_fill(pad, self.scratch * bs)
        meta = AttentionMetadata(
            slot_mapping=slots, query_start_loc=torch.cat([self.zero, q_len.int()]), seq_lens=(start + q_len).int(),
            block_tables=bt, max_query_len=b, max_seq_len=0, query_start_loc_cpu=[0, b], seq_lens_cpu=[],
        )
        # The query tiles cover all b tokens; the kernel masks rows >= q_len (read from query_start_loc).
        meta.tiles = tiles
        last = None
        if r.trim_last_layer:  # the last layer computes token q_len - 1 only: one decode-form query
            last = AttentionMetadata(
                slot_mapping=slots, query_start_loc=self.one_query, seq_lens=meta.seq_lens, block_tables=bt,
                max_query_len=1, max_seq_len=0, query_start_loc_cpu=[0, 1], seq_lens_cpu=[],
            )
        return r.model.forward(ids, pos, meta, r.kv_caches, q_len - 1, logits_meta=last), meta

    def size_for(self, q_len: int) -> int:
        return choose_bucket(self.sizes, q_len)

    def run(self, ids: list, start: int, row: int, size: int) -> torch.Tensor:
        """Computes len(ids) new tokens at positions start.. of block-table row `row` in bucket `size`
        (size_for). Returns the fp32 logits [1, vocab] of the last one: a static buffer that the next replay
        of this bucket overwrites (read it in stream order before then)."""
        q = len(ids)
        copy_into(self.inp[: size + 3], torch.tensor(ids + [0] * (size - q) + [q, start, row], dtype=torch.int64))
        self.graphs[size].replay()
        self.replays += 1
        return self.logits[size]
