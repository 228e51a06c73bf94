# Contrastive search in the Python executor's runner (CPU, reference attention): continuations equal a brute-force
# HF-style search over the dense fp64 forward (top-k of the processed probabilities, one forward per candidate,
# (1 - alpha) * p - alpha * max cosine against every earlier position's final hidden state), with chunked prompts
# and candidates on both sides of a block boundary; other requests in the same steps are untouched; preemption
# and the look-ahead's scratch blocks leave the engine's blocks as they were.
import json
import os
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from test_executor_fixtures import dense_forward, make_checkpoint  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

from lmi_executor import contrastive  # noqa: E402
from lmi_executor.runner import ModelRunner  # noqa: E402

PROMPT = [5, 17, 42, 8, 91, 33, 3, 60, 12, 77, 1]


def reference(ck: dict, prompt: list, steps: int, k: int, alpha: float, repetition_penalty: float = 1.0) -> list:
    toks = list(prompt)
    for _ in range(steps):
        logits, hidden = dense_forward(ck, toks, hidden=True)
        x = logits[-1].clone()
        if repetition_penalty != 1.0:
            for t in set(toks):
                x[t] = x[t] / repetition_penalty if x[t] > 0 else x[t] * repetition_penalty
        probs = torch.softmax(x, -1)
        top = probs.topk(k)
        ctx = torch.nn.functional.normalize(hidden, dim=-1)
        best, best_score = None, -float("inf")
        for p, c in zip(top.values.tolist(), top.indices.tolist()):
            h = dense_forward(ck, toks + [c], hidden=True)[1][-1]
            score = (1 - alpha) * p - alpha * (ctx @ torch.nn.functional.normalize(h, dim=0)).max().item()
            if score > best_score:
                best, best_score = c, score
        toks.append(best)
    return toks[len(prompt):]


class ContrastiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ck = {kind: make_checkpoint(os.path.join(cls.tmp.name, kind), kind, seed=len(kind))
                  for kind in ("llama", "qwen2", "qwen3")}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_continuation_equals_brute_force_reference_for_every_family(self):
        # block_size 4: the 11-token prompt ends inside a block, and later positions fall on block starts.
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
        for kind, ck in self.ck.items():
            with self.subTest(kind=kind):
                d = Driver(make_worker(os.path.join(self.tmp.name, kind)))
                got, _ = d.generate("a", PROMPT, 8, s, chunk=4)
                self.assertEqual(got, reference(ck, PROMPT, 8, 4, 0.6))
                self.assertNotEqual(got, reference(ck, PROMPT, 8, 1, 0.0))  # not what greedy continues with

    def test_penalties_and_other_k_and_alpha(self):
        s = sampling(strategy="contrastive", topK=6, penaltyAlpha=0.3, repetitionPenalty=1.3)
        d = Driver(make_worker(os.path.join(self.tmp.name, "llama")))
        got, _ = d.generate("a", PROMPT, 6, s)
        self.assertEqual(got, reference(self.ck["llama"], PROMPT, 6, 6, 0.3, repetition_penalty=1.3))
        # Greedy with the same penalty (one candidate, alpha 0) continues otherwise: a greedy pick would be seen.
        self.assertNotEqual(got, reference(self.ck["llama"], PROMPT, 6, 1, 0.0, repetition_penalty=1.3))

    def test_logprob_is_of_the_raw_logits_and_alternatives_are_returned(self):
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6, numTopLogprobs=3)
        d = Driver(make_worker(os.path.join(self.tmp.name, "qwen2")))
        out = d.run(new=[("a", PROMPT, len(PROMPT), s)])
        tok = out["sampledTokenIds"]["a"][0]
        lsm = torch.log_softmax(dense_forward(self.ck["qwen2"], PROMPT)[-1], -1)
        entry = out["logprobs"]["a"][0]
        self.assertAlmostEqual(entry["logprob"], lsm[tok].item(), delta=2e-4)
        self.assertEqual([i for i, _ in entry["top"]], lsm.topk(3).indices.tolist())

    def test_prompt_logprobs_with_a_chunked_prompt(self):
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6, promptLogprobs=True)
        d = Driver(make_worker(os.path.join(self.tmp.name, "qwen3")))
        outs = [d.run(new=[("a", PROMPT, 4, s)]), d.run(cached=[("a", 4)]), d.run(cached=[("a", 3)])]
        got = [e for o in outs for e in o["promptLogprobs"]["a"]]
        self.assertIsNone(got[0])
        ref = torch.log_softmax(dense_forward(self.ck["qwen3"], PROMPT), -1)
        self.assertEqual(len(got), len(PROMPT))
        for p, g in enumerate(got[1:], start=1):
            self.assertAlmostEqual(g["logprob"], ref[p - 1, PROMPT[p]].item(), delta=2e-4)
        for _ in range(3):
            d.run(cached=[("a", 1)])
        self.assertEqual(d.reqs["a"]["tokens"][len(PROMPT):], reference(self.ck["qwen3"], PROMPT, 4, 4, 0.6))

    def test_other_requests_in_the_same_steps_are_untouched(self):
        w = make_worker(os.path.join(self.tmp.name, "qwen3"))
        alone, _ = Driver(make_worker(os.path.join(self.tmp.name, "qwen3"))).generate("g", PROMPT[:7], 8)
        d = Driver(w)
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
        d.run(new=[("c", PROMPT, 6, s), ("g", PROMPT[:7], 7, sampling())])
        d.run(cached=[("c", 5)])
        for _ in range(7):
            d.run(cached=[("c", 1), ("g", 1)])
        self.assertEqual(d.reqs["g"]["tokens"][7:], alone)
        self.assertEqual(d.reqs["c"]["tokens"][len(PROMPT):], reference(self.ck["qwen3"], PROMPT, 8, 4, 0.6))

    def test_preempted_request_resumes_with_the_same_picks(self):
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
        d = Driver(make_worker(os.path.join(self.tmp.name, "llama")))
        d.run(new=[("a", PROMPT, len(PROMPT), s)])
        for _ in range(3):
            d.run(cached=[("a", 1)])
        d.run(preempted=["a"])
        n = len(d.reqs["a"]["tokens"])
        d.run(cached=[("a", n, True)])  # resumed: every known token computed again
        for _ in range(3):
            d.run(cached=[("a", 1)])
        self.assertEqual(d.reqs["a"]["tokens"][len(PROMPT):], reference(self.ck["llama"], PROMPT, 8, 4, 0.6))

    def test_look_ahead_writes_only_scratch_blocks(self):
        w = make_worker(os.path.join(self.tmp.name, "llama"))
        self.assertEqual(len(w.runner.contrastive_blocks), contrastive.SCRATCH_BLOCKS)
        self.assertEqual(w.runner.contrastive_blocks[0], w.num_blocks + 1)
        d = Driver(w)
        d.run(new=[("a", PROMPT, len(PROMPT), sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6))])
        before = w.kv[:, :, : w.num_blocks].clone()
        forward = ModelRunner._forward_eager
        # The next step's own forward writes position 11's K/V into an engine block; the look-ahead must add nothing.
        calls = []

        def spy(runner, *a, **kw):
            res = forward(runner, *a, **kw)
            calls.append(w.kv[:, :, : w.num_blocks].clone())
            return res

        ModelRunner._forward_eager = spy
        try:
            d.run(cached=[("a", 1)])
        finally:
            ModelRunner._forward_eager = forward
        self.assertEqual(len(calls), 1)
        self.assertTrue(torch.equal(calls[0], w.kv[:, :, : w.num_blocks]))
        self.assertFalse(torch.equal(before, w.kv[:, :, : w.num_blocks]))

    def test_a_step_past_the_kept_hidden_states_is_refused_by_name(self):
        # The engine gives contrastive requests no prefix-cache hit; a plan that starts past the positions whose
        # hidden states the executor keeps is an error that says so, and the executor keeps serving.
        d = Driver(make_worker(os.path.join(self.tmp.name, "llama")))
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
        plan = d.plans.plan(new=[("a", PROMPT, 3, s)])
        plan["scheduledNewReqs"][0]["numComputedTokens"] = 8  # as if 8 prompt tokens came from the cache
        with self.assertRaisesRegex(ValueError, "hidden state of every position"):
            d.w.execute({"plan": plan})
        got, _ = d.generate("b", PROMPT, 2, s)
        self.assertEqual(got, reference(self.ck["llama"], PROMPT, 2, 4, 0.6))

    def test_hidden_states_in_pool_chunks_of_two_requests_and_returned_when_they_end(self):
        # 4-position chunks: two requests growing in turn take interleaved chunks of the pool, so every pick reads
        # its request's states through the chunk map; finishing and preempting give the chunks back.
        saved = contrastive.HIDDEN_CHUNK
        contrastive.HIDDEN_CHUNK = 4
        try:
            w = make_worker(os.path.join(self.tmp.name, "qwen2"))
            pool = w.runner.hidden_pool
            total = len(pool.free)
            self.assertEqual(pool.positions, contrastive.pool_positions(w.opts.max_num_batched_tokens,
                                                                        w.max_model_len))
            d = Driver(w)
            s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
            d.run(new=[("a", PROMPT, 3, s), ("b", PROMPT[:5], 3, s)])
            d.run(cached=[("a", 3), ("b", 2)])
            d.run(cached=[("a", 5)])
            for _ in range(7):
                d.run(cached=[("a", 1), ("b", 1)])
            a, b = (w.runner.store.running[r] for r in ("a", "b"))
            self.assertEqual(a.hidden_len, len(PROMPT) + 7)
            self.assertEqual(len(a.hidden_chunks), -(-a.hidden_len // 4))
            first = a.hidden_chunks[0]
            self.assertNotEqual(a.hidden_chunks, list(range(first, first + len(a.hidden_chunks))))  # b's between
            self.assertEqual(d.reqs["a"]["tokens"][len(PROMPT):], reference(self.ck["qwen2"], PROMPT, 8, 4, 0.6))
            self.assertEqual(d.reqs["b"]["tokens"][5:], reference(self.ck["qwen2"], PROMPT[:5], 8, 4, 0.6))
            d.run(preempted=["b"])
            self.assertEqual(len(pool.free), total - len(a.hidden_chunks))
            d.run(finished=["a", "b"])
            self.assertEqual(len(pool.free), total)
        finally:
            contrastive.HIDDEN_CHUNK = saved

    def test_a_full_hidden_pool_is_an_error_that_says_so(self):
        d = Driver(make_worker(os.path.join(self.tmp.name, "llama")))
        pool = d.w.runner.hidden_pool
        pool.free = pool.free[:1]  # one chunk left: the engine would not admit more than that
        s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
        st = type("S", (), {"req_id": "x", "hidden_chunks": [], "hidden_index": None, "hidden_len": 0})()
        pool.grow(st, contrastive.HIDDEN_CHUNK)
        with self.assertRaisesRegex(RuntimeError, "hidden-state pool .* is full"):
            pool.grow(st, contrastive.HIDDEN_CHUNK + 1)
        pool.release(st)
        got, _ = d.generate("b", PROMPT, 2, s)
        self.assertEqual(got, reference(self.ck["llama"], PROMPT, 2, 4, 0.6))

    def test_block_prefix_copy_keeps_bytes_for_every_cache_dtype(self):
        dtypes = [torch.float32, torch.bfloat16] + ([torch.float8_e4m3fn] if hasattr(torch, "float8_e4m3fn") else [])
        for dtype in dtypes:
            with self.subTest(dtype=dtype):
                caches = [tuple(torch.randn(6, 4, 2, 8).to(dtype) for _ in range(2)) for _ in range(3)]
                before = [tuple(c.clone() for c in pair) for pair in caches]
                contrastive.copy_block_prefix(caches, 1, [4, 5], 3)
                for pair, old in zip(caches, before):
                    for c, o in zip(pair, old):
                        raw, raw_old = c.view(torch.uint8), o.view(torch.uint8)
                        for b in (4, 5):
                            self.assertTrue(torch.equal(raw[b, :3], raw_old[1, :3]))
                            self.assertTrue(torch.equal(raw[b, 3:], raw_old[b, 3:]))
                        self.assertTrue(torch.equal(raw[:4], raw_old[:4]))

    def test_top_k_is_capped_by_the_scratch_blocks(self):
        self.assertEqual(contrastive.num_candidates(sampling(topK=0)), contrastive.DEFAULT_TOP_K)
        self.assertEqual(contrastive.num_candidates(sampling(topK=1000)), contrastive.SCRATCH_BLOCKS)


ZOO = os.path.join(os.path.dirname(__file__), "..", "..", "models", "zoo")


def hf_reference(model, prompt: list, steps: int, k: int, alpha: float) -> list:
    """Brute-force contrastive search over a transformers model (fp32): its logits and hidden_states[-1]."""
    toks = list(prompt)
    dev = next(model.parameters()).device
    for _ in range(steps):
        with torch.no_grad():
            o = model(torch.tensor([toks], device=dev), output_hidden_states=True)
            top = torch.softmax(o.logits[0, -1].double(), -1).topk(k)
            ctx = torch.nn.functional.normalize(o.hidden_states[-1][0].double(), dim=-1)
            cands = torch.tensor([toks + [c] for c in top.indices.tolist()], device=dev)
            h = torch.nn.functional.normalize(model(cands, output_hidden_states=True).hidden_states[-1][:, -1].double(),
                                              dim=-1)
        score = (1 - alpha) * top.values - alpha * (h @ ctx.T).max(dim=1).values
        toks.append(top.indices[int(score.argmax())].item())
    return toks[len(prompt):]


@unittest.skipUnless(torch.cuda.is_available(), "needs a CUDA GPU")
class ContrastiveGpuTest(unittest.TestCase):
    def test_zoo_models_with_graphs_pick_what_transformers_brute_force_picks(self):
        # Both model families (Llama's fused kernels, GPT-2's), CUDA graphs and prefill graphs on: a contrastive
        # step leaves them and the decode-sized kernels aside. A greedy request runs beside it.
        try:
            from transformers import AutoModelForCausalLM
        except ImportError:
            self.skipTest("transformers is not installed")
        for name in ("llama", "gpt2"):
            with self.subTest(model=name):
                path = os.path.join(ZOO, name)
                with open(os.path.join(path, "golden.json")) as f:
                    case = json.load(f)["cases"][0]
                prompt = case["input_ids"]
                hf = AutoModelForCausalLM.from_pretrained(path).float().cuda().eval()
                want = hf_reference(hf, prompt, 10, 4, 0.6)
                del hf
                w = make_worker(path, device="cuda", dtype="fp32", enable_cuda_graph=True, num_blocks=256,
                                block_size=16)
                d = Driver(w)
                s = sampling(strategy="contrastive", topK=4, penaltyAlpha=0.6)
                d.run(new=[("c", prompt, len(prompt), s), ("g", prompt, len(prompt), sampling())])
                for _ in range(9):
                    d.run(cached=[("c", 1), ("g", 1)])
                self.assertEqual(d.reqs["c"]["tokens"][len(prompt):], want)
                self.assertEqual(d.reqs["g"]["tokens"][len(prompt):], case["greedy"]["ids"][:10])


if __name__ == "__main__":
    unittest.main()
