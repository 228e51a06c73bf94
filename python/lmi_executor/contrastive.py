# Contrastive search (option.decoding_strategy=contrastive; HF's `penalty_alpha` + `top_k`) in the runner. When a
# step samples for a contrastive request, its top-k candidates come from the processed logits (logit bias, min
# tokens, penalties; no temperature), one look-ahead forward runs every candidate as the next token, and the pick is
# argmax (1 - alpha) * p(candidate) - alpha * max cosine(candidate's hidden state, each earlier position's). Hidden
# states are the final-normed last-layer outputs (HF's hidden_states[-1]); the runner keeps them per request, from
# the steps that compute its positions, in a pool allocated once (HiddenPool: the memory profile reserves it, and the
# engine admits contrastive requests only while their positions fit, CacheProfile.contrastivePositions). The
# look-ahead writes the candidates' K/V into the executor's own scratch blocks past the engine's (a candidate's
# block starts as a copy of the request's partial block), never into an engine block; the chosen token is computed
# again by the next step like any generated token. Contrastive steps run eagerly and pick on the host before the
# launch returns, after every earlier step has finished (ModelRunner.waits_for_earlier_steps). Same function as
# src/executor/cpu/contrastive.ts.
import torch

from .attention import AttentionMetadata
from .sampler import SampleRow, _apply_bias_and_min_tokens, _apply_penalties, chosen_logprob, top_logprobs
from .transfer import to_device

SCRATCH_BLOCKS = 32  # KV blocks past the engine's for the look-ahead: also the most candidates a request gets
DEFAULT_TOP_K = 4  # HF's and LMI's default when top_k is 0
HIDDEN_CHUNK = 256  # positions by which a request's share of the hidden-state pool grows


def is_contrastive(st) -> bool:
    return st.sampling["strategy"] == "contrastive"


def num_candidates(sampling: dict) -> int:
    """top_k (DEFAULT_TOP_K when 0), at most SCRATCH_BLOCKS, as the CPU executor caps it."""
    k = sampling["topK"] if sampling["topK"] > 0 else DEFAULT_TOP_K
    return max(1, min(k, SCRATCH_BLOCKS))


def pool_positions(max_num_batched_tokens: int, max_model_len: int) -> int:
    """Positions of hidden states the executor keeps at once across contrastive requests: two steps' worth of
    tokens, and never less than one request of the model's full length (so any request fits alone), in whole
    chunks. Reported to the engine as CacheProfile.contrastivePositions."""
    n = max(2 * max_num_batched_tokens, max_model_len)
    return -(-n // HIDDEN_CHUNK) * HIDDEN_CHUNK


class HiddenPool:
    """Device memory for contrastive requests' kept hidden states: pool_positions() rows of fp32 unit vectors,
    allocated once and handed out by HIDDEN_CHUNK rows, so that a contrastive request never allocates while
    serving (and cannot run the device out of memory mid-step). A request's positions map to pool rows through
    its chunk list (RequestState.hidden_chunks; hidden_index: their row numbers, on the device). The engine's
    scheduler reserves ceil((prompt + max tokens) / chunk) chunks per admitted contrastive request against the
    same capacity, so grow() finds free chunks; it raises if not (an engine/executor mismatch, never a user error)."""

    def __init__(self, positions: int, hidden_size: int, device):
        self.positions, self.hidden_size, self.device = positions, hidden_size, device
        self.data = None  # [positions, hidden_size] fp32, on first use (CPU tests); CUDA workers call allocate()
        self.free = list(range(positions // HIDDEN_CHUNK - 1, -1, -1))

    def allocate(self) -> None:
        if self.data is None:
            self.data = torch.zeros((self.positions, self.hidden_size), dtype=torch.float32, device=self.device)

    def grow(self, st, end: int) -> None:
        """Gives st chunks for positions [0, end)."""
        need = -(-end // HIDDEN_CHUNK) - len(st.hidden_chunks)
        if need <= 0:
            return
        if need > len(self.free):
            raise RuntimeError(f"{st.req_id}: contrastive search's hidden-state pool ({self.positions} positions) is "
                               f"full: the engine admitted more contrastive positions than the executor reported")
        self.allocate()
        st.hidden_chunks.extend(self.free.pop() for _ in range(need))
        rows = [c * HIDDEN_CHUNK + i for c in st.hidden_chunks for i in range(HIDDEN_CHUNK)]
        st.hidden_index = to_device(rows, self.device, torch.int64)

    def release(self, st) -> None:
        """Returns st's chunks (the request finished, was preempted, or resumed from the start)."""
        self.free.extend(st.hidden_chunks)
        st.hidden_chunks = []
        st.hidden_index = None
        st.hidden_len = 0

    def kept(self, st) -> torch.Tensor:
        """The unit hidden states of st's positions 0 .. hidden_len - 1, [hidden_len, H] (a gathered copy)."""
        return self.data.index_select(0, st.hidden_index[: st.hidden_len])


def keep_hidden(pool: HiddenPool, st, start: int, h: torch.Tensor) -> None:
    """Stores the final hidden states h [n, H] of positions start .. start + n - 1 as unit vectors (a cosine is then
    a dot product); positions from start on replace what was kept for them."""
    h = torch.nn.functional.normalize(h.float(), dim=-1)
    end = start + h.shape[0]
    pool.grow(st, end)
    pool.data.index_copy_(0, st.hidden_index[start:end], h)
    st.hidden_len = end


def pick(runner, items: list) -> list:
    """items: (request state, fp32 logits [V] of its last known position), every token of each request known on the
    host and its hidden states kept through that position. Returns (token, logprob, top alternatives) per item: the
    logprob and alternatives are of the raw logits, as for every other strategy."""
    rows = [SampleRow(st.sampling, len(st.token_ids) - st.prompt_len, st.token_ids, st.prompt_len) for st, _ in items]
    raw = torch.stack([logits for _, logits in items])
    x = raw.clone()
    _apply_bias_and_min_tokens(x, rows)
    _apply_penalties(x, rows)  # from the host token lists
    ks = [num_candidates(st.sampling) for st, _ in items]
    # A stable sort, not topk: among equal probabilities the lower token id comes first, as the CPU executor's.
    top_p, top_i = torch.softmax(x, dim=-1).sort(dim=-1, descending=True, stable=True)
    top_p, top_i = top_p[:, : max(ks)], top_i[:, : max(ks)]
    cand_ids = top_i.tolist()
    picks = []  # one device scalar per item
    group, used = [], 0
    for i, (st, _) in enumerate(items):
        if used + ks[i] > SCRATCH_BLOCKS:
            picks.extend(_look_ahead(runner, group))
            group, used = [], 0
        group.append((st, cand_ids[i][: ks[i]], top_i[i, : ks[i]], top_p[i, : ks[i]]))
        used += ks[i]
    picks.extend(_look_ahead(runner, group))
    tokens = torch.stack(picks)
    chosen = chosen_logprob(raw, tokens).tolist()
    counts = [st.sampling["numTopLogprobs"] for st, _ in items]
    tops = top_logprobs(torch.log_softmax(raw, dim=-1) if any(counts) else None, counts)
    return list(zip(tokens.tolist(), chosen, tops))


def copy_block_prefix(kv_caches: list, src: int, dst: list, n: int) -> None:
    """Copies the first n token slots of block src into each block of dst, in every layer's K and V cache (an fp8
    cache through its bytes: fp8 tensors have no index kernels everywhere)."""
    dst_t = to_device(dst, kv_caches[0][0].device, torch.int64)
    for cache in (c for pair in kv_caches for c in pair):
        raw = cache.view(torch.uint8) if cache.element_size() == 1 else cache
        raw[dst_t, :n] = raw[src][None, :n]


def _look_ahead(runner, group: list) -> list:
    """One forward of every candidate of `group` ((state, candidate ids on the host, the same on the device, their
    probabilities on the device)) as its request's next token, in scratch blocks; returns each request's pick as a
    device scalar (a token id)."""
    dev, bs = runner.device, runner.block_size
    ids, positions, slots, tables, seq_lens = [], [], [], [], []
    scratch = iter(runner.contrastive_blocks)
    width = runner.max_blocks
    for st, cand, _, _ in group:
        pos = len(st.token_ids)
        bi, off = divmod(pos, bs)
        blocks = [next(scratch) for _ in cand]
        if off:  # the request's partial block, copied into each candidate's block
            copy_block_prefix(runner.kv_caches, st.block_ids[bi], blocks, off)
        for tok, b in zip(cand, blocks):
            ids.append(tok)
            positions.append(pos)
            slots.append(b * bs + off)
            row = st.block_ids[:bi] + [b]
            tables.append(row + [b] * (width - len(row)))  # full-width rows, as every other step's
            seq_lens.append(pos + 1)
    R = len(ids)
    ids_t, pos_t, slots_t, seq_t = to_device([ids, positions, slots, seq_lens], dev, torch.int64)
    meta = AttentionMetadata(
        slot_mapping=slots_t,
        query_start_loc=torch.arange(R + 1, dtype=torch.int32, device=dev),
        seq_lens=seq_t.int(),
        block_tables=to_device(tables, dev, torch.int32),
        max_query_len=1,
        max_seq_len=max(seq_lens),
        query_start_loc_cpu=list(range(R + 1)),
        seq_lens_cpu=seq_lens,
    )
    every = torch.arange(R, device=dev)
    _, hidden = runner.model.forward(ids_t, pos_t, meta, runner.kv_caches, every[:1], hidden_rows=every)
    hidden = torch.nn.functional.normalize(hidden, dim=-1)
    picks, r = [], 0
    for st, cand, cand_dev, p in group:
        k = len(cand)
        h = hidden[r : r + k]
        r += k
        alpha = st.sampling["penaltyAlpha"]
        if st.hidden_len:
            degeneration = (h @ runner.hidden_pool.kept(st).T).max(dim=1).values
        else:
            degeneration = torch.zeros(k, device=dev)
        picks.append(cand_dev[torch.argmax((1 - alpha) * p - alpha * degeneration)])
    return picks
