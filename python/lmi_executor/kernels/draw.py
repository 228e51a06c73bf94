# Seeded draws after the sort, in two small kernels: the sampler sorts a step's logits (16-bit or fp32; descending,
# stable) and these find each row's token without writing a probability, a CDF or a mask over the vocabulary.
# The first kernel spreads each sorted row over CHUNK-wide programs: per chunk, the sum of e = exp(x / T - max)
# and how many entries pass min-p (e >= min_p: p >= min_p * p_max with the normaliser cancelled). The second
# takes one row: the survivors are the first n sorted tokens (top-k, top-p and min-p each keep a prefix), the
# top-p cut is found in the one chunk where the running mass crosses top_p * sum(e), the kept mass M in the
# chunk holding token n - 1, and the draw (the first token whose running mass exceeds u * M) in the chunk where
# u * M falls: at most three chunks of the row are read again. The drawn token's logprob comes out too: the first
# kernel also sums exp(x - x_max) per chunk (the raw logits, no temperature), the second takes
# log_softmax(x)[token] = x_token - x_max - log(sum), so a sampled step writes no fp32 copy of its logits.
# The row totals (the mass at T for the top-p threshold, the min-p count, the raw mass for the logprob) are taken
# by the first kernel over the unsorted rows, in the same chunks whatever is sorted: so the prefix form
# (sampler._draw_kernel, steps whose every row has top-k), which hands over only the first K sorted tokens
# (sampler.sorted_prefix: every top-k survivor lies there), draws bit for bit what the whole sort draws.
# Invariant: the same function as sampler._draw's masked-CDF form (tokens equal but where u * M lies within
# float rounding of a boundary, as the sums are taken in another order).
import torch
import triton
import triton.language as tl

CHUNK = 2048


@triton.jit
def _chunk_kernel(v_ptr, x0_ptr, stride_x0, temp_ptr, minp_ptr, s_ptr, n_ptr, z_ptr, V, stride_v, C,
                  CHUNK: tl.constexpr, TOTALS: tl.constexpr):
    # x0: the row's largest logit (the first sorted one), against which every exp is taken. TOTALS: also the raw
    # masses and min-p counts (the pass over the unsorted rows, whose sums the pick kernel takes as the totals; the
    # pass over the sorted tokens writes their masses at T only).
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    t = tl.load(temp_ptr + row)
    x0 = tl.load(x0_ptr + row * stride_x0).to(tl.float32)
    top = x0 / t
    cols = c * CHUNK + tl.arange(0, CHUNK)
    ok = cols < V
    x = tl.load(v_ptr + row * stride_v + cols, mask=ok, other=0.0).to(tl.float32)
    e = tl.where(ok, tl.exp(x / t - top), 0.0)
    tl.store(s_ptr + row * C + c, tl.sum(e, 0))
    if TOTALS:
        tl.store(z_ptr + row * C + c, tl.sum(tl.where(ok, tl.exp(x - x0), 0.0), 0))
        tl.store(n_ptr + row * C + c, tl.sum((ok & (e >= tl.load(minp_ptr + row))).to(tl.int32), 0))


@triton.jit
def _chunk_e(v_ptr, row, stride_v, c, t, top, V, CHUNK: tl.constexpr):
    cols = c * CHUNK + tl.arange(0, CHUNK)
    ok = cols < V
    x = tl.load(v_ptr + row * stride_v + cols, mask=ok, other=0.0).to(tl.float32)
    return cols, ok, tl.where(ok, tl.exp(x / t - top), 0.0)


@triton.jit
def _pick_kernel(v_ptr, order_ptr, s_ptr, ts_ptr, tn_ptr, tz_ptr, temp_ptr, topk_ptr, topp_ptr, u_ptr, out_ptr, lp_ptr,
                 V, stride_v, stride_o, C, CT, CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CT: tl.constexpr):
    # s: per-chunk masses of the sorted row (or prefix) handed over, C chunks; ts, tn, tz: the unsorted row's
    # per-chunk masses, min-p counts and raw masses, CT chunks, whose sums are the row's totals.
    row = tl.program_id(0).to(tl.int64)
    cc = tl.arange(0, BLOCK_C)
    okc = cc < C
    s = tl.load(s_ptr + row * C + cc, mask=okc, other=0.0)
    before = tl.cumsum(s, 0) - s  # mass of the chunks before each chunk
    ct = tl.arange(0, BLOCK_CT)
    okt = ct < CT
    t = tl.load(temp_ptr + row)
    top = tl.load(v_ptr + row * stride_v).to(tl.float32) / t
    n = tl.minimum(tl.load(topk_ptr + row), V)
    n = tl.minimum(n, tl.sum(tl.load(tn_ptr + row * CT + ct, mask=okt, other=0), 0))
    top_p = tl.load(topp_ptr + row)
    if top_p < 1.0:
        # A token stays while the mass before it is under top_p of the total (the first always stays).
        tau = top_p * tl.sum(tl.load(ts_ptr + row * CT + ct, mask=okt, other=0.0), 0)
        c = tl.max(tl.where(okc & (before < tau), cc, 0), 0)
        cols, ok, e = _chunk_e(v_ptr, row, stride_v, c, t, top, V, CHUNK)
        excl = tl.sum(tl.where(cc == c, before, 0.0), 0) + tl.cumsum(e, 0) - e
        n = tl.minimum(n, c * CHUNK + tl.sum((ok & (excl < tau)).to(tl.int32), 0))
    last = tl.maximum(n, 1) - 1
    c = last // CHUNK
    cols, ok, e = _chunk_e(v_ptr, row, stride_v, c, t, top, V, CHUNK)
    kept = tl.sum(tl.where(cc == c, before, 0.0), 0) + tl.sum(tl.where(cols <= last, e, 0.0), 0)
    target = tl.load(u_ptr + row) * kept
    c = tl.max(tl.where(okc & (before <= target), cc, 0), 0)
    cols, ok, e = _chunk_e(v_ptr, row, stride_v, c, t, top, V, CHUNK)
    incl = tl.sum(tl.where(cc == c, before, 0.0), 0) + tl.cumsum(e, 0)
    pick = tl.minimum(c * CHUNK + tl.sum((ok & (incl <= target)).to(tl.int32), 0), last)
    tl.store(out_ptr + row, tl.load(order_ptr + row * stride_o + pick))
    x0 = tl.load(v_ptr + row * stride_v).to(tl.float32)
    lse = x0 + tl.log(tl.sum(tl.load(tz_ptr + row * CT + ct, mask=okt, other=0.0), 0))
    tl.store(lp_ptr + row, tl.load(v_ptr + row * stride_v + pick).to(tl.float32) - lse)


@triton.jit
def _tie_fill_kernel(keys_ptr, stride_k, last_ptr, stride_last, above_ptr, ids_ptr, stride_ids, V, K,
                     BLOCK: tl.constexpr):
    """Row r: writes the ids of the entries equal to last[r], smallest first, into ids[r, above[r] : K] (the tie
    group a top-k prefix ends with, in the stable sort's order); stops scanning once they are all found."""
    row = tl.program_id(0).to(tl.int64)
    last = tl.load(last_ptr + row * stride_last)
    above = tl.load(above_ptr + row).to(tl.int32)
    want = K - above
    found = 0
    start = 0
    while (found < want) & (start < V):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(keys_ptr + row * stride_k + cols, mask=cols < V, other=0.0)
        tie = (cols < V) & (x == last)
        pos = found + tl.cumsum(tie.to(tl.int32), 0) - 1
        tl.store(ids_ptr + row * stride_ids + above + pos, cols.to(tl.int64), mask=tie & (pos < want))
        found += tl.sum(tie.to(tl.int32), 0)
        start += BLOCK


def fill_ties(keys: torch.Tensor, last: torch.Tensor, above: torch.Tensor, ids: torch.Tensor) -> None:
    """ids [R, K] int64: positions above[r] .. K - 1 of each row get the ids of keys' entries equal to last[r]
    ([R, 1], keys' dtype), ascending (see _tie_fill_kernel)."""
    R, V = keys.shape
    if R:
        _tie_fill_kernel[(R,)](keys, keys.stride(0), last, last.stride(0), above, ids, ids.stride(0), V, ids.shape[1],
                               BLOCK=4096, num_warps=8)


def draw_sorted(sorted_keys: torch.Tensor, order: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                top_p: torch.Tensor, min_p: torch.Tensor, u: torch.Tensor, keys: torch.Tensor) -> tuple:
    """keys [R, V'] the rows' logits (16-bit or fp32); sorted_keys [R, V] their first V (all, or a prefix holding
    every row's top-k survivors: top_k <= V) in descending order, with `order` (int64, their token ids); per row:
    temperature, top_p, min_p, u (fp32 [R]) and top_k (int32 [R], V for none) -> the drawn token ids (int64 [R])
    and their logprobs under the raw logits (log_softmax, fp32 [R])."""
    R, V = sorted_keys.shape
    dev = sorted_keys.device
    out = torch.empty(R, dtype=torch.int64, device=dev)
    lp = torch.empty(R, dtype=torch.float32, device=dev)
    if R == 0:
        return out, lp
    # Per chunk: the masses at T of the sorted tokens handed over (s), and of the whole rows (ts) with their min-p
    # counts (tn) and raw masses (tz). Each its own allocation, so every pointer the kernels get starts 16-byte aligned
    # at every R: Triton compiles a kernel once per pointer alignment, and the start-up warm-up compiles the only
    # variants. The per-row arguments must be so aligned too (sampler._draw_kernel).
    C, CT = triton.cdiv(V, CHUNK), triton.cdiv(keys.shape[1], CHUNK)
    s, ts, tz = (torch.empty((R, c), dtype=torch.float32, device=dev) for c in (C, CT, CT))
    tn = torch.empty((R, CT), dtype=torch.int32, device=dev)
    stride = sorted_keys.stride(0)
    _chunk_kernel[(R, C)](sorted_keys, sorted_keys, stride, temperature, min_p, s, s, s, V, stride, C, CHUNK=CHUNK,
                          TOTALS=False, num_warps=4)
    _chunk_kernel[(R, CT)](keys, sorted_keys, stride, temperature, min_p, ts, tn, tz, keys.shape[1], keys.stride(0),
                           CT, CHUNK=CHUNK, TOTALS=True, num_warps=4)
    _pick_kernel[(R,)](sorted_keys, order, s, ts, tn, tz, temperature, top_k, top_p, u, out, lp, V,
                       stride, order.stride(0), C, CT, CHUNK=CHUNK, BLOCK_C=max(16, triton.next_power_of_2(C)),
                       BLOCK_CT=max(16, triton.next_power_of_2(CT)), num_warps=8)
    return out, lp
