# Per-request state the executor keeps between steps: tokens (prompt + sampled), block table, sampling
# settings, and the row the request occupies in the device-resident block table. Invariants: a request
# crosses in full once (add_new); afterwards only deltas arrive. A preempted request loses its KV state
# but keeps prompt length and sampling settings, which a resumed request does not re-send.
from dataclasses import dataclass, field

import torch

from .transfer import to_device


@dataclass
class RequestState:
    req_id: str
    token_ids: list
    prompt_len: int
    sampling: dict
    block_ids: list = field(default_factory=list)
    row: int = -1  # row in BlockTable; assigned on admission
    num_pending: int = 0  # sampled by launched steps whose tokens have not reached token_ids yet
    # Contrastive search: the chunks of the executor's hidden-state pool holding the unit-length final hidden states
    # of positions 0 .. hidden_len - 1, and their pool rows on the device (contrastive.HiddenPool).
    hidden_chunks: list = field(default_factory=list)
    hidden_index: object = None
    hidden_len: int = 0


class BlockTable:
    """Device-resident [max_num_seqs + 1, max_blocks] int32 table; each step writes only appended block ids.
    The extra last row holds only `scratch_block`: padded rows of captured graphs gather it."""

    def __init__(self, max_num_seqs: int, max_blocks: int, device, scratch_block: int = 0):
        self.table = torch.zeros((max_num_seqs + 1, max_blocks), dtype=torch.int32, device=device)
        self.scratch_row = max_num_seqs
        self.table[max_num_seqs].fill_(scratch_block)
        self.free_rows = list(range(max_num_seqs - 1, -1, -1))
        self.max_blocks = max_blocks
        self._pending = ([], [], [])

    def take_row(self) -> int:
        if not self.free_rows:
            raise RuntimeError(f"more than max_num_seqs={self.scratch_row} requests are running")
        return self.free_rows.pop()

    def release(self, row: int) -> None:
        if row >= 0:
            self.free_rows.append(row)

    def append(self, row: int, start: int, block_ids: list) -> None:
        if start + len(block_ids) > self.max_blocks:
            raise ValueError(f"block table of {start + len(block_ids)} blocks exceeds max_model_len")
        rows, cols, vals = self._pending
        for j, b in enumerate(block_ids):
            rows.append(row)
            cols.append(start + j)
            vals.append(b)

    def flush(self) -> None:
        rows, cols, vals = self._pending
        if rows:
            # One copy of the appended entries (non-blocking: see transfer.py).
            idx = to_device([rows, cols, vals], self.table.device, torch.int64)
            self.table.index_put_((idx[0], idx[1]), idx[2].to(torch.int32))
            self._pending = ([], [], [])


class RequestStore:
    def __init__(self, block_table: BlockTable, on_drop=None):
        self.running = {}
        self.parked = {}  # req_id -> (prompt_len, sampling) while preempted
        self.bt = block_table
        self.on_drop = on_drop  # called with each state the store lets go of (finish, preempt, resume)

    def add_new(self, d: dict) -> RequestState:
        st = RequestState(d["reqId"], list(d["promptTokenIds"]), len(d["promptTokenIds"]), d["sampling"])
        self._admit(st, list(d["blockIds"]))
        return st

    def update_cached(self, d: dict) -> RequestState:
        rid = d["reqId"]
        if d.get("resumedFromPreemption"):
            old = self.running.pop(rid, None)
            if old is not None:
                self._drop(old)
                prompt_len, sampling = old.prompt_len, old.sampling
            else:
                prompt_len, sampling = self.parked.pop(rid)
            st = RequestState(rid, list(d["allTokenIds"]), prompt_len, sampling)
            self._admit(st, list(d["newBlockIds"]))
            return st
        st = self.running[rid]
        if d["newBlockIds"]:
            self.bt.append(st.row, len(st.block_ids), d["newBlockIds"])
            st.block_ids.extend(d["newBlockIds"])
        return st

    def _admit(self, st: RequestState, block_ids: list) -> None:
        st.row = self.bt.take_row()
        st.block_ids = block_ids
        self.bt.append(st.row, 0, block_ids)
        self.running[st.req_id] = st

    def finish(self, rid: str) -> None:
        st = self.running.pop(rid, None)
        if st is not None:
            self._drop(st)
        self.parked.pop(rid, None)

    def preempt(self, rid: str) -> None:
        st = self.running.pop(rid, None)
        if st is not None:
            self._drop(st)
            self.parked[rid] = (st.prompt_len, st.sampling)

    def _drop(self, st: RequestState) -> None:
        self.bt.release(st.row)
        if self.on_drop is not None:
            self.on_drop(st)
