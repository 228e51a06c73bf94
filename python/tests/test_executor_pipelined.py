# Pipelined steps on the CPU: a step launched before the previous one is finished reads the pending
# sampled token on the device (last_token), in pure-decode and mixed prefill+decode steps, and gives the
# same tokens as running each request alone, one step at a time.
import os
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.runner import RING_STEPS, is_fast_sampling  # noqa: E402
from lmi_executor.server import _Finisher  # noqa: E402
from test_executor_fixtures import make_checkpoint  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402


def plan(step, new=(), cached=(), finished=(), s=None):
    p = {"stepId": step, "scheduledNewReqs": [], "scheduledCachedReqs": [], "numScheduledTokens": {},
         "totalNumScheduledTokens": 0, "finishedReqIds": list(finished), "preemptedReqIds": []}
    for rid, prompt, blocks in new:
        p["scheduledNewReqs"].append({"reqId": rid, "promptTokenIds": prompt, "sampling": s or sampling(),
                                      "blockIds": blocks, "numComputedTokens": 0})
        p["numScheduledTokens"][rid] = len(prompt)
    for rid, nc in cached:
        p["scheduledCachedReqs"].append({"reqId": rid, "newBlockIds": [], "numComputedTokens": nc,
                                         "resumedFromPreemption": False})
        p["numScheduledTokens"][rid] = 1
    p["totalNumScheduledTokens"] = sum(p["numScheduledTokens"].values())
    return p


class PipelinedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = os.path.join(cls.tmp.name, "llama")
        make_checkpoint(cls.model, "llama", seed=11)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_launching_ahead_gives_the_tokens_of_one_step_at_a_time(self):
        self._check_launch_ahead()

    def test_seeded_sampling_launched_ahead_draws_the_same_tokens(self):
        # The n of each draw counts pending samples, so it matches one step at a time; min tokens and
        # logit bias need counts only.
        for s in (sampling(strategy="sample", temperature=1.3, topK=20, topP=0.95, seed=7),
                  sampling(strategy="sample", temperature=0.8, minP=0.05, seed=3, minTokens=3, logitBias={"5": 2.0})):
            with self.subTest(s=s):
                self._check_launch_ahead(s=s)

    def test_penalties_launched_ahead_see_every_earlier_token(self):
        # Penalties read the runner's device history, where each sample lands in stream order: a step launched
        # before the previous one finished (its token not yet on the host) still penalizes that token.
        # Penalties below 1 / below 0 favour tokens already seen, so the continuation keeps reusing earlier tokens
        # and depends on the pending ones (with positive ones this tiny model's greedy picks never repeat).
        greedy_pen = sampling(repetitionPenalty=0.2, presencePenalty=-1.0, frequencyPenalty=0.3)
        seeded_pen = sampling(strategy="sample", temperature=0.9, topK=30, seed=5, repetitionPenalty=1.3,
                              frequencyPenalty=0.4)
        for s in (greedy_pen, seeded_pen):
            with self.subTest(s=s):
                self._check_launch_ahead(s=s, host_history_ref=True)
        plain, _ = Driver(make_worker(self.model)).generate("a", [5, 17, 42, 8, 91, 33], 4, s=sampling())
        pen, _ = Driver(make_worker(self.model)).generate("a", [5, 17, 42, 8, 91, 33], 4, s=greedy_pen)
        self.assertNotEqual(plain, pen)  # the penalties change this continuation, so the check above has teeth

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_launching_ahead_on_cuda_with_and_without_graphs(self):
        # Against one step at a time without graphs: the graphs' own greedy sampling and pending-token
        # reads must give the eager path's tokens, greedy and seeded.
        seeded = sampling(strategy="sample", temperature=1.3, topK=20, topP=0.95, seed=7)
        for graphs in (True, False):
            for s in (None, seeded):
                with self.subTest(graphs=graphs, seeded=s is not None):
                    self._check_launch_ahead(s=s, ref_opts={"device": "cuda", "enable_cuda_graph": False},
                                             device="cuda", enable_cuda_graph=graphs)

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_launches_ahead_never_wait_for_the_gpu(self):
        # Every sampling setting a step can carry while launched ahead (penalties, logit bias, min tokens, seeded
        # top-k / top-p, alternatives, greedy) queues its work without a host wait: PyTorch's sync debug mode
        # raises on any synchronizing call inside the launches. A first round with other request ids compiles
        # the kernels (a Triton compile may wait); the second is checked, with graphs and without.
        settings = [sampling(repetitionPenalty=1.2, presencePenalty=0.3, frequencyPenalty=0.1),
                    sampling(strategy="sample", temperature=0.8, topK=20, topP=0.9, seed=3, numTopLogprobs=3),
                    sampling(),
                    sampling(logitBias={"5": 1.5}, minTokens=3, repetitionPenalty=0.9)]
        prompts = [[5, 17, 42, 8, 91, 33], [7, 3, 60, 12, 77], [9, 9, 4], [11, 6, 25, 30]]
        for graphs in (True, False):
            runner = make_worker(self.model, device="cuda", enable_cuda_graph=graphs).runner
            for rnd in range(2):
                ids = [f"{rnd}-{i}" for i in range(4)]
                p1 = plan(10 * rnd + 1, new=[(r, pr, [12 * rnd + 3 * i + b for b in range(3)])
                                             for i, (r, pr) in enumerate(zip(ids, prompts))])
                for i, s in enumerate(settings):
                    p1["scheduledNewReqs"][i]["sampling"] = s
                checked = rnd == 1
                with self.subTest(graphs=graphs):
                    try:
                        if checked:
                            torch.cuda.set_sync_debug_mode("error")
                        handles = [runner.launch(p1)]
                        for step in range(3):
                            cached = [(r, len(pr) + step) for r, pr in zip(ids, prompts)]
                            handles.append(runner.launch(plan(10 * rnd + 2 + step, cached=cached)))
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                    outs = [runner.finish(h) for h in handles]
                    self.assertEqual([len(o["sampledTokenIds"]) for o in outs], [4, 4, 4, 4])
                    self.assertEqual(len(outs[-1]["logprobs"][ids[1]][0]["top"]), 3)
                runner.execute(plan(10 * rnd + 9, finished=ids))

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_graph_step_with_a_one_token_prompt_chunk(self):
        # Every row has one token, so the decode graph runs, but b's chunk does not reach its prompt's end:
        # only a samples, and its token must come from its own row of the graph's output.
        pa, pb = [5, 17, 42, 8, 91, 33], [7, 3, 60, 12, 77]
        opts = {"device": "cuda", "enable_cuda_graph": True}
        alone_a, _ = Driver(make_worker(self.model, device="cuda", enable_cuda_graph=False)).generate("a", pa, 3)
        alone_b, _ = Driver(make_worker(self.model, device="cuda", enable_cuda_graph=False)).generate("b", pb, 2)
        runner = make_worker(self.model, **opts).runner
        self.assertIsNotNone(runner.graphs)
        got = {"a": [], "b": []}

        def step(p):
            for rid, toks in runner.execute(p)["sampledTokenIds"].items():
                got[rid] += toks

        step(plan(1, new=[("a", pa, [0, 1, 2])]))
        p2 = plan(2, new=[("b", pb, [3, 4])], cached=[("a", 6)])
        p2["numScheduledTokens"]["b"] = 1  # a one-token chunk of b's five-token prompt
        step(p2)
        self.assertEqual(got, {"a": alone_a[:2], "b": []})
        p3 = plan(3, cached=[("a", 7)])
        p3["scheduledCachedReqs"].append({"reqId": "b", "newBlockIds": [], "numComputedTokens": 1,
                                          "resumedFromPreemption": False})
        p3["numScheduledTokens"]["b"] = 4
        step(p3)
        step(plan(4, cached=[("b", 5)]))
        self.assertEqual(got, {"a": alone_a, "b": alone_b})

    def _check_launch_ahead(self, s=None, ref_opts=None, host_history_ref=False, **opts):
        """host_history_ref: the one-step-at-a-time reference reads penalties' history from the host lists (the
        runner keeps no device history), which are complete when every step finished before the next."""
        pa, pb = [5, 17, 42, 8, 91, 33], [7, 3, 60, 12, 77]
        ref = ref_opts if ref_opts is not None else opts

        def ref_worker():
            w = make_worker(self.model, **ref)
            if host_history_ref:
                w.runner._hist_known = lambda st: None
            return w

        alone_a, _ = Driver(ref_worker()).generate("a", pa, 4, s=s)
        alone_b, _ = Driver(ref_worker()).generate("b", pb, 3, s=s)

        runner = make_worker(self.model, **opts).runner
        got = {"a": [], "b": []}

        def finish(h):
            for rid, toks in runner.finish(h)["sampledTokenIds"].items():
                got[rid] += toks

        h1 = runner.launch(plan(1, new=[("a", pa, [0, 1, 2])], s=s))
        # Mixed step (eager path): a's decode reads its pending first sample on the device; b prefills.
        h2 = runner.launch(plan(2, new=[("b", pb, [3, 4])], cached=[("a", 6)], s=s))
        self.assertEqual(runner.store.running["a"].num_pending, 2)
        finish(h1)
        # Pure decode: both inputs are pending samples of the step still unfinished.
        h3 = runner.launch(plan(3, cached=[("a", 7), ("b", 5)]))
        finish(h2)
        h4 = runner.launch(plan(4, cached=[("a", 8), ("b", 6)]))
        finish(h3)
        finish(h4)
        self.assertEqual(got["a"], alone_a)
        self.assertEqual(got["b"], alone_b)
        self.assertEqual(runner.store.running["a"].token_ids, pa + alone_a)
        self.assertEqual(runner.store.running["b"].num_pending, 0)

    def test_a_step_past_the_pending_samples_is_refused(self):
        runner = make_worker(self.model).runner
        runner.launch(plan(1, new=[("a", [5, 17, 42], [0])]))
        with self.assertRaisesRegex(ValueError, "known or pending"):
            runner.launch(plan(2, cached=[("a", 4)]))

    def test_only_prompt_logprobs_keep_a_step_from_launching_ahead(self):
        for over in ({}, {"strategy": "sample", "temperature": 0.7, "topP": 0.9}, {"minTokens": 3},
                     {"logitBias": {"4": 1.0}}, {"repetitionPenalty": 1.2}, {"presencePenalty": 0.5},
                     {"frequencyPenalty": 0.5}, {"numTopLogprobs": 2}, {"numTopLogprobs": 20}):
            self.assertTrue(is_fast_sampling(sampling(**over)), over)
        self.assertTrue(is_fast_sampling(sampling(promptLogprobs=True, numTopLogprobs=4)))
        self.assertFalse(is_fast_sampling(sampling(numTopLogprobs=21)))
        runner = make_worker(self.model).runner
        p = plan(1, new=[("a", [5, 17, 42], [0])])
        self.assertFalse(runner.waits_for_earlier_steps(p))
        p["scheduledNewReqs"][0]["sampling"] = sampling(strategy="sample", repetitionPenalty=1.1, numTopLogprobs=3)
        self.assertFalse(runner.waits_for_earlier_steps(p))
        p["scheduledNewReqs"][0]["sampling"] = sampling(promptLogprobs=True)
        self.assertFalse(runner.waits_for_earlier_steps(p))
        p["scheduledNewReqs"][0]["sampling"] = sampling(numTopLogprobs=21)
        self.assertTrue(runner.waits_for_earlier_steps(p))

    def test_prompt_logprobs_launched_ahead_equal_one_step_at_a_time(self):
        pa, pb = [5, 17, 42, 8, 91, 33], [7, 3, 60, 12, 77]
        sb = sampling(promptLogprobs=True, numTopLogprobs=2)
        alone_a, _ = Driver(make_worker(self.model)).generate("a", pa, 3)
        d = Driver(make_worker(self.model))
        first = d.run(new=[("b", pb, len(pb), sb)])
        alone_b = d.reqs["b"]["tokens"][len(pb):] + d.run(cached=[("b", 1)])["sampledTokenIds"]["b"]
        runner = make_worker(self.model).runner
        h1 = runner.launch(plan(1, new=[("a", pa, [0, 1, 2])]))
        p2 = plan(2, new=[("b", pb, [3, 4])], cached=[("a", 6)])  # b's prompt logprobs, a's pending sample
        p2["scheduledNewReqs"][0]["sampling"] = sb
        h2 = runner.launch(p2)
        out1 = runner.finish(h1)
        h3 = runner.launch(plan(3, cached=[("a", 7), ("b", 5)]))
        out2, out3 = runner.finish(h2), runner.finish(h3)
        self.assertEqual(out1["sampledTokenIds"]["a"] + out2["sampledTokenIds"]["a"] + out3["sampledTokenIds"]["a"],
                         alone_a)
        self.assertEqual(out2["sampledTokenIds"]["b"] + out3["sampledTokenIds"]["b"], alone_b)
        got, want = out2["promptLogprobs"]["b"], first["promptLogprobs"]["b"]
        self.assertEqual(len(got), len(pb))
        self.assertIsNone(got[0])
        for g, w in zip(got[1:], want[1:]):
            self.assertAlmostEqual(g["logprob"], w["logprob"], places=5)
            self.assertEqual([t[0] for t in g["top"]], [t[0] for t in w["top"]])

    def test_alternatives_launched_ahead_equal_one_step_at_a_time(self):
        # Top-n alternatives ride out with the samples (StepHandle.top_k rows): same tokens, logprobs and
        # alternatives as one step at a time, in a batch where the two requests ask for different counts.
        pa, pb = [5, 17, 42, 8, 91, 33], [7, 3, 60, 12, 77]
        sa = sampling(numTopLogprobs=3)
        sb = sampling(strategy="sample", temperature=0.8, seed=4, numTopLogprobs=5, repetitionPenalty=0.5)

        def one_at_a_time(rid, prompt, s, steps):
            # The reference takes the host path (sampler.sample: alternatives read back at once), as every step
            # with alternatives did before they were copied out with the samples.
            with mock.patch("lmi_executor.runner.is_fast_sampling", return_value=False):
                d, lps = Driver(make_worker(self.model)), []
                out = d.run(new=[(rid, prompt, len(prompt), s)])
                lps += out["logprobs"][rid]
                for _ in range(steps - 1):
                    lps += d.run(cached=[(rid, 1)])["logprobs"][rid]
            return d.reqs[rid]["tokens"][len(prompt):], lps

        want = {"a": one_at_a_time("a", pa, sa, 3), "b": one_at_a_time("b", pb, sb, 3)}
        runner = make_worker(self.model).runner
        got = {"a": ([], []), "b": ([], [])}

        def finish(h):
            out = runner.finish(h)
            for rid, toks in out["sampledTokenIds"].items():
                got[rid][0].extend(toks)
                got[rid][1].extend(out["logprobs"][rid])

        p1 = plan(1, new=[("a", pa, [0, 1, 2]), ("b", pb, [3, 4])])
        p1["scheduledNewReqs"][0]["sampling"], p1["scheduledNewReqs"][1]["sampling"] = sa, sb
        h1 = runner.launch(p1)
        h2 = runner.launch(plan(2, cached=[("a", 6), ("b", 5)]))
        finish(h1)
        h3 = runner.launch(plan(3, cached=[("a", 7), ("b", 6)]))
        finish(h2)
        finish(h3)
        for rid in ("a", "b"):
            self.assertEqual(got[rid][0], want[rid][0])
            self.assertEqual([len(e["top"]) for e in got[rid][1]], [len(e["top"]) for e in want[rid][1]])
            for g, w in zip(got[rid][1], want[rid][1]):
                self.assertAlmostEqual(g["logprob"], w["logprob"], places=5)
                self.assertEqual([t[0] for t in g["top"]], [t[0] for t in w["top"]])
                for gt, wt in zip(g["top"], w["top"]):
                    self.assertAlmostEqual(gt[1], wt[1], places=5)


class _RingRunner:
    """A runner with the real one's ring rule (launch refuses past RING_STEPS unfinished steps) whose steps end on
    the "GPU" only when the test says so."""

    def __init__(self):
        self.unfinished, self.launched, self.finished = 0, [], []
        self.done = {}

    def waits_for_earlier_steps(self, plan):
        return False

    def launch(self, plan):
        if self.unfinished >= RING_STEPS:
            raise RuntimeError(f"more than {RING_STEPS} launched steps are unfinished")
        self.unfinished += 1
        step = plan["stepId"]
        self.done[step] = threading.Event()
        self.launched.append(step)
        return _Handle(self, step)

    def finish(self, handle):
        self.unfinished -= 1
        self.finished.append(handle.step)
        return {}


class _Handle:
    def __init__(self, runner, step):
        self.runner, self.step = runner, step

    def wait(self):
        self.runner.done[self.step].wait(10)


class FollowerRingTest(unittest.TestCase):
    def test_a_follower_waits_for_its_ring_instead_of_overrunning_it(self):
        # A rank > 0 gets relayed plans as fast as rank 0 sends them; with its first steps not yet finished it must
        # hold the next launch, not fail (a TP=2 burst on two H100s died with "more than 4 launched steps are
        # unfinished" on rank 1).
        runner = _RingRunner()
        worker = mock.Mock(runner=runner)
        finisher = _Finisher(worker, None)
        errors = []

        def relay():
            try:
                for step in range(RING_STEPS + 2):
                    finisher.launch(None, {"stepId": step})
            except Exception as e:  # noqa: BLE001 - the failure the test looks for
                errors.append(e)
        t = threading.Thread(target=relay)
        t.start()
        deadline = time.time() + 5
        while len(runner.launched) < RING_STEPS and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        self.assertEqual(runner.launched, list(range(RING_STEPS)), "the ring's worth launched, the next one held")
        self.assertEqual(errors, [])
        for step in range(RING_STEPS + 2):
            while step not in runner.done and time.time() < deadline:
                time.sleep(0.01)
            runner.done[step].set()
        t.join(5)
        finisher.drain()
        self.assertEqual(errors, [])
        self.assertEqual(runner.finished, list(range(RING_STEPS + 2)))


if __name__ == "__main__":
    unittest.main()

