# Greedy sampling on the GPU in two small kernels: argmax of each row of logits (fp32, or the model's 16-bit
# dtype, widened as loaded: the values a .float() pass would give, without writing them; the token is the same,
# the logprob may differ in its last bits, as a 16-bit load sums a chunk in another order) and that token's
# logprob (log_softmax at the argmax = -log(sum(exp(x - max)))). The first kernel spreads each row over
# CHUNK-wide programs (per chunk: max, first index of the max, sum of exp(x - chunk max)); the second
# combines a row's chunks and writes the token and logprob, and optionally the token into the runner's
# last_token at the row's block-table row (what the next pipelined step reads). One torch reduction over a
# 128k-entry row runs in one thread block (~38 us on an H100); here the row is spread over the GPU.
# Invariant: same function as sampler.greedy (ties go to the lowest token id, as torch.argmax).
import torch
import triton
import triton.language as tl

CHUNK = 2048


@triton.jit
def _chunk_kernel(x_ptr, m_ptr, i_ptr, s_ptr, V, stride_x, CHUNKS, CHUNK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    x = tl.load(x_ptr + row * stride_x + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
    m = tl.max(x, 0)
    idx = tl.argmax(x, 0, tie_break_left=True) + c * CHUNK
    s = tl.where(m == float("-inf"), 0.0, tl.sum(tl.exp(x - m), 0))
    tl.store(m_ptr + row * CHUNKS + c, m)
    tl.store(i_ptr + row * CHUNKS + c, idx)
    tl.store(s_ptr + row * CHUNKS + c, s)


@triton.jit(do_not_specialize=["R"])  # the row count changes with every step: one compiled variant
def _combine_kernel(m_ptr, i_ptr, s_ptr, out_ptr, rows_ptr, last_ptr, R, CHUNKS,
                    BLOCK_C: tl.constexpr, WRITE_LAST: tl.constexpr):
    row = tl.program_id(0)
    cc = tl.arange(0, BLOCK_C)
    ok = cc < CHUNKS
    m = tl.load(m_ptr + row * CHUNKS + cc, mask=ok, other=float("-inf"))
    idx = tl.load(i_ptr + row * CHUNKS + cc, mask=ok, other=2147483647)
    s = tl.load(s_ptr + row * CHUNKS + cc, mask=ok, other=0.0)
    mx = tl.max(m, 0)
    tok = tl.min(tl.where(m == mx, idx, 2147483647), 0)  # chunks are in column order: lowest id among ties
    total = tl.sum(tl.where(m == float("-inf"), 0.0, s * tl.exp(m - mx)), 0)
    lp = -tl.log(total)
    tl.store(out_ptr + row, tok.to(tl.float64))
    tl.store(out_ptr + R + row, lp.to(tl.float64))
    if WRITE_LAST:
        r = tl.load(rows_ptr + row)
        tl.store(last_ptr + r, tok.to(tl.int64))


def greedy_into(logits: torch.Tensor, out: torch.Tensor, rows: torch.Tensor = None,
                last_token: torch.Tensor = None) -> None:
    """logits [R, V] fp32, bf16 or fp16 (rows contiguous) -> out [2, R] fp64: argmax token ids, then their logprobs.
    With rows (int64 [R]) and last_token (int64), also last_token[rows[r]] = token of row r."""
    R, V = logits.shape
    if R == 0:
        return
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    chunks = triton.cdiv(V, CHUNK)
    dev = logits.device
    m = torch.empty((R, chunks), dtype=torch.float32, device=dev)
    idx = torch.empty((R, chunks), dtype=torch.int32, device=dev)
    s = torch.empty((R, chunks), dtype=torch.float32, device=dev)
    _chunk_kernel[(R, chunks)](logits, m, idx, s, V, logits.stride(0), chunks, CHUNK=CHUNK, num_warps=4)
    write_last = rows is not None
    _combine_kernel[(R,)](m, idx, s, out, rows if write_last else idx, last_token if write_last else idx, R, chunks,
                          BLOCK_C=max(16, triton.next_power_of_2(chunks)), WRITE_LAST=write_last, num_warps=1)
