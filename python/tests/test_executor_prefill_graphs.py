# Prefill CUDA graphs (prefill_graphs.py): the bucket / padding rule (everywhere), and on a GPU the replayed
# single-sequence step against the eager forward: logits and the K/V it writes (whole prompts, padded
# buckets, a later chunk after an eager first one, a prefix-cache start), no write outside the request's
# blocks and the scratch block, and greedy continuations token-identical with the graphs on and off.
import os
import sys
import tempfile
import unittest
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.prefill_graphs import bucket_sizes, choose_bucket, worth_padding  # noqa: E402
from test_executor_fixtures import make_checkpoint  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

CUDA = torch.cuda.is_available()
BS = 16


class BucketRuleTest(unittest.TestCase):
    def test_buckets_are_capped_by_the_largest_step(self):
        self.assertEqual(bucket_sizes(8192)[-1], 1024)
        self.assertEqual(bucket_sizes(1024)[-1], 1024)
        self.assertEqual(bucket_sizes(256), [32, 64, 96, 128, 160, 192, 224, 256])
        self.assertEqual(bucket_sizes(600)[-2:], [512, 600])
        self.assertEqual(bucket_sizes(20), [20])
        self.assertEqual(bucket_sizes(1), [])

    def test_padding_rule(self):
        sizes = bucket_sizes(8192)
        self.assertEqual(choose_bucket(sizes, 1), 0)  # decode graphs' step
        self.assertEqual(choose_bucket(sizes, 2), 32)
        self.assertEqual(choose_bucket(sizes, 32), 32)
        self.assertEqual(choose_bucket(sizes, 33), 64)
        self.assertEqual(choose_bucket(sizes, 512), 512)
        self.assertEqual(choose_bucket(sizes, 513), 640)
        self.assertEqual(choose_bucket(sizes, 1024), 1024)
        self.assertEqual(choose_bucket(sizes, 1025), 0)  # longer than every bucket: eager
        # Every step up to the largest bucket finds one within the rule with these buckets.
        for q in range(2, 1025):
            self.assertTrue(worth_padding(q, choose_bucket(sizes, q)), q)
        # A bucket far above the step is refused: 1.25 * q + 32 is the limit.
        self.assertTrue(worth_padding(100, 157))
        self.assertFalse(worth_padding(100, 158))
        self.assertEqual(choose_bucket([32, 1024], 100), 0)


def kv_slots(blocks, lo, hi):
    return torch.tensor([blocks[p // BS] * BS + p % BS for p in range(lo, hi)], dtype=torch.int64)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class PrefillGraphTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = os.path.join(cls.tmp.name, "llama")
        make_checkpoint(cls.model, "llama", seed=5)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def worker(self, dtype="fp32", prefill_graphs=True, num_blocks=64):
        with mock.patch.dict(os.environ, {"LMI_PREFILL_GRAPHS": "1" if prefill_graphs else "0"}):
            w = make_worker(self.model, num_blocks=num_blocks, device="cuda", dtype=dtype, block_size=BS,
                            enable_cuda_graph=True)
        self.assertEqual(w.runner.prefill_graphs is not None, prefill_graphs)
        return w

    def test_graph_step_equals_eager_step(self):
        # (q_len, start): whole prompts (bucket exact or padded), and chunks after an eager first chunk.
        cases = [(2, 0), (30, 0), (32, 0), (33, 0), (100, 0), (200, 0), (40, 37), (150, 64), (17, 230)]
        for dtype, tol in (("fp32", 1e-4), ("bf16", 3e-2)):
            w = self.worker(dtype)
            r = w.runner
            pg = r.prefill_graphs
            self.assertEqual(pg.sizes, [32, 64, 96, 128, 160, 192, 224, 256])  # max_model_len 256
            kv = w.kv.view(w.kv.shape[0], 2, -1, *w.kv.shape[-2:])  # [layers, k/v, slots, kv heads, head dim]
            scratch = torch.arange(w.num_blocks * BS, (w.num_blocks + 1) * BS)
            g = torch.Generator().manual_seed(0)
            argmax_checked = 0
            for q, start in cases:
                with self.subTest(dtype=dtype, q_len=q, start=start):
                    size = pg.size_for(q)
                    self.assertGreaterEqual(size, q)
                    n = start + q
                    prompt = torch.randint(0, 97, (n,), generator=g).tolist()
                    nb = (n + BS - 1) // BS
                    # Two rows over disjoint blocks: a all eager, b eager up to start, then the graph.
                    blocks = torch.randperm(w.num_blocks, generator=g)[: 2 * nb].tolist()
                    ba, bb = blocks[:nb], blocks[nb:]
                    rows = []
                    for bl in (ba, bb):
                        row = r.store.bt.take_row()
                        r.store.bt.append(row, 0, bl)
                        rows.append(row)
                    r.store.bt.flush()
                    ra, rb = rows
                    for row in rows:
                        if start:
                            r._forward_eager(prompt[:start], [start], [0], [start], [row], [])
                    want = r._forward_eager(prompt[start:], [q], [start], [n], [ra], [q - 1]).double().cpu()
                    before = w.kv.clone()
                    replays = pg.replays
                    got = pg.run(prompt[start:], start, rb, size).double().cpu()
                    self.assertEqual(pg.replays, replays + 1)
                    self.assertEqual(tuple(got.shape), (1, 97))
                    self.assertFalse(torch.isnan(got).any())
                    err = ((got - want).norm() / want.norm()).item()
                    self.assertLess(err, tol)
                    # The top token: always in fp32; in bf16 unless eager's top two are closer than the error.
                    top2 = want[0].topk(2).values
                    if dtype == "fp32" or (top2[0] - top2[1]).item() > 4 * (got - want).abs().max().item():
                        self.assertEqual(int(got.argmax()), int(want.argmax()))
                        argmax_checked += 1
                    # The K/V of every real token equals eager's (earlier chunks: the same eager computation).
                    ka, kb = kv[:, :, kv_slots(ba, 0, n)].double(), kv[:, :, kv_slots(bb, 0, n)].double()
                    self.assertLess(((ka - kb).norm() / ka.norm()).item(), tol)
                    # Nothing is written outside this step's slots of b and the scratch block.
                    flat_before = before.view_as(kv)
                    touched = torch.zeros(kv.shape[2], dtype=torch.bool)
                    touched[kv_slots(bb, start, n)] = True
                    touched[scratch] = True
                    untouched = (~touched).nonzero().flatten().to(kv.device)
                    self.assertTrue(torch.equal(kv.index_select(2, untouched), flat_before.index_select(2, untouched)))
                    self.assertFalse(torch.equal(kv[:, :, kv_slots(bb, start, n)],
                                                 flat_before[:, :, kv_slots(bb, start, n)]))
                    for row in rows:
                        r.store.bt.release(row)
            self.assertGreaterEqual(argmax_checked, len(cases) - 2)

    def _generate_all(self, w, chunk=None):
        """Greedy continuations of several prompts (each alone, prompts in chunks of `chunk` tokens)."""
        g = torch.Generator().manual_seed(1)
        out = []
        for i, n in enumerate((2, 9, 31, 40, 64, 130, 250)):
            prompt = torch.randint(0, 97, (n,), generator=g).tolist()
            toks, _ = Driver(w, seed=i).generate(f"r{i}", prompt, 256 - n if n > 240 else 12, chunk=chunk)
            out.append(toks)
        return out

    def test_greedy_continuations_equal_with_and_without_prefill_graphs(self):
        for chunk in (None, 48):
            with self.subTest(chunk=chunk):
                on = self.worker("fp32", prefill_graphs=True, num_blocks=128)
                want = self._generate_all(self.worker("fp32", prefill_graphs=False, num_blocks=128), chunk)
                got = self._generate_all(on, chunk)
                self.assertEqual(got, want)
                # Every multi-token prompt step replayed a graph (chunks short of the prompt's end included).
                steps = sum(-(-n // (chunk or n)) for n in (2, 9, 31, 40, 64, 130, 250))
                self.assertEqual(on.runner.prefill_graphs.replays, steps)

    def test_steps_launched_ahead_in_one_bucket(self):
        # Two prompts in the same bucket, the second launched before the first is finished: the static
        # logits of the bucket are overwritten by the second replay only after the first step sampled.
        pa, pb = list(range(3, 43)), list(range(50, 95))
        alone = {}
        for rid, p in (("a", pa), ("b", pb)):
            alone[rid] = Driver(self.worker("fp32", prefill_graphs=False)).generate(rid, p, 1)[0]
        w = self.worker("fp32")
        r = w.runner
        self.assertEqual(r.prefill_graphs.size_for(len(pa)), r.prefill_graphs.size_for(len(pb)))

        def new(step, rid, prompt, blocks):
            return {"stepId": step, "scheduledNewReqs": [{"reqId": rid, "promptTokenIds": prompt, "sampling": sampling(),
                                                          "blockIds": blocks, "numComputedTokens": 0}],
                    "scheduledCachedReqs": [], "numScheduledTokens": {rid: len(prompt)},
                    "totalNumScheduledTokens": len(prompt), "finishedReqIds": [], "preemptedReqIds": []}

        ha = r.launch(new(1, "a", pa, [0, 1, 2]))
        hb = r.launch(new(2, "b", pb, [3, 4, 5]))
        got = {**r.finish(ha)["sampledTokenIds"], **r.finish(hb)["sampledTokenIds"]}
        self.assertEqual(got, alone)
        self.assertEqual(r.prefill_graphs.replays, 2)

    def test_prefix_cache_start_and_eager_cases(self):
        # b shares a's first four blocks (a prefix-cache hit): its step starts at token 64 of its prompt.
        g = torch.Generator().manual_seed(2)
        shared = torch.randint(0, 97, (64,), generator=g).tolist()
        pa = shared + torch.randint(0, 97, (10,), generator=g).tolist()
        pb = shared + torch.randint(0, 97, (36,), generator=g).tolist()
        want = Driver(self.worker("fp32", prefill_graphs=False)).generate("b", pb, 6)[0]
        w = self.worker("fp32")
        r = w.runner
        d = Driver(w)
        d.generate("a", pa, 1)
        replays = r.prefill_graphs.replays
        blocks_b = d.reqs["a"]["blocks"][:4] + [d.free.pop() for _ in range(3)]
        plan = {"stepId": 100, "scheduledNewReqs": [{"reqId": "b", "promptTokenIds": pb, "sampling": sampling(),
                                                     "blockIds": blocks_b, "numComputedTokens": 64}],
                "scheduledCachedReqs": [], "numScheduledTokens": {"b": 36}, "totalNumScheduledTokens": 36,
                "finishedReqIds": [], "preemptedReqIds": []}
        got = r.execute(plan)["sampledTokenIds"]["b"]
        self.assertEqual(r.prefill_graphs.replays, replays + 1)
        nc = len(pb) + 1
        for step in range(5):
            cached = {"reqId": "b", "newBlockIds": [], "numComputedTokens": nc - 1, "resumedFromPreemption": False}
            got += r.execute({"stepId": 101 + step, "scheduledNewReqs": [], "scheduledCachedReqs": [cached],
                              "numScheduledTokens": {"b": 1}, "totalNumScheduledTokens": 1,
                              "finishedReqIds": [], "preemptedReqIds": []})["sampledTokenIds"]["b"]
            nc += 1
        self.assertEqual(got, want)
        # Prompt logprobs and batches of two run eagerly.
        replays = r.prefill_graphs.replays
        d2 = Driver(w, seed=4)
        d2.run(new=[("p", pa, len(pa), sampling(promptLogprobs=True))])
        d2.run(new=[("x", pa[:20], 20, sampling()), ("y", pb[:30], 30, sampling())])
        self.assertEqual(r.prefill_graphs.replays, replays)


if __name__ == "__main__":
    unittest.main()
