# CUDA graphs for pure-decode steps over bucketed batch sizes. A step stages its inputs (token ids,
# positions, context lengths, block-table rows, which ids are pending samples) in one pinned buffer,
# copies it to the device in one transfer and replays the graph of the smallest bucket that holds it.
# Everything else happens inside the graph: pending token ids are read from the runner's last_token, the
# block-table rows are gathered (one kernel), the model runs, and greedy sampling (argmax and its logprob)
# writes last_token and a small static output, so a greedy step costs one copy in, one replay and one copy out.
# Buckets whose attention launches differently when every context is short (attention_launch.CONTEXT_BOUNDS) keep
# one more graph per such bound, captured with it; a step replays the tightest one that holds its contexts.
# Invariants: padded rows point at the scratch row (scratch block, context length 1), so a replay never
# writes K/V into a block a request owns and its greedy write lands in last_token's scratch entry; the copy
# in is staged like every other host-to-device copy (transfer.copy_into), so a launch never waits for the GPU.
import torch

from .attention import AttentionMetadata
from .graph_capture import bucket_for, capturing, collector_paused, decode_graph_sizes
from .kernels.decode_inputs import IDS, PENDING, POS, ROW, SEQ, decode_inputs
from .kernels.greedy import greedy_into
from .kernels.attention_launch import context_bounds, decode_splits
from .kernels.paged_attention import WORKSPACE
from .transfer import copy_into


class DecodeGraphs:
    def __init__(self, runner, scratch_block: int):
        self.runner, self.scratch = runner, scratch_block
        model, dev = runner.model, runner.device
        self.sizes = decode_graph_sizes(runner.store.bt.scratch_row)  # scratch_row = max_num_seqs
        n = self.sizes[-1]
        self.bs = runner.block_size
        scratch_row = runner.store.bt.scratch_row
        # Padded rows: token 0 at position 0, context length 1, the scratch row, not pending.
        self.pad = torch.zeros((5, 1), dtype=torch.int64)
        self.pad[SEQ, 0], self.pad[ROW, 0] = 1, scratch_row
        # Bucket b reads the first 5 * b entries of `inp` as a contiguous [5, b] block, so a step's inputs go in
        # as one contiguous copy from one region of the pinned staging ring (transfer.copy_into).
        self.inp = torch.empty(5 * n, dtype=torch.int64, device=dev)
        for b in self.sizes:
            self._inp(b).copy_(self.pad.expand(5, b))
        self.qsl = torch.arange(n + 1, dtype=torch.int32, device=dev)
        self.rows = torch.arange(n, dtype=torch.int64, device=dev)  # logits rows: every token samples
        # The split-decode workspace must exist at its largest before capture: graphs keep its address.
        need = max(decode_splits(b, model.nkv) * b for b in self.sizes)
        WORKSPACE.get(need, 1, model.nq, model.cfg.head_dim, dev)
        # Keyed by (bucket, context bound): bound 0 (any context) for every bucket, and the bounds under which a
        # bucket's launch differs (tightest last).
        kv_bytes = runner.kv_caches[0][0].element_size()
        self.bounds = {b: context_bounds(b, model.nkv, kv_bytes) for b in self.sizes}
        self.graphs, self.logits, self.greedy = {}, {}, {}
        pool = None
        with collector_paused():  # one full collection for the whole loop, none per graph
            for b in reversed(self.sizes):
                for bound in self.bounds[b]:
                    self._forward(b, bound)  # warm-up: Triton compiles, cuBLAS picks kernels, outside the capture
                    torch.cuda.synchronize(dev)
                    g = torch.cuda.CUDAGraph()
                    with capturing(g, pool):
                        self.logits[b, bound], self.greedy[b, bound] = self._forward(b, bound)
                    pool = g.pool() if pool is None else pool
                    self.graphs[b, bound] = g
        self.pool = pool  # the graphs' memory pool; prefill_graphs.PrefillGraphs captures into it too
        torch.cuda.synchronize(dev)

    def _inp(self, b: int) -> torch.Tensor:
        """Bucket b's staged inputs on the device: [5, b], contiguous."""
        return self.inp[: 5 * b].view(5, b)

    def _forward(self, b: int, bound: int):
        """The captured step: logits [b, vocab] (fp32 or the model's dtype) and greedy [2, b] fp64 (argmax token
        ids, their logprobs).
        Two kernels around the model: the inputs (kernels/decode_inputs.py) and greedy sampling, which also
        writes last_token (kernels/greedy.py). bound: the context bound the attention may assume (0: none)."""
        r = self.runner
        inp = self._inp(b)
        ids, slots, seq_lens, bt = decode_inputs(inp, r.last_token, r.store.bt.table, self.bs)
        meta = AttentionMetadata(
            slot_mapping=slots, query_start_loc=self.qsl[: b + 1], seq_lens=seq_lens, block_tables=bt,
            max_query_len=1, max_seq_len=bound, query_start_loc_cpu=[], seq_lens_cpu=[],
        )
        # The logits stay in the LM head's dtype (bf16 at the batch-256 bucket: no [b, vocab] fp32 pass inside the
        # graph, half the bytes for greedy to read); a step that samples otherwise widens them after the replay
        # (exact). Batch 256 x context 640, H100: 15.01 -> 14.84 ms a step (bench/gpu-decode-logits-ab.py).
        logits = r.model.forward(ids, inp[POS], meta, r.kv_caches, self.rows[:b], widen=False)
        # A step that samples otherwise overwrites its rows of last_token after the replay.
        out = torch.empty((2, b), dtype=torch.float64, device=logits.device)
        greedy_into(logits, out, rows=inp[ROW], last_token=r.last_token)
        return logits, out

    def can_run(self, b: int) -> bool:
        return b <= self.sizes[-1]

    def run(self, ids: list, starts: list, seq_lens: list, rows: list, pending=None) -> tuple:
        """pending: (token indices, block-table rows) whose input id is the row's latest sample, read on the
        device from last_token (the host does not know it yet). Returns (logits [b, vocab], fp32 or the model's
        dtype; greedy [2, size]):
        static buffers the next replay of this bucket overwrites; greedy's first b columns are this step's
        rows, the rest padding (kept whole so it copies to the host in one contiguous transfer)."""
        b = len(ids)
        size = bucket_for(self.sizes, b)  # can_run(b) holds
        flags = [0] * b
        if pending is not None:
            for t in pending[0]:
                flags[t] = 1
        staged = [None] * 5
        staged[IDS], staged[POS], staged[SEQ], staged[ROW], staged[PENDING] = ids, starts, seq_lens, rows, flags
        h = torch.empty((5, size), dtype=torch.int64)
        h[:, :b] = torch.tensor(staged, dtype=torch.int64)
        if size > b:
            h[:, b:] = self.pad
        copy_into(self._inp(size), h)
        key = self.key(size, max(seq_lens))
        self.graphs[key].replay()
        return self.logits[key][:b], self.greedy[key]

    def key(self, size: int, max_context: int) -> tuple:
        """The (bucket, context bound) of the graph that a step of this bucket with this longest context replays:
        the tightest bound that holds it (bounds are kept loosest first, 0 = any context)."""
        fits = [bound for bound in self.bounds[size] if bound == 0 or max_context <= bound]
        return size, fits[-1]
