# CUDA-only checks (skipped elsewhere) of the small kernels around a captured decode step: greedy sampling
# (kernels/greedy.py) against torch's argmax/logsumexp, the step-input kernel (kernels/decode_inputs.py)
# against the PyTorch ops it replaced, the seeded-draw kernels (kernels/draw.py) against sampler._draw.
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))


CUDA = torch.cuda.is_available()


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class GreedyKernelTest(unittest.TestCase):
    def reference(self, x):
        tok = x.argmax(dim=-1)
        lp = x.gather(1, tok[:, None]).squeeze(1) - torch.logsumexp(x, dim=-1)
        return tok, lp

    def test_equals_torch(self):
        from lmi_executor.kernels.greedy import CHUNK, greedy_into

        g = torch.Generator(device="cuda").manual_seed(0)
        for rows, vocab in ((1, 128256), (3, 32000), (256, 50257), (5, CHUNK), (2, CHUNK + 1), (4, 17)):
            x = torch.randn((rows, vocab), generator=g, device="cuda") * 4
            if vocab > 20:
                x[0, 5] = x[0].max() + 1  # ties at the top: the lowest id wins, as torch.argmax
                x[0, vocab - 3] = x[0, 5]
            if rows > 1:
                x[-1, : vocab // 2] = float("-inf")  # logit bias can remove most of a row
            out = torch.full((2, rows), float("nan"), dtype=torch.float64, device="cuda")
            greedy_into(x, out)
            tok, lp = self.reference(x)
            self.assertTrue(torch.equal(out[0].long(), tok), f"{rows}x{vocab}")
            torch.testing.assert_close(out[1].float(), lp, rtol=1e-5, atol=1e-5)
            if vocab > 20:
                self.assertEqual(int(out[0, 0]), 5)

    def test_16_bit_logits_give_the_tokens_widening_first_gives(self):
        from lmi_executor.kernels.greedy import greedy_into

        g = torch.Generator(device="cuda").manual_seed(1)
        for dtype in (torch.bfloat16, torch.float16):
            x = (torch.randn((16, 128256), generator=g, device="cuda") * 4).to(dtype)
            x[3, 7] = x[3, 9] = x[3].max()  # a tie: the lowest id either way
            a = torch.empty((2, 16), dtype=torch.float64, device="cuda")
            b = torch.empty_like(a)
            greedy_into(x, a)
            greedy_into(x.float(), b)
            # The same tokens; logprobs to fp32 rounding (a 16-bit load gives the chunk's sum another order).
            self.assertTrue(torch.equal(a[0], b[0]), dtype)
            torch.testing.assert_close(a[1], b[1], rtol=1e-6, atol=1e-6)
            self.assertEqual(int(a[0, 3]), 7)

    def test_writes_last_token_rows(self):
        from lmi_executor.kernels.greedy import greedy_into

        x = torch.randn((4, 1000), device="cuda")
        last = torch.full((10,), -1, dtype=torch.int64, device="cuda")
        rows = torch.tensor([7, 2, 9, 0], dtype=torch.int64, device="cuda")
        out = torch.empty((2, 4), dtype=torch.float64, device="cuda")
        greedy_into(x, out, rows=rows, last_token=last)
        want = torch.full((10,), -1, dtype=torch.int64, device="cuda")
        want[rows] = x.argmax(-1)
        self.assertTrue(torch.equal(last, want))

    def test_strided_rows(self):
        from lmi_executor.kernels.greedy import greedy_into

        x = torch.randn((6, 3000), device="cuda")[::2]
        out = torch.empty((2, 3), dtype=torch.float64, device="cuda")
        greedy_into(x, out)
        rt, rl = self.reference(x)
        self.assertTrue(torch.equal(out[0].long(), rt))
        torch.testing.assert_close(out[1].float(), rl, rtol=1e-5, atol=1e-5)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class DrawKernelTest(unittest.TestCase):
    def test_draws_equal_the_torch_sampler(self):
        # Against sampler._draw on the same rows (torch: softmax, CDF, search over the vocabulary). The sums run
        # in another order, so a draw may differ where u * M lies within rounding of a boundary: then only by one
        # place in the sorted order. Ragged vocabularies (not a multiple of the chunk) and single-chunk rows too.
        from lmi_executor.kernels.draw import CHUNK
        from lmi_executor.sampler import SampleRow, _draw, _draw_kernel, chosen_logprob
        from test_executor_model import sampling

        g = torch.Generator(device="cuda").manual_seed(3)
        settings = [dict(temperature=0.8), dict(temperature=0.8, topP=0.95), dict(temperature=1.2, topK=50),
                    dict(temperature=0.7, topP=0.5, minP=0.02), dict(temperature=1.0, minP=0.1),
                    dict(temperature=0.6, topK=1000, topP=0.9), dict(temperature=1.0, topP=1e-6),
                    dict(temperature=0.9, topK=1)]
        total = differ = 0
        for vocab, scale in ((128256, 3.0), (32000, 1.0), (CHUNK, 6.0), (CHUNK + 5, 2.0), (300, 0.3)):
            for rep in range(4):
                rows = [SampleRow(sampling(strategy="sample", seed=rep * 100 + j, **st), rep, [], 0)
                        for j, st in enumerate(settings * 8)]
                # bf16 logits (a decode graph's), or fp32 ones (the LM head of a few rows writes fp32) on odd rounds
                keys = (torch.randn((len(rows), vocab), generator=g, device="cuda") * scale).to(torch.bfloat16)
                if rep % 2:
                    keys = keys.float() + torch.rand(keys.shape, generator=g, device="cuda") * 1e-3
                got, lp = _draw_kernel(keys, rows)
                want = _draw(keys.float(), rows, keys)
                # The kernels' logprob of the drawn token: log_softmax of the raw logits, summed in another order.
                torch.testing.assert_close(lp, chosen_logprob(keys.float(), got), rtol=0, atol=2e-5)
                rank = torch.empty_like(keys, dtype=torch.int64)
                order = keys.sort(dim=-1, descending=True, stable=True).indices
                rank.scatter_(1, order, torch.arange(vocab, device="cuda").expand_as(order))
                gap = (rank.gather(1, got[:, None]) - rank.gather(1, want[:, None])).abs()
                self.assertLessEqual(int(gap.max()), 1, (vocab, rep))
                total += len(rows)
                differ += int((got != want).sum())
                for j, st in enumerate(settings * 8):  # no boundary to round across: one survivor
                    if st.get("topK") == 1 or st.get("topP") == 1e-6:
                        self.assertEqual(int(got[j]), int(order[j, 0]))
        self.assertLessEqual(differ, total // 100, f"{differ} of {total} draws differ")

    def test_no_batch_size_compiles_a_variant_the_warm_up_did_not(self):
        # Triton compiles a kernel once per pointer alignment (and dtype): after the start-up warm-up (one row,
        # bf16 and fp32), draws of 1-9 rows over either dtype must find every variant compiled already, or the
        # first batch of a new size would stall on a compile while serving.
        from lmi_executor.kernels import draw
        from lmi_executor.sampler import SampleRow, _draw_kernel, warm_draw_kernels
        from test_executor_fixtures import compiled_variants
        from test_executor_model import sampling

        def variants():
            return compiled_variants(self, (draw._chunk_kernel, draw._pick_kernel))

        V = 32000
        warm_draw_kernels(V, torch.bfloat16, "cuda")
        before = variants()
        g = torch.Generator(device="cuda").manual_seed(7)
        for R in range(1, 10):
            rows = [SampleRow(sampling(strategy="sample", temperature=0.9, topP=0.9, seed=j), 0, [], 0)
                    for j in range(R)]
            x = torch.randn((R, V), generator=g, device="cuda")
            _draw_kernel(x.to(torch.bfloat16), rows)
            _draw_kernel(x, rows)
        for R in (16, 17, 23, 64):  # the prefix form (every row has top-k)
            rows = [SampleRow(sampling(strategy="sample", temperature=0.9, topK=50, seed=j), 0, [], 0)
                    for j in range(R)]
            x = torch.randn((R, V), generator=g, device="cuda")
            _draw_kernel(x.to(torch.bfloat16), rows)
            _draw_kernel(x, rows)
        torch.cuda.synchronize()
        self.assertEqual(variants(), before)

    def test_the_prefix_form_draws_what_the_whole_sort_draws(self):
        # Steps whose rows all have top-k sort only a prefix (sampler.sorted_prefix). Both forms take the totals
        # over the unsorted rows and the kept mass and draw target over the same first chunks of the sorted order,
        # so a seeded draw does not depend on which form its batch took: tokens and logprobs equal bit for bit.
        # Ties across the prefix's end (bf16 logits, and a row of one value) must not change a draw.
        from unittest import mock

        from lmi_executor import sampler
        from lmi_executor.sampler import SampleRow, _draw_kernel, chosen_logprob
        from test_executor_model import sampling

        g = torch.Generator(device="cuda").manual_seed(5)
        settings = [dict(temperature=0.8, topK=50), dict(temperature=1.2, topK=4096), dict(temperature=0.7, topK=1),
                    dict(temperature=1.0, topK=1000, topP=0.9), dict(temperature=0.6, topK=3, minP=0.1),
                    dict(temperature=1.5, topK=4096, topP=0.5, minP=0.01), dict(temperature=1.0, topK=200, topP=0.3)]
        for vocab, scale in ((128256, 3.0), (32000, 0.3), (5000, 1.0)):
            for rep in range(4):
                rows = [SampleRow(sampling(strategy="sample", seed=rep * 100 + j, **st), rep, [], 0)
                        for j, st in enumerate(settings * 6)]
                keys = (torch.randn((len(rows), vocab), generator=g, device="cuda") * scale).to(torch.bfloat16)
                keys[0, 10:9000] = keys[0].max()  # 8,990 tied maxima, across the prefix's end
                keys[1] = 0.25  # every logit equal
                keys[2, ::3] = keys[2].max() - 0.5
                if rep % 2:
                    keys = keys.float()
                want_vals, want_ids = keys.sort(dim=-1, descending=True, stable=True)
                vals, ids = sampler.sorted_prefix(keys, sampler.PREFIX)
                self.assertTrue(torch.equal(vals, want_vals[:, : sampler.PREFIX]), (vocab, rep))
                self.assertTrue(torch.equal(ids, want_ids[:, : sampler.PREFIX]), (vocab, rep))
                got, lp = _draw_kernel(keys, rows)
                with mock.patch.object(sampler, "PREFIX_MIN_ROWS", 1 << 30):
                    want, want_lp = _draw_kernel(keys, rows)
                torch.testing.assert_close(lp, chosen_logprob(keys.float(), got), rtol=0, atol=2e-5)
                self.assertTrue(torch.equal(got, want), (vocab, rep))
                self.assertTrue(torch.equal(lp, want_lp), (vocab, rep))

    def test_a_batch_split_between_the_kernels_and_torch_draws_each_row_as_alone(self):
        # Rows with unchanged 16-bit logits take the kernels; penalties or typical-p send a row to the torch form.
        # Whichever group a row's neighbours take, its token is the one it gets alone (its seed, its way).
        from lmi_executor.sampler import SampleRow, sample_on_device, warm_draw_kernels
        from test_executor_model import sampling

        warm_draw_kernels(32000, torch.bfloat16, "cuda")
        g = torch.Generator(device="cuda").manual_seed(5)
        keys = (torch.randn((4, 32000), generator=g, device="cuda") * 2).to(torch.bfloat16)
        settings = [dict(strategy="sample", temperature=0.9, topP=0.9, seed=1),
                    dict(strategy="sample", temperature=0.9, seed=2, repetitionPenalty=1.3),
                    dict(strategy="sample", temperature=0.7, topK=8, seed=3),
                    dict(strategy="sample", temperature=1.1, typicalP=0.8, seed=4)]
        for batch in ([0, 1, 2, 3], [0, 2], [1, 3], [0, 1], [3, 2]):
            rows = [SampleRow(sampling(**settings[i]), 3, [5, 9, 9, 30], 2) for i in batch]
            got = sample_on_device(keys[batch].float(), rows, 0, keys=keys[batch])[0].tolist()
            alone = [sample_on_device(keys[i:i + 1].float(), [r], 0, keys=keys[i:i + 1])[0].item()
                     for i, r in zip(batch, rows)]
            self.assertEqual(got, alone, batch)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class DecodeInputsKernelTest(unittest.TestCase):
    def test_equals_torch_ops(self):
        from lmi_executor.kernels.decode_inputs import IDS, PENDING, POS, ROW, SEQ, decode_inputs

        dev, page, W, B = "cuda", 16, 37, 6
        table = torch.randint(0, 5000, (9, W), dtype=torch.int32, device=dev)
        last = torch.randint(0, 32000, (9,), dtype=torch.int64, device=dev)
        rows = torch.tensor([3, 0, 8, 5, 8, 1], device=dev)
        pos = torch.tensor([0, 15, 16, 300, 591, 77], device=dev)
        staged = [None] * 5
        staged[ROW], staged[IDS], staged[POS], staged[SEQ] = rows, torch.randint(0, 32000, (B,), device=dev), pos, pos + 1
        staged[PENDING] = torch.tensor([0, 1, 0, 1, 1, 0], device=dev)
        inp = torch.stack(staged).contiguous()
        ids, slots, seq, bt = decode_inputs(inp, last, table, page)
        want_ids = torch.where(inp[PENDING] != 0, last.index_select(0, rows), inp[IDS])
        want_bt = table.index_select(0, rows)
        want_slots = want_bt[torch.arange(B, device=dev), pos // page].long() * page + pos % page
        self.assertTrue(torch.equal(ids, want_ids))
        self.assertTrue(torch.equal(slots, want_slots))
        self.assertTrue(torch.equal(seq, (pos + 1).int()))
        self.assertTrue(torch.equal(bt, want_bt))


if __name__ == "__main__":
    unittest.main()
