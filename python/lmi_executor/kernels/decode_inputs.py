# The inputs of a captured decode step in one kernel (it replaces a dozen small PyTorch ops inside the graph).
# From the staged [5, B] int64 block (rows ROW, IDS, POS, SEQ, PENDING below: block-table row, token id,
# position, context length, pending flag; the rows first, so they start 16-byte aligned for every B and the
# greedy kernel that reads them needs one compiled variant),
# per row i: the token id (last_token[row] when the id is a pending sample), the KV slot of the new token,
# the context length as int32 and the row's block table copied into a [B, W] table for the attention kernel.
# Invariant: same values as the PyTorch ops it replaces (cuda_graphs.DecodeGraphs._forward, torch path).
import torch
import triton
import triton.language as tl

ROW, IDS, POS, SEQ, PENDING = range(5)


@triton.jit
def _decode_inputs_kernel(inp_ptr, last_ptr, table_ptr, ids_ptr, slots_ptr, seq_ptr, bt_ptr, B, W, table_stride,
                          PAGE: tl.constexpr, BLOCK_W: tl.constexpr):
    i = tl.program_id(0)
    row = tl.load(inp_ptr + i)  # the staged rows, in decode_inputs.ROW .. PENDING order
    tok = tl.load(inp_ptr + B + i)
    pos = tl.load(inp_ptr + 2 * B + i)
    ctx = tl.load(inp_ptr + 3 * B + i)
    pending = tl.load(inp_ptr + 4 * B + i)
    if pending != 0:
        tok = tl.load(last_ptr + row)
    tl.store(ids_ptr + i, tok)
    src = table_ptr + row * table_stride
    blk = tl.load(src + pos // PAGE).to(tl.int64)
    tl.store(slots_ptr + i, blk * PAGE + pos % PAGE)
    tl.store(seq_ptr + i, ctx.to(tl.int32))
    w = tl.arange(0, BLOCK_W)
    dst = bt_ptr + i.to(tl.int64) * W
    for w0 in range(0, W, BLOCK_W):
        ok = w0 + w < W
        tl.store(dst + w0 + w, tl.load(src + w0 + w, mask=ok, other=0), mask=ok)


def decode_inputs(inp: torch.Tensor, last_token: torch.Tensor, table: torch.Tensor, page: int) -> tuple:
    """inp [5, B] int64 contiguous (rows ROW, IDS, POS, SEQ, PENDING); last_token int64;
    table [rows, W] int32. Returns (ids int64 [B], slots int64 [B], seq_lens int32 [B], block_tables [B, W])."""
    B = inp.shape[1]
    W = table.shape[1]
    dev = inp.device
    ids = torch.empty(B, dtype=torch.int64, device=dev)
    slots = torch.empty(B, dtype=torch.int64, device=dev)
    seq = torch.empty(B, dtype=torch.int32, device=dev)
    bt = torch.empty((B, W), dtype=table.dtype, device=dev)
    _decode_inputs_kernel[(B,)](inp, last_token, table, ids, slots, seq, bt, B, W, table.stride(0),
                                PAGE=page, BLOCK_W=min(1024, triton.next_power_of_2(W)), num_warps=1)
    return ids, slots, seq, bt
