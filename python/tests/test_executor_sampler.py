# Sampler semantics: greedy, seeded draws that depend only on (seed, n), top-k/top-p/min-p filtering,
# HF repetition and OpenAI presence/frequency penalties, logit bias, min-tokens EOS suppression, logprobs.
import os
import sys
import types
import unittest
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.sampler import SampleRow, sample, uniform  # noqa: E402
from test_executor_model import sampling  # noqa: E402


def row(n=0, prompt=(), out=(), **s):
    return SampleRow(sampling(**s), n, list(prompt) + list(out), len(prompt))


def stand_in_draw_kernels(draw_sorted):
    """Replaces kernels/draw.py (Triton, CUDA only) by a module holding `draw_sorted`, for the CPU tests of what
    the sampler hands the draw kernels."""
    fake = types.ModuleType("lmi_executor.kernels.draw")
    fake.draw_sorted = draw_sorted
    return mock.patch.dict(sys.modules, {"lmi_executor.kernels.draw": fake})


class SamplerTest(unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(0)
        self.logits = torch.randn(4, 50, generator=g) * 3

    def test_uniform_known_values(self):
        # Pinned so the TypeScript executor can mirror the generator bit for bit.
        # splitmix64 seeded with 0 first yields 0xE220A8397B1DCDAF (the published reference sequence).
        self.assertEqual(uniform(0, 0), (0xE220A8397B1DCDAF >> 11) / 2**53)
        self.assertAlmostEqual(uniform(42, 7), uniform(42, 7), places=15)
        self.assertNotEqual(uniform(42, 7), uniform(43, 7))
        xs = [uniform(123, n) for n in range(2000)]
        self.assertTrue(all(0 <= x < 1 for x in xs))
        self.assertAlmostEqual(sum(xs) / len(xs), 0.5, delta=0.03)

    def test_greedy_is_argmax_and_logprob_is_log_softmax_of_raw_logits(self):
        rows = [row() for _ in range(4)]
        toks, lps, _ = sample(self.logits.clone(), rows)
        self.assertEqual(toks, self.logits.argmax(-1).tolist())
        ref = torch.log_softmax(self.logits, -1)
        for i, t in enumerate(toks):
            self.assertAlmostEqual(lps[i], ref[i, t].item(), places=5)

    def test_seeded_draw_depends_only_on_seed_and_index(self):
        s = {"strategy": "sample", "temperature": 0.8, "seed": 7}
        alone = sample(self.logits[2:3].clone(), [row(n=5, **s)])[0][0]
        batched = sample(self.logits.clone(), [row(n=1), row(n=3, strategy="sample", seed=1), row(n=5, **s), row()])[0][2]
        self.assertEqual(alone, batched)
        draws = {sample(self.logits[2:3].clone(), [row(n=n, **s)])[0][0] for n in range(40)}
        self.assertGreater(len(draws), 3)

    def test_sampling_frequencies_follow_softmax(self):
        logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
        counts = [0] * 4
        for n in range(3000):
            counts[sample(logits.clone(), [row(n=n, strategy="sample", seed=11)])[0][0]] += 1
        p = torch.softmax(logits[0], -1).tolist()
        for c, q in zip(counts, p):
            self.assertAlmostEqual(c / 3000, q, delta=0.03)

    def test_top_k_top_p_min_p(self):
        logits = torch.tensor([[3.0, 2.9, 0.0, -1.0, -2.0]])
        seen_k = {sample(logits.clone(), [row(n=n, strategy="sample", topK=2, seed=3)])[0][0] for n in range(200)}
        self.assertEqual(seen_k, {0, 1})
        # p0 ~ 0.50: with top_p 0.4 only the first token survives.
        seen_p = {sample(logits.clone(), [row(n=n, strategy="sample", topP=0.4, seed=3)])[0][0] for n in range(200)}
        self.assertEqual(seen_p, {0})
        seen_m = {sample(logits.clone(), [row(n=n, strategy="sample", minP=0.1, seed=3)])[0][0] for n in range(300)}
        self.assertEqual(seen_m, {0, 1})

    def test_repetition_presence_frequency_penalties(self):
        logits = torch.tensor([[2.0, 1.9, -0.5, 0.1]])
        # HF repetition penalty: token 0 (positive) divided by 2 -> 1.0 < 1.9.
        self.assertEqual(sample(logits.clone(), [row(prompt=[0], repetitionPenalty=2.0)])[0], [1])
        # Negative logits are multiplied: token 2 -> -1.0; choose between 3 (0.1) and 2.
        self.assertEqual(sample(torch.tensor([[-0.5, -0.6, -0.4, -2.0]]), [row(prompt=[2], repetitionPenalty=2.0)])[0], [0])
        # Frequency: token 0 appeared 3 times in the output: 2.0 - 3*0.1 = 1.7 < 1.9.
        self.assertEqual(sample(logits.clone(), [row(out=[0, 0, 0], frequencyPenalty=0.1)])[0], [1])
        self.assertEqual(sample(logits.clone(), [row(out=[0, 0, 0], frequencyPenalty=0.01)])[0], [0])
        # Presence counts once; prompt tokens do not count for presence/frequency (OpenAI: output only).
        self.assertEqual(sample(logits.clone(), [row(out=[0, 0], presencePenalty=0.2)])[0], [1])
        self.assertEqual(sample(logits.clone(), [row(prompt=[0], presencePenalty=0.2)])[0], [0])

    def test_penalties_from_the_device_history_equal_the_host_lists(self):
        # The runner's history (hist[slot, pos]: prompt, then each sample at its position) read up to each row's
        # prompt length + n, against the same tokens as host lists; stale entries past that must not count.
        from lmi_executor.sampler import _apply_penalties

        g = torch.Generator().manual_seed(1)
        hist = torch.randint(0, 50, (6, 40), generator=g, dtype=torch.int32)  # stale tokens everywhere
        rows_host, rows_dev = [], []
        for slot, (plen, n) in enumerate([(5, 0), (3, 7), (12, 2), (1, 20)]):
            toks = torch.randint(0, 50, (plen + n,), generator=g).tolist()
            hist[slot, : plen + n] = torch.tensor(toks, dtype=torch.int32)
            s = sampling(repetitionPenalty=1.5 + slot / 4, presencePenalty=0.3 * slot, frequencyPenalty=0.2)
            rows_host.append(SampleRow(s, n, toks, plen))
            rows_dev.append(SampleRow(s, n, [], plen, slot))
        rows_host.insert(2, row(n=3, out=[1, 2, 3]))  # a row without penalties, left alone either way
        rows_dev.insert(2, row(n=3, out=[1, 2, 3]))
        logits = torch.randn(5, 50, generator=g) * 3
        want, got = logits.clone(), logits.clone()
        _apply_penalties(want, rows_host)
        _apply_penalties(got, rows_dev, hist)
        self.assertTrue(torch.equal(want, got))
        self.assertTrue(torch.equal(got[2], logits[2]))
        self.assertFalse(torch.equal(got, logits))

    def test_penalties_equal_the_dense_vocabulary_formula(self):
        # The sampler works on each row's earlier tokens only; the reference builds [rows, vocabulary] masks and
        # counts (the textbook way). Bitwise equal over duplicates in prompt and output, mixed settings, a row
        # without penalties in the batch, and a row with no earlier token at all.
        from lmi_executor.sampler import _apply_penalties

        def dense(logits, rows):
            for i, r in enumerate(rows):
                s = r.sampling
                if s["repetitionPenalty"] == 1 and s["presencePenalty"] == 0 and s["frequencyPenalty"] == 0:
                    continue
                seen = torch.zeros(logits.shape[1], dtype=torch.bool)
                seen[list(r.token_ids)] = True
                counts = torch.zeros(logits.shape[1])
                for t in r.token_ids[r.prompt_len:]:
                    counts[t] += 1
                x = logits[i]
                pen = torch.where(x > 0, x / s["repetitionPenalty"], x * s["repetitionPenalty"])
                x = torch.where(seen, pen, x)
                logits[i] = x - s["frequencyPenalty"] * counts - s["presencePenalty"] * (counts > 0).float()

        g = torch.Generator().manual_seed(5)
        for trial in range(20):
            rows = []
            for j in range(int(torch.randint(1, 7, (1,), generator=g))):
                plen, n = (int(v) for v in torch.randint(0, 30, (2,), generator=g))
                toks = torch.randint(0, 12, (plen + n,), generator=g).tolist()  # few ids: many repeats
                pen = j % 3 != 1
                s = sampling(repetitionPenalty=float(torch.rand(1, generator=g)) * 2 + 0.2 if pen else 1.0,
                             presencePenalty=float(torch.randn(1, generator=g)) if pen else 0.0,
                             frequencyPenalty=float(torch.randn(1, generator=g)) if pen else 0.0)
                rows.append(SampleRow(s, n, toks, plen))
            if trial == 0:
                rows.append(SampleRow(sampling(repetitionPenalty=1.7), 0, [], 0))
            logits = torch.randn(len(rows), 40, generator=g) * 3
            want, got = logits.clone(), logits.clone()
            dense(want, rows)
            _apply_penalties(got, rows)
            self.assertTrue(torch.equal(want, got), trial)
            if trial == 0:
                self.assertTrue(torch.equal(got[-1], logits[-1]))
            self.assertFalse(torch.equal(got, logits))

    def test_draws_equal_the_masked_cdf_and_16_bit_keys_order_like_the_logits(self):
        # The draw keeps the first n sorted tokens (top-k, top-p and min-p are prefixes) and searches the prefix of
        # the CDF; the reference masks the removed tokens and builds a second CDF (the textbook way). With 16-bit
        # keys the sort runs on the model's bf16 logits (many ties) instead of the widened, tempered ones.
        from lmi_executor.sampler import _draw

        def masked(x, rows):
            out = []
            for i, r in enumerate(rows):
                s = r.sampling
                sx, order = (x[i] / s["temperature"]).sort(descending=True, stable=True)
                p = sx.softmax(-1)
                c = p.cumsum(-1)
                rank = torch.arange(len(p))
                remove = ((rank >= s["topK"]) if s["topK"] > 0 else torch.zeros_like(p, dtype=torch.bool))
                remove = remove | ((c - p) >= s["topP"]) | (p < s["minP"] * p[0])
                remove[0] = False
                cdf = p.masked_fill(remove, 0.0).cumsum(-1)
                u = uniform(s["seed"], r.num_generated)
                pick = torch.searchsorted(cdf, torch.tensor([u], dtype=cdf.dtype) * cdf[-1], right=True)
                out.append(int(order[pick.clamp(max=len(p) - 1)]))
            return out

        g = torch.Generator().manual_seed(9)
        settings = [dict(temperature=0.7), dict(temperature=1.3, topK=5), dict(temperature=0.9, topP=0.8),
                    dict(temperature=1.0, minP=0.05), dict(temperature=0.6, topK=40, topP=0.95, minP=0.01)]
        for trial in range(12):
            x16 = (torch.randn(len(settings), 300, generator=g) * (1 + trial)).to(torch.bfloat16)
            x = x16.float()
            rows = [SampleRow(sampling(strategy="sample", seed=trial * 10 + j, **st), trial, [], 0)
                    for j, st in enumerate(settings)]
            want = masked(x, rows)
            self.assertEqual(_draw(x.clone(), rows).tolist(), want, trial)
            self.assertEqual(_draw(x.clone(), rows, keys=x16).tolist(), want, trial)

    def test_draw_kernels_are_warmed_on_cuda_for_the_model_dtype_and_fp32(self):
        # Off CUDA the warm-up does nothing: the draw kernels need Triton and a GPU. On CUDA it compiles them for the
        # model's dtype (a decode graph's logits) and for fp32 (the logits of small steps), once each.
        from lmi_executor import sampler
        from lmi_executor.sampler import warm_draw_kernels

        drawn = []
        with mock.patch.object(sampler, "_draw_one",
                               lambda vocab, dtype, device, rows=1, top_k=0: drawn.append((vocab, dtype, rows))):
            warm_draw_kernels(50, torch.bfloat16, "cpu")
            self.assertEqual(drawn, [])
            warm_draw_kernels(50, torch.bfloat16, "cuda")
            warm_draw_kernels(60, torch.float32, "cuda:0")
            # A vocabulary past the prefix: the prefix form is compiled too, for each dtype.
            warm_draw_kernels(5000, torch.bfloat16, "cuda")
        m = sampler.PREFIX_MIN_ROWS
        self.assertEqual(drawn, [(50, torch.bfloat16, 1), (50, torch.float32, 1), (60, torch.float32, 1),
                                 (5000, torch.bfloat16, 1), (5000, torch.bfloat16, m), (5000, torch.float32, 1),
                                 (5000, torch.float32, m)])
        # Each draws one row (_draw_one) with settings that must be all _draw_kernel reads: here on the CPU, with
        # the kernels replaced by a stand-in that checks what they are given.

        seen = {}

        def draw_sorted(sorted_keys, order, temperature, top_k, top_p, min_p, u, full_keys):
            R = len(top_k)  # the settings' rows are padded (see the alignment test below)
            seen.update(shape=tuple(sorted_keys.shape), k=top_k.tolist(), p=top_p[:R].tolist(),
                        t=temperature[:R].tolist())
            return torch.zeros(1, dtype=torch.int64), torch.zeros(1)

        with stand_in_draw_kernels(draw_sorted):
            sampler._draw_one(50, torch.bfloat16, "cpu")
        self.assertEqual(seen, {"shape": (1, 50), "k": [50], "p": [0.8999999761581421], "t": [1.0]})

    def test_draw_kernel_settings_start_16_byte_aligned_at_every_batch_size(self):
        # Triton compiles a kernel once per pointer alignment: the per-row settings handed to the draw kernels
        # must start on 16-byte boundaries at every batch size, as in the one-row warm-up, or a batch of another
        # size compiles a new variant while serving. Stand-in kernels on the CPU record what they are given.
        from lmi_executor import sampler

        got = []

        def draw_sorted(sorted_keys, order, temperature, top_k, top_p, min_p, u, full_keys):
            got.append(([t.data_ptr() % 16 for t in (temperature, top_p, min_p, u)],
                        temperature[: len(top_k)].tolist(), top_p[: len(top_k)].tolist()))
            return torch.zeros(len(top_k), dtype=torch.int64), torch.zeros(len(top_k))

        keys = torch.zeros((9, 40), dtype=torch.bfloat16)
        with stand_in_draw_kernels(draw_sorted):
            for R in range(1, 10):
                rows = [SampleRow(sampling(strategy="sample", temperature=0.5 + j / 8, topP=0.9, seed=j), 0, [], 0)
                        for j in range(R)]
                sampler._draw_kernel(keys[:R], rows)
        for R, (align, temps, top_ps) in enumerate(got, start=1):
            self.assertEqual(align, [0, 0, 0, 0], R)
            self.assertEqual(temps, [0.5 + j / 8 for j in range(R)])
            self.assertEqual(top_ps, [torch.tensor(0.9).item()] * R)

    def test_sorted_prefix_is_the_stable_sort_s_first_columns_with_ties_at_its_end(self):
        from lmi_executor.sampler import sorted_prefix

        g = torch.Generator().manual_seed(1)
        x = (torch.randn(6, 3000, generator=g) * 2).to(torch.bfloat16)  # bf16: many equal values
        x[1, 100:2900] = 0.5  # a tie group of 2,800 across the prefix's end
        x[2] = 1.0  # every value equal
        x[3, ::2] = x[3, 1]  # half the row one value
        x[4, 50:60] = x[4].max()  # ties at the top
        for dt in (torch.bfloat16, torch.float32):
            keys = x.to(dt)
            want_vals, want_ids = keys.sort(dim=-1, descending=True, stable=True)
            for k in (1, 7, 512, 1000, 2999):
                vals, ids = sorted_prefix(keys, k)
                self.assertTrue(torch.equal(vals, want_vals[:, :k]), (dt, k))
                self.assertTrue(torch.equal(ids, want_ids[:, :k]), (dt, k))

    def test_steps_whose_rows_all_have_top_k_hand_the_kernels_a_sorted_prefix(self):
        # The kernels get the first PREFIX sorted tokens and the full rows when every row has 1 <= top_k <= PREFIX
        # and the step has PREFIX_MIN_ROWS rows or more; the whole sorted rows otherwise.
        from lmi_executor import sampler

        V, P, m = 300, 64, 4
        g = torch.Generator().manual_seed(2)
        keys = (torch.randn(m, V, generator=g) * 3).to(torch.bfloat16)
        got = []

        def draw_sorted(sorted_keys, order, temperature, top_k, top_p, min_p, u, full_keys):
            got.append((tuple(sorted_keys.shape), full_keys is keys, sorted_keys, order))
            return torch.zeros(len(top_k), dtype=torch.int64), torch.zeros(len(top_k))

        def rows(top_ks):
            return [SampleRow(sampling(strategy="sample", topK=k, seed=j), 0, [], 0) for j, k in enumerate(top_ks)]

        with stand_in_draw_kernels(draw_sorted), mock.patch.object(sampler, "PREFIX", P), \
                mock.patch.object(sampler, "PREFIX_MIN_ROWS", m):
            sampler._draw_kernel(keys, rows([5, 50, P, 1]))
            sampler._draw_kernel(keys, rows([5, 50, P + 1, 1]))  # one row's top-k past the prefix
            sampler._draw_kernel(keys, rows([5, 0, 8, 1]))  # one row without top-k
            sampler._draw_kernel(keys[:3], rows([5, 8, 1]))  # too few rows
            with mock.patch.object(sampler, "PREFIX_MAX_VOCAB", V):  # a vocabulary past the composite keys' ids
                sampler._draw_kernel(keys, rows([5, 50, P, 1]))
        self.assertEqual([shape for shape, _, _, _ in got], [(m, P), (m, V), (m, V), (3, V), (m, V)])
        self.assertTrue(all(full for _, full, _, _ in got[:3]))  # the unsorted rows go along: the totals
        want_vals, want_ids = keys.sort(dim=-1, descending=True, stable=True)
        self.assertTrue(torch.equal(got[0][2], want_vals[:, :P]))
        self.assertTrue(torch.equal(got[0][3], want_ids[:, :P]))

    def test_rows_drawn_by_the_kernels_and_by_torch_in_one_batch(self):
        # On CUDA, rows with unchanged 16-bit logits take the draw kernels and the others (penalties, typical-p)
        # the torch form. Here the kernels' way is stood in for by the torch form on the same keys, so every
        # split of a batch must give the tokens of drawing each row alone; the batch where every row samples,
        # some each way, once failed with nothing to write the kernels' rows into.

        from lmi_executor import sampler
        from lmi_executor.sampler import sample_on_device

        g = torch.Generator().manual_seed(2)
        keys = (torch.randn(4, 64, generator=g) * 2).to(torch.bfloat16)
        settings = [dict(strategy="sample", temperature=0.9, topP=0.9, seed=1),
                    dict(strategy="sample", temperature=0.9, seed=2, repetitionPenalty=1.3),
                    dict(strategy="sample", temperature=0.7, topK=8, seed=3),
                    dict(strategy="sample", temperature=1.1, typicalP=0.8, seed=4)]
        for batch in ([0, 1, 2, 3], [0, 2], [1, 3], [0, 1]):
            rows = [SampleRow(sampling(**settings[i]), 3, [5, 9, 9, 30], 2) for i in batch]
            with mock.patch.object(sampler, "_kernels_take", lambda k: k is not None), \
                    mock.patch.object(sampler, "_draw_kernel",
                                      lambda k, rs: (sampler._draw(k.float(), rs, k), torch.zeros(len(rs)))):
                got = sample_on_device(keys[batch].float(), rows, 0, keys=keys[batch])[0].tolist()
            alone = [sample_on_device(keys[i:i + 1].float(), [r])[0].item() for i, r in zip(batch, rows)]
            self.assertEqual(got, alone, batch)

    def test_16_bit_logits_are_widened_only_where_needed_and_give_the_same_samples(self):
        # A decode graph hands its 16-bit logits over as they are; the sampler widens them itself where a row needs
        # fp32. Tokens and logprobs equal those of the widened logits passed with the 16-bit ones as keys.
        from lmi_executor.sampler import sample_on_device

        g = torch.Generator().manual_seed(4)
        keys = (torch.randn(5, 80, generator=g) * 2).to(torch.bfloat16)
        settings = [dict(strategy="sample", temperature=0.8, topP=0.9, seed=1), dict(),
                    dict(strategy="sample", temperature=1.1, seed=2, repetitionPenalty=1.2),
                    dict(logitBias={"3": 4.0}), dict(strategy="sample", temperature=0.7, topK=5, typicalP=0.9, seed=3)]
        for batch in ([0], [1], [0, 4], [0, 1, 2, 3, 4], [2, 3]):
            for k in (0, 3):
                rows = [SampleRow(sampling(**settings[i]), 2, [7, 8, 9], 1) for i in batch]
                want = sample_on_device(keys[batch].float(), rows, k, keys=keys[batch])
                got = sample_on_device(keys[batch], rows, k)
                self.assertEqual(got[0].tolist(), want[0].tolist(), (batch, k))
                self.assertTrue(torch.equal(got[1], want[1]), (batch, k))
                self.assertEqual(got[2] is None, k == 0)
                if k:
                    self.assertTrue(torch.equal(got[2], want[2]))
        self.assertEqual(keys.dtype, torch.bfloat16)  # the caller's logits are never widened in place

    def test_logit_bias_and_min_tokens(self):
        logits = torch.tensor([[2.0, 1.0, 0.5]])
        self.assertEqual(sample(logits.clone(), [row(logitBias={"2": 5.0})])[0], [2])
        self.assertEqual(sample(logits.clone(), [row(n=0, minTokens=1, eosTokenIds=[0])])[0], [1])
        self.assertEqual(sample(logits.clone(), [row(n=1, minTokens=1, eosTokenIds=[0])])[0], [0])

    def test_top_logprobs_are_sorted_alternatives(self):
        toks, lps, tops = sample(self.logits[:1].clone(), [row(numTopLogprobs=3)])
        ref = torch.log_softmax(self.logits[0], -1)
        vals, ids = ref.topk(3)
        self.assertEqual([t[0] for t in tops[0]], ids.tolist())
        for (tid, v), rv in zip(tops[0], vals.tolist()):
            self.assertAlmostEqual(v, rv, places=5)


if __name__ == "__main__":
    unittest.main()


class TypicalTest(unittest.TestCase):
    def test_typical_p_keeps_the_most_typical_tokens(self):
        # p = softmax -> [0.64, 0.24, 0.09, 0.03]; entropy ~0.97 nats; |-log p - H|: 0.53, 0.46, 1.44, 2.55.
        # Most typical first: token 1 (0.24), then token 0 (0.64): mass 0.5 is reached after both.
        logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
        seen = {sample(logits.clone(), [row(n=n, strategy="sample", typicalP=0.5, seed=5)])[0][0] for n in range(300)}
        self.assertEqual(seen, {0, 1})
        seen1 = {sample(logits.clone(), [row(n=n, strategy="sample", typicalP=0.2, seed=5)])[0][0] for n in range(100)}
        self.assertEqual(seen1, {1})
