# One step: turns the engine's plan into flat device inputs (token ids, positions, slot mapping, paged
# block tables), runs the model (eagerly, or by replaying a captured CUDA graph for pure-decode batches and
# for several tokens of one sequence: prefill_graphs.py), samples, and records the sampled tokens in each
# request's state.
# A step is launched and finished in two parts: launch() queues the GPU work and returns a StepHandle;
# finish() waits for that step's sampled tokens and builds the reply. Between the two the next step may
# be launched (the engine keeps up to two steps in flight), so the GPU never waits for the host.
# Invariants: a request samples only when this step reaches the end of its tokens, counting tokens still
# pending (sampled by a launched, unfinished step); a pending token never reaches the host before the next
# step needs it: that step reads it from `last_token`, the device-resident latest sample per block-table
# row, which every step writes in stream order; penalties read every earlier token from `hist`, the device
# token history written the same way. Positions and slots are derived on the device from the persistent block
# table, so host work is O(requests), not O(tokens).
import faulthandler
import gc
import json
import os
import time

import torch

from . import contrastive
from .attention import AttentionMetadata, last_rows_metadata
from .graph_capture import bucket_for, decode_graph_sizes
from .requests import BlockTable, RequestStore
from .sampler import SampleRow, greedy, modifies_logits, needs_history, prompt_logprobs, sample, sample_on_device
from .transfer import to_device

# Pinned host buffers for the sampled tokens of launched steps; more than the engine ever keeps in flight.
RING_STEPS = 4
MAX_TOP = 20  # logprob alternatives a pipelined step copies out with its samples (the engine's MAX_TOP_N_TOKENS)
HISTORY_DTYPE = torch.int32  # ModelRunner.hist's token ids
# KV blocks the executor keeps past the engine's: the one padded graph rows write to, then contrastive search's.
EXECUTOR_BLOCKS = 1 + contrastive.SCRATCH_BLOCKS


def history_shape(max_num_seqs: int, max_model_len: int) -> tuple:
    """ModelRunner.hist's shape: a row per sequence slot (the scratch row too), a column per position."""
    return (max_num_seqs + 1, max_model_len + 1)


def is_fast_sampling(s: dict) -> bool:
    """Settings whose sampling runs wholly on the device from counts the host knows (greedy or seeded
    sampling with temperature / top-k / top-p / min-p / typical-p, logit bias, min tokens, penalties, which
    read the device's token history, and up to MAX_TOP logprob alternatives, which go out with the samples):
    such steps can be launched while earlier ones are still running. More alternatives are read back on the
    host, and contrastive search picks on the host: those steps wait for the earlier ones. (Prompt logprobs need
    no earlier sample: a step that makes them launches ahead too, its launch waiting for the GPU while it reads
    them.)"""
    return s["numTopLogprobs"] <= MAX_TOP and s["strategy"] != "contrastive"


def _num_generated(st) -> int:
    """Tokens the request has generated, counting samples still pending."""
    return len(st.token_ids) + st.num_pending - st.prompt_len


def _is_plain_greedy(st) -> bool:
    """Greedy with nothing that edits logits or asks for alternatives (then minTokens no longer matters)."""
    s = st.sampling
    return s["strategy"] == "greedy" and s["numTopLogprobs"] == 0 and not modifies_logits(s, _num_generated(st))


class _GcClock:
    """With the step log: the time Python's cyclic collector held the process since the previous step's launch,
    and how many of those passes were full (generation 2) ones. One gc.callbacks entry for the process keeps
    running totals (all threads); each runner's clock reports the change since its previous take()."""

    _ms, _full, _t0, _registered = 0.0, 0, None, False

    @classmethod
    def _on_gc(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls._t0 = time.perf_counter()
        elif cls._t0 is not None:
            cls._ms += (time.perf_counter() - cls._t0) * 1e3
            cls._full += info.get("generation") == 2
            cls._t0 = None

    def __init__(self):
        if not _GcClock._registered:
            gc.callbacks.append(_GcClock._on_gc)
            _GcClock._registered = True
        self._seen = (_GcClock._ms, _GcClock._full)

    def take(self) -> dict:
        now = (_GcClock._ms, _GcClock._full)
        out = {"gcMs": round(now[0] - self._seen[0], 3), "gcFull": now[1] - self._seen[1]}
        self._seen = now
        return out


class StepHandle:
    """A launched step. `out` is complete once finish() ran; until then its sampled tokens and logprobs
    sit in `host` (pinned, filled by a copy that `event` marks done) as rows of `width` values: tokens,
    chosen-token logprobs, then with top_k > 0 the alternatives' ids (top_k rows) and logprobs (top_k rows),
    the step's b sampling requests in the first b columns."""

    __slots__ = ("out", "states", "host", "event", "width", "top_k", "done", "timing")

    def __init__(self, out: dict, states=None, host=None, event=None, width=0, top_k=0):
        self.out, self.states, self.host, self.event, self.width = out, states, host, event, width
        self.top_k = top_k
        self.done = states is None
        self.timing = None  # (facts dict, start event, end event) with LMI_STEP_LOG

    def wait(self) -> None:
        """Blocks until the step's sampled tokens are on the host (releases the GIL while waiting)."""
        if self.event is not None:
            self.event.synchronize()


class ModelRunner:
    def __init__(self, model, kv_caches, block_size: int, max_num_seqs: int, max_model_len: int, device,
                 scratch_block: int = 0, contrastive_blocks: list = (), hidden_positions: int = 0):
        self.model, self.kv_caches, self.block_size, self.device = model, kv_caches, block_size, device
        # KV blocks past the engine's for contrastive search's look-ahead (contrastive.SCRATCH_BLOCKS of them).
        self.contrastive_blocks = list(contrastive_blocks)
        self.max_model_len = max_model_len
        self.max_blocks = (max_model_len + block_size - 1) // block_size
        # Contrastive requests' kept hidden states (hidden_positions: contrastive.pool_positions, what the engine
        # was told; 0 = one request of the model's length, for runners made outside a worker).
        self.hidden_pool = contrastive.HiddenPool(hidden_positions or contrastive.pool_positions(0, max_model_len),
                                                  model.cfg.hidden_size, device)
        self.store = RequestStore(BlockTable(max_num_seqs, self.max_blocks, device, scratch_block),
                                  on_drop=self.hidden_pool.release)
        # Token history on the device, for requests with penalties (sampler.needs_history): row r holds request r's
        # prompt and every sampled token at its position, each sample written in stream order by the step that
        # draws it, so a step launched before the previous one finished still sees every earlier token.
        # Allocated on the first such request; writes of known tokens wait in _hist_pending for one copy a step.
        self._max_num_seqs = max_num_seqs
        self.hist = None
        self._hist_pending = ([], [], [])
        # Eager steps compute the LM head for a bucket of rows (the decode graphs' sizes), the sampled rows padded
        # with copies of the last one: a row count that grows step by step (a burst's prefill steps) otherwise
        # made every other eager launch wait for the GPU inside the LM head's matmul.
        self._lm_buckets = decode_graph_sizes(max_num_seqs)
        # Prompt steps compute the last layer's attention, o projection and MLP for the sampled rows only (each
        # sequence's last new token; attention.last_rows_metadata). LMI_TRIM_LAST_LAYER=0: for every row.
        self.trim_last_layer = os.environ.get("LMI_TRIM_LAST_LAYER", "1") != "0"
        self.graphs = None  # set by cuda_graphs.DecodeGraphs when enabled
        self.prefill_graphs = None  # set by prefill_graphs.PrefillGraphs when enabled
        # The latest sampled token of the request in each block-table row (the scratch row included).
        self.last_token = torch.zeros(max_num_seqs + 1, dtype=torch.int64, device=device)
        self._cuda = cuda = torch.device(device).type == "cuda"
        if cuda:  # greedy sampling of eager steps (decode graphs call it inside the graph)
            from .kernels.greedy import greedy_into

            self._greedy_into = greedy_into
        # Per launched step: b sampled token ids, b logprobs, then up to MAX_TOP rows of alternative ids and of their
        # logprobs (float64 holds every token id exactly).
        self._ring = [torch.zeros((2 + 2 * MAX_TOP) * max_num_seqs, dtype=torch.float64, pin_memory=cuda)
                      for _ in range(RING_STEPS)]
        self._ring_next = 0
        self._unfinished = 0  # launched steps whose ring buffer finish() has not read yet
        # LMI_STEP_LOG=path: one JSON line per step: tokens, requests, rank, host launch ms and the wall time at its
        # end (t), GPU span (first to last operation of the step), GPU idle between the previous step's end and this
        # one's start, the wall time the host saw it done (doneAt); served, the message loop's wait for the plan
        # and rank 0's relay of it (note_host_wait).
        log = os.environ.get("LMI_STEP_LOG")
        self._step_log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 - lives as long as the runner
        # With the step log, LMI_SLOW_LAUNCH_DUMP_MS=n prints every thread's Python stack to stderr when a launch
        # takes longer than n ms (a launch should never wait for the GPU: this shows what it waited in).
        self._dump_after_s = float(os.environ.get("LMI_SLOW_LAUNCH_DUMP_MS", "0")) / 1e3
        self._prev_end = None
        self._gc = _GcClock() if self._step_log is not None else None
        self._host_wait = None  # (plan wait, relay) seconds of the next launch, from note_host_wait
        self.rank = 0  # set by the worker under tensor parallelism

    # ---- the two halves of a step ------------------------------------------------------------------------

    def execute(self, plan: dict) -> dict:
        """Launch and finish one step (the synchronous path: tests, benchmarks, tensor-parallel ranks)."""
        return self.finish(self.launch(plan))

    def waits_for_earlier_steps(self, plan: dict) -> bool:
        """True when this plan samples for a request whose settings are not is_fast_sampling (more logprob
        alternatives than MAX_TOP, read back on the host; contrastive search, which picks on the host): then earlier
        steps must finish before it is launched."""
        for d in plan["scheduledNewReqs"]:
            if not is_fast_sampling(d["sampling"]):
                return True
        running = self.store.running
        for d in plan["scheduledCachedReqs"]:
            st = running.get(d["reqId"])
            if st is None or not is_fast_sampling(st.sampling):
                return True
        return False

    def note_host_wait(self, wait_s: float, relay_s: float) -> None:
        """The message loop's times before the next launch, for the step log: how long it waited for the plan (rank
        0: for Node's message; other ranks: for rank 0's relay) and how long rank 0 took to relay it to the others."""
        if self._step_log is not None:
            self._host_wait = (wait_s, relay_s)

    def launch(self, plan: dict) -> StepHandle:
        if self._step_log is None:
            return self._launch(plan)
        t0 = time.perf_counter()
        start = torch.cuda.Event(enable_timing=True) if self._cuda else None
        if self._cuda:
            start.record()
        if self._dump_after_s:  # where a slow launch waits: every thread's stack, once, past the threshold
            faulthandler.dump_traceback_later(self._dump_after_s)
        h = self._launch(plan)
        if self._dump_after_s:
            faulthandler.cancel_dump_traceback_later()
        end = None
        if self._cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
        sched = plan["numScheduledTokens"]
        facts = {"step": plan["stepId"], "tokens": sum(sched.values()), "reqs": len(sched),
                 "decode": all(n == 1 for n in sched.values()), "launchMs": (time.perf_counter() - t0) * 1e3,
                 "t": time.time(), "rank": self.rank, **self._gc.take()}
        if self._host_wait is not None:
            facts["planWaitMs"], facts["relayMs"] = self._host_wait[0] * 1e3, self._host_wait[1] * 1e3
            self._host_wait = None
        h.timing = (facts, start, end, self._prev_end)
        self._prev_end = end
        return h

    def _launch(self, plan: dict) -> StepHandle:
        store = self.store
        for rid in plan["finishedReqIds"]:
            store.finish(rid)
        for rid in plan["preemptedReqIds"]:
            store.preempt(rid)
        sched = plan["numScheduledTokens"]
        batch = []
        for d in plan["scheduledNewReqs"]:
            st = store.add_new(d)
            self._hist_known(st)
            batch.append((st, d["numComputedTokens"], sched.get(st.req_id, 0)))
        for d in plan["scheduledCachedReqs"]:
            st = store.update_cached(d)
            if d.get("resumedFromPreemption"):
                self._hist_known(st)
            batch.append((st, d["numComputedTokens"], sched.get(st.req_id, 0)))
        store.bt.flush()
        self._hist_flush()
        batch = [b for b in batch if b[2] > 0]
        out = {"stepId": plan["stepId"], "sampledTokenIds": {}, "logprobs": {}, "promptLogprobs": {}}
        if not batch:
            return StepHandle(out)
        return self._run(batch, out)

    def _hist_known(self, st) -> None:
        """Queues the tokens the host knows of a request that needs its history (a new one's prompt, a resumed
        one's every token) for the device history."""
        if not needs_history(st.sampling):
            return
        if self.hist is None:
            self.hist = torch.zeros(history_shape(self._max_num_seqs, self.max_model_len), dtype=HISTORY_DTYPE,
                                    device=self.device)
        rows, cols, vals = self._hist_pending
        rows.extend([st.row] * len(st.token_ids))
        cols.extend(range(len(st.token_ids)))
        vals.extend(st.token_ids)

    def _hist_flush(self) -> None:
        rows, cols, vals = self._hist_pending
        if rows:
            idx = to_device([rows, cols, vals], self.device, torch.int64)  # one copy (non-blocking)
            self.hist.index_put_((idx[0], idx[1]), idx[2].to(HISTORY_DTYPE))
            self._hist_pending = ([], [], [])

    def _hist_sampled(self, states, rows, tok) -> None:
        """Writes this step's samples of requests that need their history at their positions (device tokens)."""
        pick = [i for i, st in enumerate(states) if needs_history(st.sampling)]
        if not pick or self.hist is None:
            return
        at = to_device([[states[i].row for i in pick], [rows[i].prompt_len + rows[i].num_generated for i in pick],
                        pick], self.device, torch.int64)
        self.hist.index_put_((at[0], at[1]), tok.index_select(0, at[2]).to(HISTORY_DTYPE))

    def finish(self, h: StepHandle) -> dict:
        """Waits for a launched step and records its sampled tokens. Steps finish in launch order."""
        if h.timing is not None:
            self._log_step(h)
        if h.done:
            return h.out
        h.wait()
        self._unfinished -= 1
        n, k = h.width, h.top_k
        flat = h.host[: (2 + 2 * k) * n].tolist()
        rows = [flat[r * n : (r + 1) * n] for r in range(2 + 2 * k)]
        for i, st in enumerate(h.states):
            m = st.sampling["numTopLogprobs"]
            top = [[int(rows[2 + j][i]), rows[2 + k + j][i]] for j in range(m)] if m else []
            self._record(h.out, st, int(rows[0][i]), rows[1][i], top)
        h.done = True
        return h.out

    @staticmethod
    def _record(out: dict, st, token: int, logprob: float, top: list) -> None:
        """A pending sample arrives on the host: it joins the request's tokens and the step's reply."""
        st.token_ids.append(token)
        st.num_pending -= 1
        out["sampledTokenIds"][st.req_id] = [token]
        out["logprobs"][st.req_id] = [{"logprob": logprob, "top": top}]

    def _log_step(self, h: StepHandle) -> None:
        facts, start, end, prev_end = h.timing
        h.timing = None
        if end is not None:
            end.synchronize()
            facts["gpuSpanMs"] = start.elapsed_time(end)
            if prev_end is not None:
                facts["idleBeforeMs"] = prev_end.elapsed_time(start)
        facts["doneAt"] = time.time()  # when the host (the finisher, while serving) saw the step done
        self._step_log.write(json.dumps(facts) + "\n")

    # ---- launch internals ----------------------------------------------------------------------------------

    def _run(self, batch: list, out: dict) -> StepHandle:
        ids, q_lens, starts, seq_lens, rows = [], [], [], [], []
        logits_rows, sample_rows, sample_states, plp = [], [], [], []
        pend_tok, pend_rows = [], []  # step tokens whose id is a pending sample: read from last_token[row]
        hidden_rows, keep = [], []  # contrastive requests' rows, whose final hidden states are kept
        t = 0
        for st, nc, n in batch:
            known = len(st.token_ids)
            end = known + st.num_pending
            if nc + n > end:
                raise ValueError(f"{st.req_id}: scheduled {nc}+{n} tokens but only {end} are known or pending")
            if nc + n > known:
                # Only the latest sample can be pending in a step: it is the one token last_token holds.
                if n != 1 or nc != end - 1:
                    raise ValueError(f"{st.req_id}: scheduled {nc}+{n} tokens over {st.num_pending} pending samples")
                pend_tok.append(t)
                pend_rows.append(st.row)
                ids.append(0)
            else:
                ids.extend(st.token_ids[nc : nc + n])
            q_lens.append(n)
            starts.append(nc)
            seq_lens.append(nc + n)
            rows.append(st.row)
            if contrastive.is_contrastive(st):
                # Every position's hidden state is kept by the steps that compute it (the engine's scheduler gives
                # contrastive requests no prefix-cache hit), so they reach this step's first position.
                if nc != st.hidden_len:
                    raise ValueError(f"{st.req_id}: contrastive search needs the hidden state of every position, but "
                                     f"the step starts at position {nc} and they reach {st.hidden_len} (a prefix-cache "
                                     f"hit?)")
                keep.append((st, nc, len(hidden_rows), n))
                hidden_rows.extend(range(t, t + n))
            if st.sampling["promptLogprobs"] and nc < st.prompt_len - 1:
                # Rows nc..e-1 score prompt tokens nc+1..e (chunk boundaries included: the prompt is known).
                e = min(nc + n, st.prompt_len - 1)
                plp.append((st, nc, len(logits_rows), e - nc))
                logits_rows.extend(range(t, t + e - nc))
            if nc + n == end:
                sample_states.append(st)
                sample_rows.append(len(logits_rows))
                logits_rows.append(t + n - 1)
            t += n
        pending = (pend_tok, pend_rows) if pend_tok else None
        if keep:
            if pending is not None:
                raise RuntimeError("a contrastive step was launched before earlier steps finished")
            return self._run_contrastive(out, (ids, q_lens, starts, seq_lens, rows), logits_rows, plp, sample_rows,
                                         sample_states, hidden_rows, keep)
        # One sequence computing several tokens (a prompt or a prompt chunk) without prompt logprobs: replay
        # a prefill graph when a bucket holds it with little padding. Its logits are those of the last token,
        # the one row logits_rows names (or none, for a chunk short of its prompt's end).
        prefill_size = 0
        if self.prefill_graphs is not None and len(batch) == 1 and q_lens[0] > 1 and not plp and pending is None:
            prefill_size = self.prefill_graphs.size_for(q_lens[0])
        if not logits_rows:
            if prefill_size:
                self.prefill_graphs.run(ids, starts[0], rows[0], prefill_size)
            else:
                self._forward_eager(ids, q_lens, starts, seq_lens, rows, [], pending)
            return StepHandle(out)
        is_decode = all(n == 1 for n in q_lens) and not plp
        graph_greedy = None  # [2, rows] token ids and logprobs, when the captured graph sampled greedily already
        if is_decode and self.graphs is not None and self.graphs.can_run(len(batch)):
            logits, graph_greedy = self.graphs.run(ids, starts, seq_lens, rows, pending)
            if len(logits_rows) != len(batch):
                # A one-token prompt chunk short of its prompt's end samples nothing: keep the rows that
                # do, so logits (and greedy) line up with logits_rows as the eager path returns them.
                keep_rows = to_device(logits_rows, self.device, torch.int64)
                logits, graph_greedy = logits.index_select(0, keep_rows), graph_greedy.index_select(1, keep_rows)
                # (the graph wrote the dropped rows' argmax into last_token: those rows sample nothing, and a
                # row's last_token entry is only read for a token that a later sample replaced)
        elif prefill_size:
            logits = self.prefill_graphs.run(ids, starts[0], rows[0], prefill_size)
        else:
            logits = self._forward_eager(ids, q_lens, starts, seq_lens, rows, logits_rows, pending)
        handle = self._sample(logits, sample_rows, sample_states, out, graph_greedy)
        self._prompt_logprobs_out(out, logits, plp)
        return handle

    @staticmethod
    def _prompt_logprobs_out(out: dict, logits, plp: list) -> None:
        """The step's prompt logprobs: plp holds (request, first prompt position, first logits row, row count)."""
        for st, nc, first, count in plp:
            entries = prompt_logprobs(
                logits[first : first + count], st.token_ids[nc + 1 : nc + 1 + count], st.sampling["numTopLogprobs"]
            )
            out["promptLogprobs"][st.req_id] = ([None] if nc == 0 else []) + entries

    def _run_contrastive(self, out: dict, fwd: tuple, logits_rows: list, plp: list, sample_rows: list,
                         sample_states: list, hidden_rows: list, keep: list) -> StepHandle:
        """The rest of a step with contrastive requests (fwd: _forward_eager's first five arguments): eager, every
        row's last layer, the contrastive requests' hidden states kept (keep: request, first position, first hidden
        row, count), and their picks (contrastive.pick) recorded before this returns; the other requests sample as
        in any step."""
        logits, hidden = self._forward_eager(*fwd, logits_rows, hidden_rows=hidden_rows)
        for st, nc, first, n in keep:
            contrastive.keep_hidden(self.hidden_pool, st, nc, hidden[first : first + n])
        self._prompt_logprobs_out(out, logits, plp)
        picked = [(st, r) for st, r in zip(sample_states, sample_rows) if contrastive.is_contrastive(st)]
        others = [(st, r) for st, r in zip(sample_states, sample_rows) if not contrastive.is_contrastive(st)]
        handle = self._sample(logits, [r for _, r in others], [st for st, _ in others], out) if others \
            else StepHandle(out)
        if picked:
            chosen = contrastive.pick(self, [(st, logits[r].float()) for st, r in picked])
            toks = to_device([tok for tok, _, _ in chosen], self.device, torch.int64)
            self.last_token.index_copy_(0, to_device([st.row for st, _ in picked], self.device, torch.int64), toks)
            for (st, _), (tok, lp, top) in zip(picked, chosen):
                st.num_pending += 1
                self._record(out, st, tok, lp, top)
        return handle

    def _sample(self, logits, sample_rows, states, out, graph_greedy=None) -> StepHandle:
        if not states:
            return StepHandle(out)
        plain = all(_is_plain_greedy(st) for st in states)
        for st in states:
            st.num_pending += 1
        if plain and graph_greedy is not None:
            # A decode graph sampled every row (one per state, in order) and wrote last_token itself.
            return self._finish_later(out, states, graph_greedy)
        if len(sample_rows) == logits.shape[0]:
            sel = logits
        else:  # (a Python list as the index would be copied to the device from pageable memory: a wait)
            sel = logits.index_select(0, to_device(sample_rows, self.device, torch.int64))
        rows_dev = to_device([st.row for st in states], self.device, torch.int64)
        if plain:
            # The common serving case: argmax and the chosen token's logprob, without copying the logits.
            if self._cuda:
                pair = torch.empty((2, len(states)), dtype=torch.float64, device=self.device)
                self._greedy_into(sel, pair, rows=rows_dev, last_token=self.last_token)
                return self._finish_later(out, states, pair)
            return self._finish_sampled(out, states, rows_dev, *greedy(sel))
        # A decode graph's logits stay in the model's dtype: the sampler widens them (exactly) only where a row
        # needs fp32, and uses the 16-bit values as sort keys.
        # Only counts are needed from the host (the n of each seeded draw, min tokens): pending ones count,
        # less the one this step draws.
        rows = [SampleRow(st.sampling, _num_generated(st) - 1, st.token_ids, st.prompt_len, st.row) for st in states]
        if all(is_fast_sampling(st.sampling) for st in states):
            k = max(st.sampling["numTopLogprobs"] for st in states)
            tok, lp, logprobs = sample_on_device(sel, rows, k, hist=self.hist)
            self._hist_sampled(states, rows, tok)
            return self._finish_sampled(out, states, rows_dev, tok, lp, logprobs.topk(k, dim=-1) if k else None)
        tokens, chosen, tops = sample(sel, rows, hist=self.hist)
        tok = to_device(tokens, self.device, torch.int64)
        self._hist_sampled(states, rows, tok)
        self.last_token.index_copy_(0, rows_dev, tok)
        for st, tok, lp, top in zip(states, tokens, chosen, tops):
            self._record(out, st, tok, lp, top)
        return StepHandle(out)

    def _finish_sampled(self, out, states, rows_dev, tok, lp, alternatives=None) -> StepHandle:
        """Device tokens and logprobs of a step sampled outside a greedy kernel: last_token, then the rows to copy
        out; alternatives: (logprobs, ids) [R, k] of the top k, which go out with them."""
        self.last_token.index_copy_(0, rows_dev, tok)
        if alternatives is None:
            return self._finish_later(out, states, torch.stack([tok.double(), lp.double()]))
        vals, ids = alternatives
        packed = torch.cat([tok.double()[None], lp.double()[None], ids.double().T, vals.double().T])
        return self._finish_later(out, states, packed, ids.shape[1])

    def _finish_later(self, out, states, pair, top_k: int = 0) -> StepHandle:
        """pair [2 + 2 top_k, n] fp64 on the device (n >= len(states)): token ids in row 0, logprobs in row 1,
        then top_k rows of alternative ids and top_k of their logprobs, this step's samples in the first columns.
        The tokens stay on the device (the next step reads them from last_token, already written); one contiguous
        copy takes the rows to a pinned ring buffer, marked by an event that finish() waits for."""
        if self._unfinished >= RING_STEPS:
            raise RuntimeError(f"more than {RING_STEPS} launched steps are unfinished")
        self._unfinished += 1
        host = self._ring[self._ring_next]
        self._ring_next = (self._ring_next + 1) % RING_STEPS
        n = pair.shape[1]
        host[: pair.numel()].copy_(pair.reshape(-1), non_blocking=True)  # one copy out
        event = None
        if pair.is_cuda:
            event = torch.cuda.Event()
            event.record()
        return StepHandle(out, states, host, event, n, top_k)

    def _forward_eager(self, ids, q_lens, starts, seq_lens, rows, logits_rows, pending=None, hidden_rows=None):
        """Logits of logits_rows (fp32); with hidden_rows (contrastive search), (logits, their final hidden states),
        every row's last layer computed."""
        dev, bs = self.device, self.block_size
        B = len(q_lens)
        q_len_t, start_t, seq_t, row_t = to_device([q_lens, starts, seq_lens, rows], dev, torch.int64)
        T = len(ids)
        qsl_cpu = [0]
        for n in q_lens:
            qsl_cpu.append(qsl_cpu[-1] + n)
        qsl = torch.zeros(B + 1, dtype=torch.int64, device=dev)
        qsl[1:] = torch.cumsum(q_len_t, 0)
        max_seq = max(seq_lens)
        nb = (max_seq + bs - 1) // bs
        tables = self.store.bt.table[row_t]  # [B, max_blocks]: full rows, as the decode graphs' launches read them
        block_tables = tables[:, :nb]
        req_of_tok = torch.repeat_interleave(torch.arange(B, device=dev), q_len_t, output_size=T)
        positions = torch.arange(T, device=dev) - qsl[req_of_tok] + start_t[req_of_tok]
        slots = block_tables[req_of_tok, positions // bs].long() * bs + positions % bs
        meta = AttentionMetadata(
            slot_mapping=slots,
            query_start_loc=qsl.int(),
            seq_lens=seq_t.int(),
            block_tables=block_tables,
            max_query_len=max(q_lens),
            max_seq_len=max_seq,
            query_start_loc_cpu=qsl_cpu,
            seq_lens_cpu=seq_lens,
        )
        input_ids = to_device(ids, dev, torch.int64)
        if pending is not None:
            tok_idx, row_idx = to_device(list(pending), dev, torch.int64)
            input_ids.index_copy_(0, tok_idx, self.last_token.index_select(0, row_idx))
        n = len(logits_rows)
        size = (bucket_for(self._lm_buckets, n) or n) if n else 0
        padded = logits_rows + [logits_rows[-1]] * (size - n) if size > n else logits_rows
        li = to_device(padded, dev, torch.int64)
        if hidden_rows is not None:
            logits, hidden = self.model.forward(input_ids, positions, meta, self.kv_caches, li,
                                                hidden_rows=to_device(hidden_rows, dev, torch.int64))
            return (logits[:n] if size > n else logits), hidden
        logits_meta = None
        if self.trim_last_layer and n:
            logits_meta = last_rows_metadata(q_lens, seq_lens, seq_t, tables, padded)
        logits = self.model.forward(input_ids, positions, meta, self.kv_caches, li, logits_meta=logits_meta)
        return logits[:n] if size > n else logits
