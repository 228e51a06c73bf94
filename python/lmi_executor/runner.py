# One step: turns the engine's plan into flat device inputs (token ids, positions, slot mapping, paged
# block tables), runs the model (eagerly, or by replaying a captured CUDA graph for pure-decode batches),
# samples, and records the sampled tokens in each request's state.
# Invariant: a request samples only when this step reaches the end of its known tokens; positions and
# slots are derived on the device from the persistent block table, so host work is O(requests), not O(tokens).
import torch

from .attention import AttentionMetadata
from .requests import BlockTable, RequestStore
from .sampler import SampleRow, prompt_logprobs, sample


def _is_plain_greedy(st) -> bool:
    """Greedy with nothing that edits logits or asks for alternatives (then minTokens no longer matters)."""
    s = st.sampling
    return (s["strategy"] == "greedy" and not s["logitBias"] and s["repetitionPenalty"] == 1
            and s["presencePenalty"] == 0 and s["frequencyPenalty"] == 0 and s["numTopLogprobs"] == 0
            and len(st.token_ids) - st.prompt_len >= s["minTokens"])


class ModelRunner:
    def __init__(self, model, kv_caches, block_size: int, max_num_seqs: int, max_model_len: int, device,
                 scratch_block: int = 0):
        self.model, self.kv_caches, self.block_size, self.device = model, kv_caches, block_size, device
        self.max_blocks = (max_model_len + block_size - 1) // block_size
        self.store = RequestStore(BlockTable(max_num_seqs, self.max_blocks, device, scratch_block))
        self.graphs = None  # set by cuda_graphs.DecodeGraphs when enabled

    def execute(self, plan: dict) -> dict:
        store = self.store
        for rid in plan["finishedReqIds"]:
            store.finish(rid)
        for rid in plan["preemptedReqIds"]:
            store.preempt(rid)
        sched = plan["numScheduledTokens"]
        batch = []
        for d in plan["scheduledNewReqs"]:
            st = store.add_new(d)
            batch.append((st, d["numComputedTokens"], sched.get(st.req_id, 0)))
        for d in plan["scheduledCachedReqs"]:
            st = store.update_cached(d)
            batch.append((st, d["numComputedTokens"], sched.get(st.req_id, 0)))
        store.bt.flush()
        batch = [b for b in batch if b[2] > 0]
        out = {"stepId": plan["stepId"], "sampledTokenIds": {}, "logprobs": {}, "promptLogprobs": {}}
        if not batch:
            return out
        return self._run(batch, out)

    def _run(self, batch: list, out: dict) -> dict:
        ids, q_lens, starts, seq_lens, rows = [], [], [], [], []
        logits_rows, sample_rows, sample_states, plp = [], [], [], []
        t = 0
        for st, nc, n in batch:
            if nc + n > len(st.token_ids):
                raise ValueError(f"{st.req_id}: scheduled {nc}+{n} tokens but only {len(st.token_ids)} are known")
            ids.extend(st.token_ids[nc : nc + n])
            q_lens.append(n)
            starts.append(nc)
            seq_lens.append(nc + n)
            rows.append(st.row)
            if st.sampling["promptLogprobs"] and nc < st.prompt_len - 1:
                # Rows nc..e-1 score prompt tokens nc+1..e (chunk boundaries included: the prompt is known).
                e = min(nc + n, st.prompt_len - 1)
                plp.append((st, nc, len(logits_rows), e - nc))
                logits_rows.extend(range(t, t + e - nc))
            if nc + n == len(st.token_ids):
                sample_states.append(st)
                sample_rows.append(len(logits_rows))
                logits_rows.append(t + n - 1)
            t += n
        if not logits_rows:
            self._forward_eager(ids, q_lens, starts, seq_lens, rows, [])
            return out
        is_decode = all(n == 1 for n in q_lens) and not plp
        if is_decode and self.graphs is not None and self.graphs.can_run(len(batch)):
            logits = self.graphs.run(ids, starts, seq_lens, rows)
        else:
            logits = self._forward_eager(ids, q_lens, starts, seq_lens, rows, logits_rows)
        self._sample(logits, sample_rows, sample_states, out)
        for st, nc, first, count in plp:
            entries = prompt_logprobs(
                logits[first : first + count], st.token_ids[nc + 1 : nc + 1 + count], st.sampling["numTopLogprobs"]
            )
            out["promptLogprobs"][st.req_id] = ([None] if nc == 0 else []) + entries
        return out

    def _sample(self, logits, sample_rows, states, out) -> None:
        if not states:
            return
        sel = logits if len(sample_rows) == logits.shape[0] else logits[sample_rows]
        if all(_is_plain_greedy(st) for st in states):
            # The common serving case: argmax and the chosen token's logprob, one device-to-host copy.
            tok = sel.argmax(dim=-1)
            lp = sel.gather(1, tok[:, None]).squeeze(1) - torch.logsumexp(sel, dim=-1)
            both = torch.stack([tok.double(), lp.double()]).tolist()
            sampled, lps, logprobs = out["sampledTokenIds"], both[1], out["logprobs"]
            for j, (st, t) in enumerate(zip(states, both[0])):
                t = int(t)
                st.token_ids.append(t)
                sampled[st.req_id] = [t]
                logprobs[st.req_id] = [{"logprob": lps[j], "top": []}]
            return
        rows = [
            SampleRow(st.sampling, len(st.token_ids) - st.prompt_len, st.token_ids, st.prompt_len)
            for st in states
        ]
        tokens, chosen, tops = sample(sel, rows)
        for st, tok, lp, top in zip(states, tokens, chosen, tops):
            st.token_ids.append(tok)
            out["sampledTokenIds"][st.req_id] = [tok]
            out["logprobs"][st.req_id] = [{"logprob": lp, "top": top}]

    def _forward_eager(self, ids, q_lens, starts, seq_lens, rows, logits_rows):
        dev, bs = self.device, self.block_size
        B = len(q_lens)
        host = torch.tensor([q_lens, starts, seq_lens, rows], dtype=torch.int64)
        meta_dev = host.to(dev, non_blocking=True)
        q_len_t, start_t, seq_t, row_t = meta_dev[0], meta_dev[1], meta_dev[2], meta_dev[3]
        T = len(ids)
        qsl_cpu = [0]
        for n in q_lens:
            qsl_cpu.append(qsl_cpu[-1] + n)
        qsl = torch.zeros(B + 1, dtype=torch.int64, device=dev)
        qsl[1:] = torch.cumsum(q_len_t, 0)
        max_seq = max(seq_lens)
        nb = (max_seq + bs - 1) // bs
        block_tables = self.store.bt.table[row_t][:, :nb]
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
        input_ids = torch.tensor(ids, dtype=torch.int64).to(dev, non_blocking=True)
        li = torch.tensor(logits_rows, dtype=torch.int64).to(dev, non_blocking=True)
        return self.model.forward(input_ids, positions, meta, self.kv_caches, li)
