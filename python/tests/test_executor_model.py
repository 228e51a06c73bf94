# Executor model path on the CPU (reference attention): paged KV + chunked prefill against a dense fp64
# forward, batched-vs-alone greedy identity, preemption/resume, and checkpoint loading errors.
import os
import sys
import tempfile
import unittest
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402
from plan_builder import PlanBuilder  # noqa: E402
from test_executor_fixtures import dense_forward, make_checkpoint  # noqa: E402


def sampling(**over):
    s = {"strategy": "greedy", "temperature": 1.0, "topK": 0, "topP": 1.0, "typicalP": 1.0, "minP": 0.0,
         "repetitionPenalty": 1.0, "presencePenalty": 0.0, "frequencyPenalty": 0.0, "logitBias": {}, "seed": 0,
         "penaltyAlpha": 0.0, "numTopLogprobs": 0, "promptLogprobs": False, "minTokens": 0, "eosTokenIds": [2],
         "ignoreEos": False}
    s.update(over)
    return s


def make_worker(model_dir, num_blocks=64, **over):
    opts = ExecutorOptions(**{"model_dir": model_dir, "device": "cpu", "block_size": 4, "max_num_seqs": 16, **over})
    w = Worker(opts, 0, 1)
    w.load({})
    w.init_cache({"numBlocks": num_blocks})
    return w


def spy_logits_meta(worker) -> list:
    """The logits_meta each of worker's model forwards is called with, in order (the list fills as they run)."""
    metas, forward = [], worker.runner.model.forward

    def spy(*args, **kw):
        metas.append(kw.get("logits_meta"))
        return forward(*args, **kw)

    worker.runner.model.forward = spy
    return metas


class Driver:
    """A minimal scheduler stand-in: plans from a PlanBuilder (blocks from a shuffled free list), each run at once."""

    def __init__(self, worker, seed=0):
        self.w = worker
        self.plans = PlanBuilder(worker.num_blocks, worker.opts.block_size, seed)
        self.reqs, self.free = self.plans.reqs, self.plans.free

    def run(self, new=(), cached=(), finished=(), preempted=()):
        out = self.w.execute({"plan": self.plans.plan(new, cached, finished, preempted)})
        self.plans.record(out)
        return out

    def generate(self, rid, prompt, steps, s=None, chunk=None):
        s = s or sampling()
        chunk = chunk or len(prompt)
        out = self.run(new=[(rid, prompt, min(chunk, len(prompt)), s)])
        while self.reqs[rid]["computed"] < len(prompt):
            out = self.run(cached=[(rid, min(chunk, len(prompt) - self.reqs[rid]["computed"]))])
        for _ in range(steps - 1):
            out = self.run(cached=[(rid, 1)])
        return self.reqs[rid]["tokens"][len(prompt):], out


def greedy_goldens_batched(worker, cases, chunk=5) -> bool:
    """Runs every golden case at once (prompts chunked by `chunk` tokens, decodes batched with them) and
    says whether each greedy continuation equals the golden one token for token."""
    drv = Driver(worker, seed=1)
    ids = {f"b{i}": c for i, c in enumerate(cases)}
    drv.run(new=[(rid, c["input_ids"], min(chunk, len(c["input_ids"])), sampling()) for rid, c in ids.items()])
    for _ in range(200):
        runs = [(rid, min(chunk, len(drv.reqs[rid]["tokens"]) - drv.reqs[rid]["computed"]))
                for rid, c in ids.items()
                if len(drv.reqs[rid]["tokens"]) < len(c["input_ids"]) + len(c["greedy"]["ids"])]
        if not runs:
            break
        drv.run(cached=runs)
    return all(drv.reqs[rid]["tokens"][len(c["input_ids"]):] == c["greedy"]["ids"] for rid, c in ids.items())


class WholePromptsTest(unittest.TestCase):
    def test_only_steps_of_prompts_from_their_first_token(self):
        # The GPU attention reads a step's own K/V instead of the paged cache only for such steps.
        from lmi_executor.attention import AttentionMetadata, whole_prompts

        def meta(q_lens, ctx_lens):
            qsl = [0]
            for n in q_lens:
                qsl.append(qsl[-1] + n)
            z = torch.zeros(1)
            return AttentionMetadata(slot_mapping=z, query_start_loc=z, seq_lens=z, block_tables=z,
                                     max_query_len=max(q_lens), max_seq_len=max(ctx_lens),
                                     query_start_loc_cpu=qsl, seq_lens_cpu=list(ctx_lens))

        self.assertTrue(whole_prompts(meta([512] * 16, [512] * 16)))
        self.assertTrue(whole_prompts(meta([5, 300, 1], [5, 300, 1])))  # a one-token prompt among them
        self.assertTrue(whole_prompts(meta([256], [256])))  # the first chunk of a longer prompt
        self.assertFalse(whole_prompts(meta([256], [512])))  # its second chunk
        self.assertFalse(whole_prompts(meta([100, 40], [100, 72])))  # a prefix-cache hit
        self.assertFalse(whole_prompts(meta([100, 1], [100, 37])))  # a decode row in the step
        self.assertFalse(whole_prompts(meta([1, 1], [1, 1])))  # one-token prompts alone: decode form


class ModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ck = {}
        for kind in ("llama", "qwen2", "qwen3"):
            cls.ck[kind] = make_checkpoint(os.path.join(cls.tmp.name, kind), kind, seed=len(kind))
        cls.ck["tied"] = make_checkpoint(os.path.join(cls.tmp.name, "tied"), "mistral", seed=3, tie=True)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_prompt_logprobs_match_dense_forward_for_every_family_with_chunked_prefill(self):
        prompt = [5, 17, 42, 8, 91, 33, 3, 60, 12, 77, 1, 50, 9]
        for kind in self.ck:
            with self.subTest(kind=kind):
                w = make_worker(os.path.join(self.tmp.name, kind))
                d = Driver(w)
                s = sampling(promptLogprobs=True)
                outs = [d.run(new=[("a", prompt, 5, s)])]
                outs.append(d.run(cached=[("a", 5)]))
                outs.append(d.run(cached=[("a", 3)]))
                got = [e for o in outs for e in o["promptLogprobs"]["a"]]
                self.assertIsNone(got[0])
                ref = torch.log_softmax(dense_forward(self.ck[kind], prompt), -1)
                want = [ref[p - 1, prompt[p]].item() for p in range(1, len(prompt))]
                self.assertEqual(len(got), len(prompt))
                for g, r in zip(got[1:], want):
                    self.assertAlmostEqual(g["logprob"], r, delta=2e-4)
                # The first generated token is the dense argmax after the full prompt.
                self.assertEqual(outs[-1]["sampledTokenIds"]["a"], [int(ref[-1].argmax())])

    def test_residual_added_inside_the_gemms_matches_dense_forward(self):
        # Prompt-sized steps on the GPU add the o and down projections into the residual inside the GEMM
        # (llama.RESIDUAL_IN_GEMM_ABOVE_ROWS); with the bound at 0 every step here takes that path.
        from lmi_executor.models import llama

        prompt = [5, 17, 42, 8, 91, 33, 3, 60, 12, 77, 1, 50, 9]
        bound = llama.RESIDUAL_IN_GEMM_ABOVE_ROWS
        llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = 0
        try:
            for kind in self.ck:
                with self.subTest(kind=kind):
                    w = make_worker(os.path.join(self.tmp.name, kind))
                    self.assertTrue(w.runner.model._residual_in_gemm(1))
                    d = Driver(w)
                    outs = [d.run(new=[("a", prompt, 8, sampling(promptLogprobs=True))]),
                            d.run(cached=[("a", 5)])]
                    got = [e for o in outs for e in o["promptLogprobs"]["a"]][1:]
                    ref = torch.log_softmax(dense_forward(self.ck[kind], prompt), -1)
                    for p, g in enumerate(got, start=1):
                        self.assertAlmostEqual(g["logprob"], ref[p - 1, prompt[p]].item(), delta=2e-4)
                    seq = prompt + outs[-1]["sampledTokenIds"]["a"]
                    self.assertEqual(seq[-1], int(ref[-1].argmax()))
                    nxt = d.run(cached=[("a", 1)])["sampledTokenIds"]["a"]  # a decode step, fused too
                    self.assertEqual(nxt, [int(dense_forward(self.ck[kind], seq)[-1].argmax())])
        finally:
            llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = bound

    def test_last_layer_computes_the_sampled_rows_only_with_the_same_results(self):
        # One mixed step: a whole prompt, a chunk short of its prompt's end (no sampled row) and a decode. The
        # last layer then computes attention, o and the MLP for the two sampled rows alone; its tokens and
        # logprobs are those of computing every row (LMI_TRIM_LAST_LAYER=0) and of the dense forward, for each
        # residual form: separate adds (the CPU default), added inside the GEMMs, and inside the GEMMs for the
        # step's 17 rows but separate for the 2 rows left (bound 4).
        from lmi_executor.models import llama

        a, b, c = [5, 17, 42, 8, 91, 33, 3], [60, 12, 77, 1, 50, 9, 14, 28, 2, 71], [4, 8, 15]
        bound = llama.RESIDUAL_IN_GEMM_ABOVE_ROWS

        def run(kind, trim):
            with mock.patch.dict(os.environ, {"LMI_TRIM_LAST_LAYER": "1" if trim else "0"}):
                w = make_worker(os.path.join(self.tmp.name, kind))
            metas = spy_logits_meta(w)
            d = Driver(w)
            d.run(new=[("c", c, 3, sampling())])  # c's prompt: one sampled row of three
            out = d.run(new=[("a", a, 7, sampling()), ("b", b, 9, sampling())], cached=[("c", 1)])
            return out, metas

        try:
            for bound_now in (256, 0, 4):
                llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = bound_now
                for kind in self.ck:
                    with self.subTest(kind=kind, bound=bound_now):
                        got, metas = run(kind, True)
                        want, plain = run(kind, False)
                        self.assertEqual([m is not None for m in metas], [True, True])
                        self.assertEqual(plain, [None, None])
                        # a's last token (new requests come first in a step), then c's decode row.
                        self.assertEqual(metas[1].seq_lens_cpu, [len(a), len(c) + 1])
                        self.assertEqual(set(got["sampledTokenIds"]), {"a", "c"})
                        self.assertEqual(got["sampledTokenIds"], want["sampledTokenIds"])
                        for rid in ("a", "c"):
                            self.assertAlmostEqual(got["logprobs"][rid][0]["logprob"],
                                                   want["logprobs"][rid][0]["logprob"], delta=1e-5)
                        ref = torch.log_softmax(dense_forward(self.ck[kind], a), -1)[-1]
                        tok = got["sampledTokenIds"]["a"][0]
                        self.assertEqual(tok, int(ref.argmax()))
                        self.assertAlmostEqual(got["logprobs"]["a"][0]["logprob"], ref[tok].item(), delta=2e-4)
        finally:
            llama.RESIDUAL_IN_GEMM_ABOVE_ROWS = bound

    def test_prompt_logprobs_keep_every_row_through_the_last_layer(self):
        w = make_worker(os.path.join(self.tmp.name, "llama"))
        metas = spy_logits_meta(w)
        Driver(w).run(new=[("a", [5, 17, 42, 8], 4, sampling(promptLogprobs=True)), ("b", [3, 9], 2, sampling())])
        self.assertEqual(metas, [None])

    def test_step_log_counts_the_collector_passes_between_launches(self):
        import gc
        import json

        log = os.path.join(self.tmp.name, "steps.jsonl")
        os.environ["LMI_STEP_LOG"] = log
        try:
            w = make_worker(os.path.join(self.tmp.name, "llama"))
        finally:
            del os.environ["LMI_STEP_LOG"]
        d = Driver(w)
        d.run(new=[("a", [5, 17, 42, 8], 4, sampling())])
        gc.collect()  # a full pass between the two launches: the second line carries it
        d.run(cached=[("a", 1)])
        w.runner._step_log.close()
        with open(log) as f:
            lines = [json.loads(x) for x in f]
        self.assertEqual([x["tokens"] for x in lines], [4, 1])
        self.assertEqual([x["decode"] for x in lines], [False, True])
        self.assertGreaterEqual(lines[1]["gcFull"], 1)
        self.assertGreater(lines[1]["gcMs"], 0.0)
        self.assertTrue(all(x["launchMs"] >= 0 for x in lines))
        # One collector callback for the process, however many runners keep a step log.
        from lmi_executor.runner import _GcClock

        os.environ["LMI_STEP_LOG"] = log
        try:
            make_worker(os.path.join(self.tmp.name, "llama")).runner._step_log.close()
        finally:
            del os.environ["LMI_STEP_LOG"]
        self.assertEqual(sum(cb == _GcClock._on_gc for cb in gc.callbacks), 1)

    def test_greedy_continuation_matches_dense_argmax_each_step(self):
        w = make_worker(os.path.join(self.tmp.name, "llama"))
        prompt = [4, 8, 15, 16, 23, 42]
        toks, _ = Driver(w).generate("a", prompt, 10, chunk=4)
        seq = list(prompt)
        for _ in range(10):
            seq.append(int(dense_forward(self.ck["llama"], seq)[-1].argmax()))
        self.assertEqual(toks, seq[len(prompt):])

    def test_batched_equals_alone(self):
        mdir = os.path.join(self.tmp.name, "qwen3")
        prompts = {"a": [3, 9, 27, 81, 7], "b": [11, 22, 33], "c": [60, 61, 62, 63, 64, 65, 66, 67, 68]}
        alone = {rid: Driver(make_worker(mdir)).generate(rid, p, 6)[0] for rid, p in prompts.items()}
        d = Driver(make_worker(mdir), seed=5)
        d.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
        for _ in range(5):
            d.run(cached=[(rid, 1) for rid in prompts])
        for rid, p in prompts.items():
            self.assertEqual(d.reqs[rid]["tokens"][len(p):], alone[rid], rid)

    def test_eager_lm_head_rows_padded_to_a_bucket(self):
        # Three sampled rows: the model computes the LM head for the 4-row bucket (copies of the last row), the
        # runner hands back 3 rows, and the tokens are those of an unpadded run.
        mdir = os.path.join(self.tmp.name, "llama")
        prompts = {"a": [3, 9, 27, 81, 7], "b": [11, 22, 33], "c": [60, 61, 62, 63]}
        runs = {}
        for pad in (True, False):
            w = make_worker(mdir)
            if not pad:
                w.runner._lm_buckets = []
            seen, fwd = [], w.runner.model.forward

            def spy(*a, _fwd=fwd, _seen=seen, **kw):
                _seen.append(a[4].shape[0])
                return _fwd(*a, **kw)

            w.runner.model.forward = spy
            d = Driver(w)
            d.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
            for _ in range(3):
                d.run(cached=[(rid, 1) for rid in prompts])
            runs[pad] = ({rid: d.reqs[rid]["tokens"] for rid in prompts}, seen)
        self.assertEqual(runs[True][0], runs[False][0])
        self.assertEqual(runs[True][1], [4, 4, 4, 4])
        self.assertEqual(runs[False][1], [3, 3, 3, 3])

    def test_preempted_request_resumes_with_same_tokens(self):
        mdir = os.path.join(self.tmp.name, "llama")
        prompt = [9, 8, 7, 6, 5]
        # With penalties too: a resumed request's device history is rebuilt from every token it resends.
        for s in (sampling(), sampling(repetitionPenalty=0.3, presencePenalty=-0.5)):
            with self.subTest(s=s):
                want, _ = Driver(make_worker(mdir)).generate("a", prompt, 6, s=s)
                d = Driver(make_worker(mdir), seed=9)
                d.run(new=[("a", prompt, 5, s)])
                d.run(cached=[("a", 1)])
                d.run(preempted=["a"])
                d.run(new=[("b", [60, 61, 62, 63, 64, 65, 66], 7, s)])  # another request takes the row meanwhile
                d.run(finished=["b"])
                toks = d.reqs["a"]["tokens"]
                d.run(cached=[("a", len(toks), True)])  # recompute everything known, sample the next
                for _ in range(3):
                    d.run(cached=[("a", 1)])
                self.assertEqual(d.reqs["a"]["tokens"][len(prompt):], want)

    def test_finished_requests_free_their_rows(self):
        w = make_worker(os.path.join(self.tmp.name, "llama"))
        d = Driver(w)
        for i in range(40):  # more than max_num_seqs=16 over time, never more than 1 at once
            d.run(new=[(f"r{i}", [1, 2, 3], 3, sampling())])
            d.run(finished=[f"r{i}"])
        self.assertEqual(len(w.runner.store.running), 0)

    def test_incomplete_checkpoint_is_an_error(self):
        mdir = os.path.join(self.tmp.name, "broken")
        make_checkpoint(mdir, "llama", seed=1)
        os.remove(os.path.join(mdir, "model-00002-of-00002.safetensors"))
        with open(os.path.join(mdir, "model.safetensors.index.json"), "w") as f:
            f.write('{"weight_map": {"x": "model-00001-of-00002.safetensors"}}')
        w = Worker(ExecutorOptions(model_dir=mdir, device="cpu"), 0, 1)
        with self.assertRaisesRegex(ValueError, "incomplete"):
            w.load({})

    def test_dummy_weights_need_only_config(self):
        mdir = os.path.join(self.tmp.name, "dummy")
        os.makedirs(mdir, exist_ok=True)
        import shutil

        shutil.copy(os.path.join(self.tmp.name, "llama", "config.json"), mdir)
        w = make_worker(mdir, load_format="dummy")
        toks, _ = Driver(w).generate("a", [1, 2, 3, 4], 3)
        self.assertEqual(len(toks), 3)
        self.assertTrue(all(0 <= t < 97 for t in toks))


if __name__ == "__main__":
    unittest.main()
