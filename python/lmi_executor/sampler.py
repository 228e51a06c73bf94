# Sampling on the device for one step's rows: logit bias, min-tokens EOS suppression, repetition
# (HF: divide positive, multiply negative, over prompt + output), presence/frequency (OpenAI, over output),
# then greedy argmax or temperature -> top-k -> top-p -> min-p -> typical-p (HF order) and an inverse-CDF draw.
# Invariant: the draw for a request's n-th generated token uses u = uniform(seed, n) (splitmix64, below),
# so it depends only on (seed, n), never on batch composition. Logprobs are log_softmax of the raw logits.
from dataclasses import dataclass

import torch

from .transfer import to_device as _dev

_MASK64 = (1 << 64) - 1


def uniform(seed: int, n: int) -> float:
    """splitmix64 of (seed, n) -> [0, 1) with 53 random bits. The TypeScript executor can mirror it exactly."""
    z = (seed + (n + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))


@dataclass
class SampleRow:
    sampling: dict  # SamplingSettings as sent by the engine (camelCase keys)
    num_generated: int  # index n of the token being drawn
    token_ids: list  # prompt + generated so far on the host (penalties read it when no device history is given)
    prompt_len: int
    slot: int = -1  # the request's row in the runner's device history (ModelRunner.hist)


def needs_history(s: dict) -> bool:
    """Penalties read every earlier token of the request."""
    return s["repetitionPenalty"] != 1 or s["presencePenalty"] != 0 or s["frequencyPenalty"] != 0


def _history(rows: list, dev, hist) -> tuple:
    """The penalized rows' earlier tokens as a [n, W] id grid on the device, with each row's token count and prompt
    length. From the device history (hist: ModelRunner.hist, row = slot, the tokens before the one being drawn,
    samples still pending on the host included) or, without it, from the host lists."""
    if hist is not None:
        lens = [r.prompt_len + r.num_generated for r in rows]
        width = max(1, max(lens))
        grid = hist.index_select(0, _dev([r.slot for r in rows], dev).long())[:, :width].long()
    else:
        lens = [len(r.token_ids) for r in rows]
        width = max(1, max(lens))
        grid = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            if r.token_ids:
                grid[j, : len(r.token_ids)] = torch.tensor(r.token_ids, dtype=torch.long)
        grid = grid.to(dev)
    return grid, _dev(lens, dev).long(), _dev([r.prompt_len for r in rows], dev).long()


def _apply_penalties(logits: torch.Tensor, rows: list, hist=None) -> None:
    """HF repetition penalty over every earlier token (prompt and output); OpenAI presence / frequency penalties
    over the output tokens. Works on the [rows, W] grid of earlier tokens, never on [rows, vocabulary] buffers:
    the logit of each earlier token is gathered, penalized and scattered back (a token seen twice writes the same
    value twice), and its count among the output tokens is found by binary search in the row's sorted outputs.
    Nothing here waits for the device."""
    idx = [i for i, r in enumerate(rows) if needs_history(r.sampling)]
    if not idx:
        return
    V, dev = logits.shape[1], logits.device
    sel = [rows[i] for i in idx]
    grid, lens, plens = _history(sel, dev, hist)
    pos = torch.arange(grid.shape[1], device=dev)[None, :]
    known = pos < lens[:, None]
    out = known & (pos >= plens[:, None])
    # Positions past a row's count repeat its first token, so their writes repeat that token's own.
    tok = torch.where(known, grid, grid[:, :1])
    whole = len(idx) == len(rows)
    ix = None if whole else _dev(idx, dev).long()
    sub = logits if whole else logits.index_select(0, ix)
    g = sub.gather(1, tok)
    rep = _dev([r.sampling["repetitionPenalty"] for r in sel], dev, g.dtype)[:, None]
    freq = _dev([r.sampling["frequencyPenalty"] for r in sel], dev, g.dtype)[:, None]
    pres = _dev([r.sampling["presencePenalty"] for r in sel], dev, g.dtype)[:, None]
    outs = torch.where(out, grid, V).sort(dim=1).values  # V sorts last and matches no token
    count = (torch.searchsorted(outs, tok, right=True) - torch.searchsorted(outs, tok)).to(g.dtype)
    new = torch.where(g > 0, g / rep, g * rep) - freq * count - pres * (count > 0).to(g.dtype)
    new = torch.where(lens[:, None] > 0, new, g)  # a row with no earlier token keeps its logits
    sub.scatter_(1, tok, new)
    if not whole:
        logits.index_copy_(0, ix, sub)


def _apply_bias_and_min_tokens(logits: torch.Tensor, rows: list) -> None:
    r_idx, t_idx, vals = [], [], []
    for i, r in enumerate(rows):
        for tok, b in r.sampling["logitBias"].items():
            r_idx.append(i)
            t_idx.append(int(tok))
            vals.append(float(b))
        if r.num_generated < r.sampling["minTokens"]:
            for tok in r.sampling["eosTokenIds"]:
                r_idx.append(i)
                t_idx.append(int(tok))
                vals.append(float("-inf"))
    if r_idx:
        dev = logits.device
        logits.index_put_((_dev(r_idx, dev), _dev(t_idx, dev)), _dev(vals, dev, logits.dtype), accumulate=True)


def _typical_keep(probs: torch.Tensor, remove: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """HF typical-p over the survivors of the other filters; probs/remove are in descending-logit order."""
    p = probs.masked_fill(remove, 0.0)
    p = p / p.sum(-1, keepdim=True)
    logp = p.log()
    ent = -(p * logp).nansum(-1, keepdim=True)
    shifted = (-logp - ent).abs().masked_fill(remove, float("inf"))
    _, order = shifted.sort(dim=-1, stable=True)
    ps = p.gather(-1, order)
    keep_sorted = ((ps.cumsum(-1) - ps) < mass) & ~remove.gather(-1, order)
    keep_sorted[:, 0] = True
    return torch.zeros_like(remove).scatter(1, order, keep_sorted)


def _draw(x: torch.Tensor, rows: list, keys=None) -> torch.Tensor:
    """One seeded inverse-CDF draw per row over the survivors of top-k / top-p / min-p (and typical-p) in
    descending-logit order. keys: the same rows' logits in 16 bits when x is exactly their widening; dividing by a
    temperature orders them the same way, ties included, and a 16-bit sort moves half the radix passes."""
    dev, V = x.device, x.shape[1]
    S = [r.sampling for r in rows]
    temp = _dev([s["temperature"] for s in S], dev, x.dtype)[:, None]
    # Stable descending sort: equal logits keep ascending token ids, as the TypeScript sampler does.
    if keys is not None:
        sorted_keys, order = keys.sort(dim=-1, descending=True, stable=True)
        sorted_x = sorted_keys.to(x.dtype) / temp  # = (x / temp) in sorted order: x widens keys exactly
    else:
        sorted_x, order = (x / temp).sort(dim=-1, descending=True, stable=True)
    probs = sorted_x.softmax(-1)
    cum = probs.cumsum(-1)
    u = _dev([uniform(s["seed"], r.num_generated) for s, r in zip(S, rows)], dev, cum.dtype)[:, None]
    typ = [i for i, s in enumerate(S) if s["typicalP"] < 1]
    if typ:
        rank = torch.arange(V, device=dev)[None, :]
        k = _dev([s["topK"] if s["topK"] > 0 else V for s in S], dev)[:, None]
        top_p = _dev([s["topP"] for s in S], dev, probs.dtype)[:, None]
        min_p = _dev([s["minP"] for s in S], dev, probs.dtype)[:, None]
        # Exclusive cumulative sum: a token stays while the mass before it is under top_p (the first always stays).
        remove = (rank >= k) | ((cum - probs) >= top_p) | (probs < min_p * probs[:, :1])
        remove[:, 0] = False
        mass = _dev([S[i]["typicalP"] for i in typ], dev, probs.dtype)[:, None]
        ti = _dev(typ, dev)
        remove.index_copy_(0, ti, ~_typical_keep(probs.index_select(0, ti), remove.index_select(0, ti), mass))
        cdf = probs.masked_fill(remove, 0.0).cumsum(-1)
        pick = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=V - 1)
        return order.gather(1, pick).squeeze(1)
    # Top-k, top-p and min-p each keep a prefix of the sorted row, so the survivors are its first n tokens and
    # their CDF is the prefix of `cum`: no mask, no second scan. Only the filters some row uses are computed.
    n = torch.full((len(S), 1), V, dtype=torch.long, device=dev)
    if any(s["topK"] > 0 for s in S):
        n = torch.minimum(n, _dev([s["topK"] if s["topK"] > 0 else V for s in S], dev).long()[:, None])
    if any(s["topP"] < 1 for s in S):
        top_p = _dev([s["topP"] for s in S], dev, probs.dtype)[:, None]
        n = torch.minimum(n, ((cum - probs) < top_p).sum(-1, keepdim=True))
    if any(s["minP"] > 0 for s in S):
        min_p = _dev([s["minP"] for s in S], dev, probs.dtype)[:, None]
        n = torch.minimum(n, (probs >= min_p * probs[:, :1]).sum(-1, keepdim=True))
    last = n.clamp(min=1) - 1  # the first token always stays
    pick = torch.searchsorted(cum, u * cum.gather(1, last), right=True)
    return order.gather(1, torch.minimum(pick, last)).squeeze(1)


PARAM_ROW_MULTIPLE = 4  # fp32 entries in 16 bytes


# Steps of at least PREFIX_MIN_ROWS rows that all have top-k (1 <= k <= PREFIX) sort only their first PREFIX tokens
# (sorted_prefix): top-k survivors all lie there. GPU time of a draw over Llama-3's vocabulary, H100, whole sort ->
# prefix (bench/gpu-draw-prefix.py): 16 rows 0.175 -> 0.254 ms, 32 rows 0.284 -> 0.263, 64 0.469 -> 0.339, 128 0.954
# -> 0.454, 256 1.353 -> 0.703; with the totals over the unsorted rows in both forms, 32 rows 0.291 -> 0.275, 256
# 1.393 -> 0.704.
PREFIX = 4096
PREFIX_MIN_ROWS = 32
PREFIX_MAX_VOCAB = 1 << 20  # sorted_prefix's composite keys hold 20 bits of token id


def _order_keys(keys: torch.Tensor) -> torch.Tensor:
    """The float values' bits as int64 that order like the values (-0.0 counted as 0.0, as float comparison does);
    sorted_prefix puts them above 20 bits of reversed token id."""
    v = keys.float() + 0.0  # -0.0 + 0.0 = +0.0
    b = v.view(torch.int32)
    return (b ^ ((b >> 31) & 0x7FFFFFFF)).to(torch.int64)


def sorted_prefix(keys: torch.Tensor, k: int) -> tuple:
    """The first k entries of each row of keys [R, V] in the stable descending order (equal values: ascending token
    ids), as (values, token ids): what keys.sort(dim=-1, descending=True, stable=True) gives in its first k columns,
    without sorting the rest. topk holds the right values but an arbitrary subset of the entries equal to its last
    value, in an arbitrary order among equals: the prefix is sorted again by (value, id), and the tie group at its
    end is refilled with the smallest ids of the whole row (a Triton kernel on CUDA)."""
    R, V = keys.shape
    if V >= PREFIX_MAX_VOCAB:
        raise ValueError(f"sorted_prefix takes vocabularies of fewer than {PREFIX_MAX_VOCAB} tokens, got {V}")
    vals, idx = torch.topk(keys, k, dim=-1, sorted=False)
    composite = (_order_keys(vals) << 20) | ((1 << 20) - 1 - idx)
    composite = composite.sort(dim=-1, descending=True).values  # unique keys: any sort is the stable one
    ids = (1 << 20) - 1 - (composite & ((1 << 20) - 1))
    vals = keys.gather(1, ids)
    last = vals[:, k - 1 :]
    above = (vals > last).sum(dim=-1, dtype=torch.int32)  # entries before the tie group at the end: exact already
    if keys.is_cuda:
        from .kernels.draw import fill_ties

        fill_ties(keys, last, above, ids)
        return vals, ids
    # Position j >= above holds the (j - above)-th smallest id among the row's entries equal to `last`.
    tied = (keys == last).cumsum(dim=-1, dtype=torch.int32)
    rank = torch.arange(k, device=keys.device).expand(R, k) - above[:, None]
    found = torch.searchsorted(tied, (rank + 1).clamp(min=1).to(torch.int32))
    return vals, torch.where(rank >= 0, found, ids)


def _draw_kernel(keys: torch.Tensor, rows: list) -> tuple:
    """_draw for rows whose logits are `keys` (CUDA; 16-bit, widened exactly, or fp32), with no typical-p: the sort,
    then the draw kernels (kernels/draw.py) instead of the softmax, CDF and search passes over the vocabulary.
    Returns the tokens and their logprobs."""
    from .kernels.draw import draw_sorted

    dev, V = keys.device, keys.shape[1]
    S = [r.sampling for r in rows]
    if len(rows) >= PREFIX_MIN_ROWS and PREFIX < V < PREFIX_MAX_VOCAB and all(0 < s["topK"] <= PREFIX for s in S):
        sorted_keys, order = sorted_prefix(keys, PREFIX)  # draws the same tokens as the whole sort (kernels/draw.py)
    else:
        sorted_keys, order = keys.sort(dim=-1, descending=True, stable=True)
    # One [4, R'] block of per-row settings, R' = R rounded up to 4 rows: each setting's row then starts on a
    # 16-byte boundary at every batch size, and Triton, which compiles a kernel once per pointer alignment, never
    # meets one that the start-up warm-up (one row) did not compile (a compile mid-serving stalls the step).
    pad = [[1.0, 1.0, 0.0, 0.0]] * (-len(rows) % PARAM_ROW_MULTIPLE)
    params = _dev([[s["temperature"], s["topP"], s["minP"], uniform(s["seed"], r.num_generated)]
                   for s, r in zip(S, rows)] + pad, dev, torch.float32).T.contiguous()
    top_k = _dev([s["topK"] if s["topK"] > 0 else V for s in S], dev, torch.int32)
    return draw_sorted(sorted_keys, order, params[0], top_k, params[1], params[2], params[3], keys)  # tokens, logprobs


def _kernels_take(keys) -> bool:
    """The draw kernels serve rows whose logits (16-bit, or fp32) are on a CUDA device."""
    return keys is not None and keys.is_cuda


def warm_draw_kernels(vocab: int, dtype, device) -> None:
    """Compiles the draw kernels at startup on CUDA, so that the first sampled request does not wait for Triton to
    compile them: for the model's dtype (a decode graph's logits) and for fp32 (the logits of decode steps of a
    few rows, whose LM head writes fp32)."""
    if torch.device(device).type == "cuda":
        for dt in dict.fromkeys([dtype, torch.float32]):
            _draw_one(vocab, dt, device)
            if vocab > PREFIX:
                _draw_one(vocab, dt, device, rows=PREFIX_MIN_ROWS, top_k=50)  # the prefix form


def _draw_one(vocab: int, dtype, device, rows: int = 1, top_k: int = 0) -> torch.Tensor:
    s = {"temperature": 1.0, "topK": top_k, "topP": 0.9, "minP": 0.0, "seed": 0}
    return _draw_kernel(torch.zeros((rows, vocab), dtype=dtype, device=device), [SampleRow(s, 0, [], 0)] * rows)[0]


def modifies_logits(s: dict, num_generated: int) -> bool:
    """Logit bias, EOS suppression before min tokens, or penalties apply to this row's logits."""
    return bool(s["logitBias"]) or num_generated < s["minTokens"] or needs_history(s)


def chosen_logprob(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[tokens] per row, without writing the full log_softmax."""
    return logits.gather(1, tokens[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def greedy(logits: torch.Tensor) -> tuple:
    """Argmax token per row and its logprob, on the device."""
    tokens = logits.argmax(dim=-1)
    return tokens, chosen_logprob(logits, tokens)


def sample_on_device(logits: torch.Tensor, rows: list, k: int = 0, hist=None, keys=None) -> tuple:
    """logits [R, V] -> (token ids, chosen-token logprobs) as device tensors, plus the full log_softmax when k > 0.
    logits: fp32, or a decode graph's 16-bit logits, which are widened to fp32 here only where a row needs that
    (bias, min tokens or penalties, the torch form of a draw, greedy rows beside sampled ones); keys: the 16-bit
    logits that fp32 `logits` widen (16-bit `logits` are their own keys), which the torch form sorts faster. On CUDA
    the draw kernels take the rows whose logits nothing changes (sorting the keys, or fp32 logits that have none);
    when every row is drawn by the kernels, the chosen tokens' logprobs come from them too. hist: the runner's
    device token history (penalties read it; None: the rows' host lists). Which way a row is drawn depends on its
    own settings only. Nothing here waits for the device."""
    dev = logits.device
    own = logits.dtype != torch.float32  # a widening made here may be modified in place: the keys keep the raw values
    if own:
        keys, logits = logits, None
    wide = [logits]

    def raw() -> torch.Tensor:  # the unmodified logits in fp32 (the widening of 16-bit keys is exact)
        if wide[0] is None:
            wide[0] = keys.float()
        return wide[0]

    changed = [modifies_logits(r.sampling, r.num_generated) for r in rows]
    x = None  # the logits with bias, min tokens and penalties applied, when a row has any
    lse = None  # the raw logits' logsumexp, taken before this function's own widening is modified
    if any(changed):
        if own:
            x = keys.float()
            if k == 0:
                lse = torch.logsumexp(x, dim=-1)
        else:
            x = logits.clone()
        _apply_bias_and_min_tokens(x, rows)
        _apply_penalties(x, rows, hist)
    sampled = [i for i, r in enumerate(rows) if r.sampling["strategy"] == "sample"]
    by_kernel = set()
    kernel_keys = keys if keys is not None else logits  # fp32 logits are their own keys for the kernels
    if _kernels_take(kernel_keys):
        by_kernel = {i for i in sampled if not changed[i] and rows[i].sampling["typicalP"] >= 1}
    fast = [i for i in sampled if i in by_kernel]
    slow = [i for i in sampled if i not in by_kernel]
    chosen = None
    if len(sampled) < len(rows):  # (16-bit keys have the argmax of their exact widening)
        tokens = torch.argmax(x if x is not None else keys if own else logits, dim=-1)
    elif fast and slow:  # every row samples, some each way: each group fills its rows
        tokens = torch.empty(len(rows), dtype=torch.int64, device=dev)
    for group, kernel in ((fast, True), (slow, False)):
        if not group:
            continue
        whole = len(group) == len(rows)
        sub = [rows[i] for i in group]
        gi = None if whole else _dev(group, dev)
        if kernel:
            drawn, lp = _draw_kernel(kernel_keys if whole else kernel_keys.index_select(0, gi), sub)
            if whole:
                chosen = lp
        else:
            src = raw() if x is None else x
            sub_keys = keys if keys is not None and not any(changed[i] for i in group) else None
            if whole:
                drawn = _draw(src, sub, sub_keys)
            else:
                drawn = _draw(src.index_select(0, gi), sub, None if sub_keys is None else sub_keys.index_select(0, gi))
        if whole:
            tokens = drawn
        else:
            tokens.index_copy_(0, gi, drawn)
    if k > 0:  # 16-bit logits: one pass that reads them and writes fp32
        logprobs = torch.log_softmax(keys, dim=-1, dtype=torch.float32) if own else torch.log_softmax(logits, dim=-1)
        return tokens, logprobs.gather(1, tokens[:, None]).squeeze(1), logprobs
    if chosen is None:
        if lse is not None:
            chosen = keys.gather(1, tokens[:, None]).squeeze(1).float() - lse
        else:
            chosen = chosen_logprob(raw(), tokens)
    return tokens, chosen, None


def sample(logits: torch.Tensor, rows: list, hist=None) -> tuple:
    """logits [R, V] (fp32, or 16-bit as sample_on_device takes them) -> (token ids, chosen-token logprobs, top
    logprobs per row) as host lists."""
    k = max((r.sampling["numTopLogprobs"] for r in rows), default=0)
    tokens, chosen, logprobs = sample_on_device(logits, rows, k, hist)
    return tokens.tolist(), chosen.tolist(), top_logprobs(logprobs, [r.sampling["numTopLogprobs"] for r in rows])


def top_logprobs(logprobs, counts: list) -> list:
    """Row i's counts[i] most likely [token id, logprob] pairs of logprobs [R, V], as host lists (logprobs is not
    read when every count is 0)."""
    m = max(counts, default=0)
    if m == 0:
        return [[] for _ in counts]
    vals, ids = logprobs.topk(m, dim=-1)
    vals, ids = vals.tolist(), ids.tolist()
    return [[[ids[i][j], vals[i][j]] for j in range(n)] for i, n in enumerate(counts)]


def prompt_logprobs(logits: torch.Tensor, next_ids: list, num_top: int) -> list:
    """Logprob of each actual next prompt token (and top alternatives) from logits rows."""
    logprobs = torch.log_softmax(logits, dim=-1)
    ids = torch.tensor(next_ids, device=logits.device)
    chosen = logprobs.gather(1, ids[:, None]).squeeze(1).tolist()
    tops = top_logprobs(logprobs, [num_top] * len(next_ids))
    return [{"logprob": c, "top": t} for c, t in zip(chosen, tops)]
