# CUDA graphs for pure-decode steps over bucketed batch sizes. Each graph reads static input buffers
# (token ids, positions, context lengths, block-table rows) and writes static logits; a step copies its
# inputs in, pads to the bucket, and replays. Invariants: padded rows point at the scratch block (one past
# the real cache) with context length 1, so a replay never writes K/V into a block a request owns; the
# host staging buffer of a step is not rewritten while its copy may still be queued (a ring of them, each
# reused only after the event recorded behind its copy).
import torch

from .attention import AttentionMetadata
from .kernels.paged_attention import WORKSPACE, decode_splits

_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


class DecodeGraphs:
    def __init__(self, runner, scratch_block: int):
        self.runner, self.scratch = runner, scratch_block
        model, dev = runner.model, runner.device
        max_b = runner.store.bt.scratch_row  # = max_num_seqs
        self.sizes = [b for b in _BUCKETS if b <= max_b]
        if max_b not in self.sizes:
            self.sizes.append(max_b)
        n = self.sizes[-1]
        self.bs = runner.block_size
        self.ids = torch.zeros(n, dtype=torch.int64, device=dev)
        self.pos = torch.zeros(n, dtype=torch.int64, device=dev)
        self.seq_lens = torch.ones(n, dtype=torch.int32, device=dev)
        self.bt = torch.full((n, runner.max_blocks), scratch_block, dtype=torch.int32, device=dev)
        self.qsl = torch.arange(n + 1, dtype=torch.int32, device=dev)
        # Host staging per step: token ids, positions, context lengths, block-table rows (one H2D copy). Steps
        # are launched ahead of the GPU, so each buffer is reused only once the copy out of it has run.
        self.hosts = [torch.zeros((4, n), dtype=torch.int64).pin_memory() for _ in range(4)]
        self.host_events = [None] * len(self.hosts)
        self.next_host = 0
        self.pad = torch.tensor([[0], [0], [1], [runner.store.bt.scratch_row]], dtype=torch.int64)
        # The split-decode workspace must exist at its largest before capture: graphs keep its address.
        need = max(decode_splits(b, model.nkv) * b for b in self.sizes)
        WORKSPACE.get(need, 1, model.nq, model.cfg.head_dim, dev)
        self.graphs, self.logits = {}, {}
        pool = None
        for b in reversed(self.sizes):
            self._forward(b)  # warm-up: Triton compiles, cuBLAS picks kernels, outside the capture
            torch.cuda.synchronize(dev)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                self.logits[b] = self._forward(b)
            pool = g.pool() if pool is None else pool
            self.graphs[b] = g
        torch.cuda.synchronize(dev)

    def _forward(self, b: int) -> torch.Tensor:
        pos, bt = self.pos[:b], self.bt[:b]
        slots = bt[torch.arange(b, device=pos.device), pos // self.bs].long() * self.bs + pos % self.bs
        meta = AttentionMetadata(
            slot_mapping=slots, query_start_loc=self.qsl[: b + 1], seq_lens=self.seq_lens[:b], block_tables=bt,
            max_query_len=1, max_seq_len=0, query_start_loc_cpu=[], seq_lens_cpu=[],
        )
        idx = torch.arange(b, device=pos.device)
        return self.runner.model.forward(self.ids[:b], pos, meta, self.runner.kv_caches, idx)

    def can_run(self, b: int) -> bool:
        return b <= self.sizes[-1]

    def run(self, ids: list, starts: list, seq_lens: list, rows: list, pending=None, last_token=None) -> torch.Tensor:
        """pending: (token indices, block-table rows) whose input id is the row's latest sample, read on the
        device from last_token (the host does not know it yet)."""
        b = len(ids)
        size = next(s for s in self.sizes if s >= b)
        k = self.next_host
        self.next_host = (k + 1) % len(self.hosts)
        if self.host_events[k] is not None:
            self.host_events[k].synchronize()
        h = self.hosts[k]
        h[:, :b] = torch.tensor([ids, starts, seq_lens, rows], dtype=torch.int64)
        if size > b:
            h[:, b:size] = self.pad  # padded rows: token 0 at position 0 in the scratch row's block
        dev_h = h.to(self.ids.device, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        self.host_events[k] = ev
        self.ids[:size].copy_(dev_h[0, :size])
        if pending is not None:
            tok_idx = torch.tensor(pending[0], dtype=torch.int64).to(self.ids.device, non_blocking=True)
            row_idx = torch.tensor(pending[1], dtype=torch.int64).to(self.ids.device, non_blocking=True)
            self.ids.index_copy_(0, tok_idx, last_token.index_select(0, row_idx))
        self.pos[:size].copy_(dev_h[1, :size])
        self.seq_lens[:size].copy_(dev_h[2, :size])
        torch.index_select(self.runner.store.bt.table, 0, dev_h[3, :size], out=self.bt[:size])
        self.graphs[size].replay()
        return self.logits[size][:b]
