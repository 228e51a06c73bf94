# CUDA-only checks (skipped elsewhere): the Triton paged attention against the reference path on mixed
# batches, the tiny model on the GPU against the dense fp64 forward, and CUDA-graph decode against eager.
import json
import os
import random
import sys
import tempfile
import unittest
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.attention import AttentionMetadata, reference_attention  # noqa: E402
from test_executor_fixtures import compiled_variants, dense_forward, make_checkpoint  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

CUDA = torch.cuda.is_available()


def random_batch(q_lens, ctx_lens, H, KVH, D, page, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    nblocks = sum((c + page - 1) // page for c in ctx_lens) + 8
    k_cache = torch.randn((nblocks, page, KVH, D), generator=g, device=dev).to(dtype)
    v_cache = torch.randn((nblocks, page, KVH, D), generator=g, device=dev).to(dtype)
    perm = torch.randperm(nblocks, generator=torch.Generator().manual_seed(seed)).tolist()
    maxb = max((c + page - 1) // page for c in ctx_lens)
    table = torch.zeros((len(q_lens), maxb), dtype=torch.int32)
    for i, c in enumerate(ctx_lens):
        for j in range((c + page - 1) // page):
            table[i, j] = perm.pop()
    qsl = [0]
    for n in q_lens:
        qsl.append(qsl[-1] + n)
    q = torch.randn((qsl[-1], H, D), generator=g, device=dev).to(dtype)
    meta = AttentionMetadata(
        slot_mapping=torch.zeros(0, dtype=torch.long, device=dev),
        query_start_loc=torch.tensor(qsl, dtype=torch.int32, device=dev),
        seq_lens=torch.tensor(ctx_lens, dtype=torch.int32, device=dev),
        block_tables=table.to(dev), max_query_len=max(q_lens), max_seq_len=max(ctx_lens),
        query_start_loc_cpu=qsl, seq_lens_cpu=list(ctx_lens),
    )
    return q, k_cache, v_cache, meta


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class TritonAttentionTest(unittest.TestCase):
    def check(self, q_lens, ctx_lens, H, KVH, D, dtype, splits=0, tol=2e-2, window=0, launch=None):
        from lmi_executor.kernels.paged_attention import paged_attention

        for seed in range(2):
            q, kc, vc, meta = random_batch(q_lens, ctx_lens, H, KVH, D, 16, dtype, seed)
            ref = reference_attention(q.double(), kc.double(), vc.double(), meta, D**-0.5, window)
            got = paged_attention(q, kc, vc, meta, D**-0.5, num_splits=splits, window=window, launch=launch).double()
            self.assertFalse(torch.isnan(got).any())
            err = ((got - ref).norm() / ref.norm()).item()
            self.assertLess(err, tol, f"q_lens={q_lens} ctx={ctx_lens} H={H}/{KVH} D={D} {dtype} splits={splits} {launch}")

    def test_mixed_prefill_chunk_and_decode(self):
        for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float16, 2e-3), (torch.float32, 1e-5)):
            self.check([7, 1, 33, 1, 100], [7, 50, 80, 1, 300], 8, 2, 64, dtype, tol=tol)
            self.check([129], [129], 32, 8, 128, dtype, tol=tol)

    def test_sliding_window(self):
        self.check([7, 1, 33, 1], [7, 50, 80, 300], 8, 2, 64, torch.float32, tol=1e-5, window=12)
        self.check([1, 1], [40, 700], 8, 2, 64, torch.float32, splits=8, tol=1e-5, window=20)

    def test_decode_with_and_without_splits(self):
        for splits in (1, 3, 4, 16):
            self.check([1] * 5, [1, 17, 64, 300, 1000], 32, 8, 128, torch.bfloat16, splits=splits, tol=1e-2)
            self.check([1, 1], [5, 2000], 16, 16, 64, torch.float32, splits=splits, tol=1e-5)

    def test_split_merge_with_and_without_dependent_launch(self):
        # The merge kernel launched early (PDL) must wait for every split's partials: same values either way.
        from lmi_executor.kernels import paged_attention as pa

        saved = pa.FLAGS["merge_pdl"]
        try:
            for on in (False, True):
                pa.FLAGS["merge_pdl"] = on
                self.check([1], [777], 32, 8, 128, torch.bfloat16, tol=1e-2)  # batch 1: the launch splits
                self.check([1] * 3, [40, 700, 2500], 16, 4, 64, torch.float32, splits=5, tol=1e-5)
                self.check([1, 1], [300, 900], 8, 2, 256, torch.bfloat16, splits=16, tol=1e-2)  # 4-warp merge
        finally:
            pa.FLAGS["merge_pdl"] = saved

    def test_prompt_tiles_with_and_without_the_unmasked_loop(self):
        # causal_split: a prompt tile's keys before its first query go through a loop without masks. Prompts and
        # prefixes that end mid-tile and mid-page, decode rows in the same step, the tuned and larger tiles.
        from lmi_executor.kernels import paged_attention as pa

        saved = pa.FLAGS["causal_split"]
        try:
            for on in (False, True):
                pa.FLAGS["causal_split"] = on
                for launch in (None, {"block_q": 32, "block_n": 64}, {"block_n": 16}):
                    self.check([5, 16, 17, 33, 1, 100, 1], [5, 16, 17, 80, 50, 300, 7], 32, 8, 128, torch.bfloat16,
                               tol=1e-2, launch=launch)
                    self.check([64, 31], [64, 95], 8, 2, 64, torch.float32, tol=1e-5, launch=launch)
                self.check([7, 1, 33], [7, 50, 80], 8, 2, 64, torch.float32, tol=1e-5, window=12)
                # Contexts from attention_launch.LONG_PROMPT_CONTEXT on: the tuned launch's 64-key tiles.
                self.check([40, 1, 300], [2100, 2500, 2048], 32, 8, 128, torch.bfloat16, tol=1e-2)
        finally:
            pa.FLAGS["causal_split"] = saved

    def test_prompt_steps_read_the_fresh_kv(self):
        # Prompts with no cached context read the step's own K/V (token-major views into a fused qkv buffer, as the
        # model passes them) instead of the paged cache: the same values as the paged path, prompts ending mid-tile
        # and mid-page, a one-token prompt among them.
        from lmi_executor.kernels import paged_attention as pa
        from lmi_executor.kernels.paged_attention import paged_attention

        for q_lens, H, KVH, D, dtype in (([5, 16, 17, 33, 100, 300], 32, 8, 128, torch.bfloat16),
                                         ([64, 31, 1, 7], 8, 2, 64, torch.float16)):
            q, kc, vc, meta = random_batch(q_lens, q_lens, H, KVH, D, 16, dtype, 3)
            slots = torch.cat([meta.block_tables[i, torch.arange(n, device="cuda") // 16].long() * 16
                               + torch.arange(n, device="cuda") % 16 for i, n in enumerate(q_lens)])
            T = sum(q_lens)
            qkv = torch.full((T, (H + 2 * KVH) * D), float("nan"), dtype=dtype, device="cuda")
            qkv[:, H * D:(H + KVH) * D] = kc.view(-1, KVH, D)[slots].reshape(T, -1)
            qkv[:, (H + KVH) * D:] = vc.view(-1, KVH, D)[slots].reshape(T, -1)
            fresh = (qkv[:, H * D:(H + KVH) * D].view(T, KVH, D), qkv[:, (H + KVH) * D:].view(T, KVH, D))
            paged = paged_attention(q, kc, vc, meta, D**-0.5)
            got = paged_attention(q, kc, vc, meta, D**-0.5, fresh=fresh)
            ref = reference_attention(q.double(), kc.double(), vc.double(), meta, D**-0.5)
            self.assertLess(((got.double() - ref).norm() / ref.norm()).item(), 1e-2, f"{q_lens} {dtype}")
            self.assertTrue(torch.equal(got, paged), f"{q_lens} {dtype}")
            # On Hopper these views go through tensor descriptors (the copy engine); the pointer loads give the same.
            if torch.cuda.get_device_capability()[0] >= 9:
                self.assertTrue(pa._tma_loadable(fresh[0].flatten(1), D))
            saved = pa.FLAGS["fresh_tma"]
            try:
                pa.FLAGS["fresh_tma"] = False
                self.assertTrue(torch.equal(paged_attention(q, kc, vc, meta, D**-0.5, fresh=fresh), got))
            finally:
                pa.FLAGS["fresh_tma"] = saved
        # From attention_launch.LONG_PROMPT_CONTEXT keys on the fresh path takes its own wider launch: the same
        # function as the paged path, whose launch differs there (so within rounding, not bit for bit).
        q_lens = [2100, 40, 2048]
        q, kc, vc, meta = random_batch(q_lens, q_lens, 32, 8, 128, 16, torch.bfloat16, 4)
        slots = torch.cat([meta.block_tables[i, torch.arange(n, device="cuda") // 16].long() * 16
                           + torch.arange(n, device="cuda") % 16 for i, n in enumerate(q_lens)])
        fresh = (kc.view(-1, 8, 128)[slots], vc.view(-1, 8, 128)[slots])
        got = paged_attention(q, kc, vc, meta, 128**-0.5, fresh=fresh)
        paged = paged_attention(q, kc, vc, meta, 128**-0.5)
        ref = reference_attention(q.double(), kc.double(), vc.double(), meta, 128**-0.5)
        self.assertLess(((got.double() - ref).norm() / ref.norm()).item(), 1e-2)
        self.assertLess(((got.double() - paged.double()).norm() / paged.double().norm()).item(), 5e-3)

    def test_decode_attention_rotates_and_writes_the_new_kv(self):
        # decode_attention_rope (the model's decode steps) against the separate rotary kernel + paged_attention: the
        # same cache contents and the same output, split and unsplit launches, the large-batch launch, an fp8
        # cache, fp32, a sliding window, and qkv rows strided inside a wider buffer.
        from lmi_executor.kernels.fused import rope_and_cache
        from lmi_executor.kernels.paged_attention import decode_attention_rope, paged_attention
        from lmi_executor.layers import rope_cos_sin

        rnd = random.Random(11)
        cases = [([1, 17, 64, 300, 1000], 32, 8, 128, torch.bfloat16, None, 0, 0),
                 ([rnd.randrange(1, 700) for _ in range(40)], 32, 8, 128, torch.bfloat16, None, 0, 0),
                 ([5, 2000], 16, 16, 64, torch.float32, None, 0, 0),
                 ([40, 700, 3], 8, 2, 64, torch.float32, None, 20, 0),
                 ([33, 600, 1, 90], 32, 8, 128, torch.bfloat16, torch.float8_e4m3fn, 0, 0),
                 ([7, 300, 129], 32, 8, 128, torch.bfloat16, None, 0, 256)]
        cos_sin = rope_cos_sin(128, 500000.0, None, 4096, "cuda")
        for ctx, H, KVH, D, dtype, cache_dtype, window, pad in cases:
            cs = cos_sin if D == 128 else rope_cos_sin(D, 10000.0, None, 4096, "cuda")
            q, kc, vc, meta = random_batch([1] * len(ctx), ctx, H, KVH, D, 16, dtype, 4)
            if cache_dtype is not None:
                kc, vc = kc.to(cache_dtype), vc.to(cache_dtype)
            B = len(ctx)
            pos = torch.tensor([c - 1 for c in ctx], dtype=torch.long, device="cuda")
            slots = meta.block_tables[torch.arange(B, device="cuda"), pos // 16].long() * 16 + pos % 16
            meta.slot_mapping = slots
            cols = (H + 2 * KVH) * D
            g = torch.Generator(device="cuda").manual_seed(5)
            qkv = torch.randn((B, cols + pad), generator=g, device="cuda").to(dtype)[:, :cols]
            for splits in (0, 1, 3, 16):
                k1, v1, k2, v2 = kc.clone(), vc.clone(), kc.clone(), vc.clone()
                rq = rope_and_cache(qkv, cs, pos, slots, k1, v1, H, KVH, D)
                want = paged_attention(rq, k1, v1, meta, D**-0.5, num_splits=splits, window=window)
                got = decode_attention_rope(qkv, H, k2, v2, meta, D**-0.5, cs, pos, slots, num_splits=splits,
                                            window=window)
                what = f"ctx={ctx} {dtype} cache={cache_dtype} splits={splits} window={window}"
                if dtype == torch.float32:  # no rounding after the rotation: fp32 keys may differ by FMA contraction
                    self.assertLess(((k1 - k2).norm() / k1.norm()).item(), 1e-6, what)
                    self.assertTrue(torch.equal(v1, v2), what)
                else:  # rounded to the cache's dtype: the same bits
                    self.assertTrue(torch.equal(k1.view(torch.uint8), k2.view(torch.uint8)), what)
                    self.assertTrue(torch.equal(v1.view(torch.uint8), v2.view(torch.uint8)), what)
                self.assertFalse(torch.isnan(got).any(), what)
                err = ((got.double() - want.double()).norm() / want.double().norm()).item()
                self.assertLess(err, 1e-6 if dtype == torch.float32 else 5e-3, f"{what} err={err}")

    def test_large_batch_decode_launches(self):
        # Batches with one program per (sequence, KV head): the tuned launch (heads-fastest grid, 3-stage
        # pipeline) and the variants around it, over ragged contexts that end mid-tile and mid-page.
        from lmi_executor.kernels.attention_launch import decode_launch, decode_splits

        self.assertEqual(decode_launch(40, 8)["splits"], 1)
        self.assertEqual(decode_splits(40, 8), decode_launch(40, 8)["splits"])
        rnd = random.Random(5)
        ctx = [rnd.randrange(1, 700) for _ in range(40)]
        for launch in (None, {"num_warps": 2}, {"head_fast": False}, {"num_stages": 2}, {"block_n": 128},
                       {"splits": 3}, {"splits": 2, "head_fast": True}):
            self.check([1] * 40, ctx, 32, 8, 128, torch.bfloat16, tol=1e-2, launch=launch)
        self.check([1] * 40, ctx, 16, 16, 64, torch.float32, tol=1e-5)
        self.check([1] * 40, ctx, 8, 2, 64, torch.float32, tol=1e-5, window=33, launch={"head_fast": True})


def gpu_worker(model_dir, **over):
    return make_worker(model_dir, device="cuda", **over)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class GpuModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = os.path.join(cls.tmp.name, "llama")
        cls.ck = make_checkpoint(cls.dir, "llama", seed=1)

    def test_fp32_greedy_matches_dense_with_and_without_graphs(self):
        prompt = [4, 8, 15, 16, 23, 42]
        seq = list(prompt)
        for _ in range(10):
            seq.append(int(dense_forward(self.ck, seq)[-1].argmax()))
        for graphs in (False, True):
            w = gpu_worker(self.dir, dtype="fp32", enable_cuda_graph=graphs)
            self.assertEqual(w.runner.graphs is not None, graphs)
            toks, _ = Driver(w).generate("a", prompt, 10, chunk=4)
            self.assertEqual(toks, seq[len(prompt):], f"graphs={graphs}")

    def test_batched_graph_decode_equals_eager_alone(self):
        prompts = {f"r{i}": [random.Random(i).randrange(3, 97) for _ in range(3 + 2 * i)] for i in range(5)}
        alone = {}
        for rid, p in prompts.items():
            alone[rid] = Driver(gpu_worker(self.dir, dtype="fp32", enable_cuda_graph=False)).generate(rid, p, 8)[0]
        d = Driver(gpu_worker(self.dir, dtype="fp32", enable_cuda_graph=True), seed=3)
        d.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
        for _ in range(7):
            d.run(cached=[(rid, 1) for rid in prompts])
        for rid, p in prompts.items():
            self.assertEqual(d.reqs[rid]["tokens"][len(p):], alone[rid], rid)

    def test_last_layer_for_the_sampled_rows_only_equals_every_row(self):
        # Prompt steps compute the last layer for their sampled rows only (the Triton kernel's decode form for
        # their attention): a step of six prompts (eager; rows of the one-row kernels' sizes), one of twelve (the
        # general decode form, rotating in the kernel), then one prompt alone (a prefill graph), against
        # LMI_TRIM_LAST_LAYER=0, in fp32 and bf16.
        prompts = {f"r{i}": [random.Random(10 + i).randrange(3, 97) for _ in range(9 + 7 * i)] for i in range(6)}
        twelve = {f"t{i}": [random.Random(30 + i).randrange(3, 97) for _ in range(5 + 3 * i)] for i in range(12)}
        solo = [random.Random(99).randrange(3, 97) for _ in range(40)]
        for dtype, tol in (("fp32", 1e-4), ("bf16", 3e-2)):
            runs = {}
            for trim in ("1", "0"):
                with mock.patch.dict(os.environ, {"LMI_TRIM_LAST_LAYER": trim}):
                    w = gpu_worker(self.dir, dtype=dtype, enable_cuda_graph=True, num_blocks=256)
                self.assertIsNotNone(w.runner.prefill_graphs)
                d = Driver(w, seed=2)
                many = d.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
                more = d.run(new=[(rid, p, len(p), sampling()) for rid, p in twelve.items()], finished=list(prompts))
                # Decode steps read the K/V the prompt step's last layer wrote (a graph of the bucket of 12).
                decodes = [d.run(cached=[(rid, 1) for rid in twelve]) for _ in range(3)]
                replays = w.runner.prefill_graphs.replays
                one = d.run(new=[("solo", solo, len(solo), sampling())], finished=list(twelve))
                self.assertEqual(w.runner.prefill_graphs.replays, replays + 1)
                runs[trim] = (many, more, *decodes, one)
            for got, want in zip(runs["1"], runs["0"]):
                self.assertEqual(got["sampledTokenIds"], want["sampledTokenIds"], dtype)
                for rid, lp in got["logprobs"].items():
                    self.assertAlmostEqual(lp[0]["logprob"], want["logprobs"][rid][0]["logprob"], delta=tol)

    def test_steps_compile_no_attention_variant_after_start_up(self):
        # Every attention launch a step makes must be one the start-up compiled (the memory profile's largest step,
        # the decode graphs' captures): a new Triton variant compiles mid-serving (~0.6 s, seen in a burst's first
        # prompt step). Prompt steps of 2-16 prompts of ragged lengths (eager; the last layer in decode form for the
        # logits rows, through the one-row kernels' path or the general one), then a decode step of each.
        from lmi_executor.kernels import paged_attention as pa

        kernels = (pa._attn_kernel, pa._merge_kernel)

        def variants():
            return compiled_variants(self, kernels)

        # Eight KV heads, as Llama-3-8B: the decode launch of 9-16 rows (4 splits) differs from those of 1-8 rows.
        model_dir = os.path.join(self.tmp.name, "kv8")
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "config.json"), "w") as f:
            json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1000,
                       "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 16,
                       "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                       "max_position_embeddings": 512, "eos_token_id": 2, "bos_token_id": 1,
                       "torch_dtype": "bfloat16"}, f)
        variants()
        for k in kernels:  # what earlier tests compiled must not hide a variant the start-up misses
            k.device_caches.clear()
        w = gpu_worker(model_dir, dtype="bf16", enable_cuda_graph=True, num_blocks=1024, load_format="dummy")
        self.assertIsNotNone(w.runner.graphs)
        before = variants()
        d = Driver(w, seed=4)
        rnd, n = random.Random(8), 0
        for B in (2, 5, 9, 12, 16):
            rids = [f"p{n + i}" for i in range(B)]
            n += B
            prompts = [[rnd.randrange(3, 997) for _ in range(rnd.randrange(5, 70))] for _ in rids]
            d.run(new=[(rid, p, len(p), sampling()) for rid, p in zip(rids, prompts)])
            d.run(cached=[(rid, 1) for rid in rids])
            d.run(finished=rids)
        torch.cuda.synchronize()
        self.assertEqual(variants(), before)

    def test_decode_graph_logits_widened_after_the_replay_sample_as_before(self):
        # Buckets above the one-row kernels' 8 rows keep the LM head's bf16 logits in the graph (greedy widens as
        # it loads, sampling after the replay): the tokens and sampled logprobs widening inside the graph gave, and
        # greedy logprobs to fp32 rounding. Against a worker whose graphs widen inside (the code before): greedy,
        # seeded sampling and top logprobs, 12 requests (bucket 16).
        from lmi_executor.memory_profile import FP32_LOGIT_ROWS
        from lmi_executor.kernels.gemv import MAX_ROWS
        from lmi_executor.models.llama import LlamaModel

        self.assertEqual(FP32_LOGIT_ROWS, MAX_ROWS)
        kinds = [sampling(), sampling(strategy="sample", temperature=0.9, topK=30, seed=5), sampling(numTopLogprobs=2)]
        prompts = {f"r{i}": [random.Random(i).randrange(3, 97) for _ in range(4 + i)] for i in range(12)}

        def run(worker):
            d = Driver(worker, seed=3)
            outs = [d.run(new=[(rid, p, len(p), kinds[i % 3]) for i, (rid, p) in enumerate(prompts.items())])]
            for _ in range(6):
                outs.append(d.run(cached=[(rid, 1) for rid in prompts]))
            return {rid: d.reqs[rid]["tokens"] for rid in prompts}, [o["logprobs"] for o in outs]

        new = gpu_worker(self.dir, dtype="bf16", enable_cuda_graph=True, num_blocks=128)
        self.assertEqual(new.runner.graphs.logits[16, 0].dtype, torch.bfloat16)
        self.assertEqual(new.runner.graphs.logits[8, 0].dtype, torch.float32)
        forward = LlamaModel.forward
        with mock.patch.object(LlamaModel, "forward", lambda m, *a, widen=True, **kw: forward(m, *a, widen=True, **kw)):
            old = gpu_worker(self.dir, dtype="bf16", enable_cuda_graph=True, num_blocks=128)
        self.assertEqual(old.runner.graphs.logits[16, 0].dtype, torch.float32)
        (tok_new, lp_new), (tok_old, lp_old) = run(new), run(old)
        self.assertEqual(tok_new, tok_old)

        def flat(lps):
            return [(rid, e["logprob"], e["top"]) for step in lps for rid, es in sorted(step.items()) for e in es]

        for (ra, a, ta), (rb, b, tb) in zip(flat(lp_new), flat(lp_old), strict=True):
            self.assertEqual((ra, ta), (rb, tb))
            self.assertAlmostEqual(a, b, delta=1e-5 * max(1.0, abs(b)))  # greedy rows: the chunk sums' order


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class ShortContextGraphTest(unittest.TestCase):
    def test_decode_crossing_the_context_bounds_equals_eager(self):
        # One request decodes from context 251 to 519: its steps replay the batch-1 bucket's graph for contexts
        # within SHORTER_CONTEXT (8 splits of 32-key tiles), then the one within SHORT_CONTEXT (16 splits of 32),
        # then the general one; tokens equal the eager run's, which picks the same launches from its own bound.
        from lmi_executor.kernels.attention_launch import SHORT_CONTEXT, SHORTER_CONTEXT

        kjv = os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-kjv")
        prompt = [random.Random(7).randrange(3, 4000) for _ in range(SHORTER_CONTEXT - 6)]
        steps = SHORT_CONTEXT + 8 - len(prompt)
        eager = Driver(gpu_worker(kjv, dtype="fp32", enable_cuda_graph=False, num_blocks=160)).generate("a", prompt, steps)[0]
        w = gpu_worker(kjv, dtype="fp32", enable_cuda_graph=True, num_blocks=160)
        graphs = w.runner.graphs
        self.assertEqual(graphs.bounds[1], [0, SHORT_CONTEXT, SHORTER_CONTEXT])
        self.assertEqual({k for k in graphs.graphs if k[0] == 1}, {(1, 0), (1, SHORT_CONTEXT), (1, SHORTER_CONTEXT)})
        used, key = [], graphs.key
        graphs.key = lambda size, ctx: used.append(key(size, ctx)) or used[-1]
        toks = Driver(w).generate("a", prompt, steps)[0]
        self.assertEqual(toks, eager)
        self.assertEqual(used, [(1, SHORTER_CONTEXT)] * 6 + [(1, SHORT_CONTEXT)] * 256 + [(1, 0)] * 7)

if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class FusedOpsTest(unittest.TestCase):
    def test_fused_kernels_equal_torch_ops(self):
        from lmi_executor.ops import TorchOps, TritonOps

        t, f = TorchOps(), TritonOps()
        g = torch.Generator(device="cuda").manual_seed(0)
        for dtype in (torch.float32, torch.bfloat16):
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            x = torch.randn((37, 4096), generator=g, device="cuda").to(dtype)
            r = torch.randn((37, 4096), generator=g, device="cuda").to(dtype)
            w = (1 + 0.1 * torch.randn(4096, generator=g, device="cuda")).to(dtype)
            r1, r2 = r.clone(), r.clone()
            a, b = t.add_rms_norm(x, r1, w, 1e-5), f.add_rms_norm(x, r2, w, 1e-5)
            self.assertLess(((a.float() - b.float()).norm() / a.float().norm()).item(), tol)
            self.assertTrue(torch.equal(r1, r2))
            gu = torch.randn((37, 2 * 1000), generator=g, device="cuda").to(dtype)
            a, b = t.silu_and_mul(gu), f.silu_and_mul(gu)
            self.assertLess(((a.float() - b.float()).norm() / a.float().norm()).item(), tol)
            for qk_norm in (False, True):
                nq, nkv, hd, T = 12, 4, 64, 23
                qkv = torch.randn((T, (nq + 2 * nkv) * hd), generator=g, device="cuda").to(dtype)
                from lmi_executor.layers import rope_cos_sin

                cs = rope_cos_sin(hd, 10000.0, {}, 512, "cuda")
                pos = torch.randint(0, 512, (T,), device="cuda")
                slots = torch.randperm(64, device="cuda")[:T]
                qn = (1 + 0.1 * torch.randn(hd, generator=g, device="cuda")).to(dtype) if qk_norm else None
                kn = (1 + 0.1 * torch.randn(hd, generator=g, device="cuda")).to(dtype) if qk_norm else None
                caches = [torch.full((16, 4, nkv, hd), 7.0, dtype=dtype, device="cuda") for _ in range(4)]
                qa = t.rope_and_cache(qkv, cs, pos, slots, caches[0], caches[1], nq, nkv, hd, qn, kn, 1e-6)
                qb = f.rope_and_cache(qkv, cs, pos, slots, caches[2], caches[3], nq, nkv, hd, qn, kn, 1e-6)
                for u, v in ((qa, qb), (caches[0], caches[2]), (caches[1], caches[3])):
                    self.assertLess(((u.float() - v.float()).norm() / u.float().norm()).item(), tol, (dtype, qk_norm))
                # k_back: the rotated keys written over qkv's k columns too (what the fresh-K/V attention reads).
                kcols = slice(nq * hd, (nq + nkv) * hd)
                for ops, cache in ((t, caches[0]), (f, caches[2])):
                    qkv2 = qkv.clone()
                    ops.rope_and_cache(qkv2, cs, pos, slots, cache, caches[1], nq, nkv, hd, qn, kn, 1e-6, k_back=True)
                    self.assertTrue(torch.equal(qkv2[:, kcols].view(T, nkv, hd), cache.view(-1, nkv, hd)[slots]))
                    self.assertTrue(torch.equal(qkv2[:, (nq + nkv) * hd:], qkv[:, (nq + nkv) * hd:]))

    def test_fused_and_unfused_models_agree(self):
        tmp = tempfile.mkdtemp()
        make_checkpoint(tmp, "qwen3", seed=2)
        prompt = [4, 8, 15, 16, 23, 42, 7, 7, 9]
        outs = []
        for fused in (True, False):
            w = gpu_worker(tmp, dtype="fp32", fused_ops=fused, enable_cuda_graph=False)
            outs.append(Driver(w).generate("a", prompt, 12, s=sampling(promptLogprobs=True), chunk=5))
        self.assertEqual(outs[0][0], outs[1][0])


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class GemvTest(unittest.TestCase):
    """kernels/gemv.py (the decode-sized weight-streaming kernels) against PyTorch, and the model's small-step
    path against its general path."""

    def test_gemv_kernels_equal_torch(self):
        from lmi_executor.kernels import gemv
        from lmi_executor.layers import rms_norm

        g = torch.Generator(device="cuda").manual_seed(11)
        F = torch.nn.functional
        for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float16, 2e-3)):
            for N, K in ((96, 64), (200, 256), (1000, 768), (6144, 4096), (4096, 14336)):
                for M in (1, 2, 3, 5, 8):
                    def rnd(*shape, scale=1.0):
                        return (torch.randn(shape, generator=g, device="cuda") * scale).to(dtype)

                    x, w = rnd(M, K), rnd(N, K, scale=K**-0.5)
                    nw, b = 1 + rnd(K, scale=0.1), rnd(N, scale=0.1)
                    tag = f"{dtype} N={N} K={K} M={M}"

                    def close(got, want, what):
                        self.assertFalse(torch.isnan(got).any(), (what, tag))
                        err = ((got.double() - want.double()).norm() / want.double().norm()).item()
                        self.assertLess(err, tol, (what, tag))

                    close(gemv.gemv(x, w), x.double() @ w.double().T, "plain")
                    close(gemv.gemv(x, w, pdl=False), x.double() @ w.double().T, "plain, no PDL")
                    close(gemv.gemv(x, w, bias=b), F.linear(x, w, b), "bias")
                    h = rms_norm(x, nw, 1e-5)
                    close(gemv.gemv(x, w, norm_w=nw, eps=1e-5), F.linear(h, w), "norm")
                    r = rnd(M, N)
                    close(gemv.gemv(x, w, residual=r), r + F.linear(x, w), "residual")
                    s, parts = gemv.gemv(x, w, residual=r, want_ssq=True)
                    close(s, r + F.linear(x, w), "residual+ssq")
                    close(parts.sum(1), s.float().pow(2).sum(1), "partial sums of squares")
                    s0, parts0 = gemv.gemv(x, w, residual=r, want_ssq=True, pdl=False)
                    close(s0, r + F.linear(x, w), "residual+ssq, no PDL")
                    close(parts0.sum(1), s0.float().pow(2).sum(1), "partial sums of squares, no PDL")
                    w2, nw2 = rnd(2 * 40, N, scale=N**-0.5), 1 + rnd(N, scale=0.1)
                    h2 = rms_norm(s, nw2, 1e-5)
                    close(gemv.gemv(s, w2, norm_w=nw2, eps=1e-5, ssq=parts), F.linear(h2, w2), "norm from ssq")
                    gu2 = F.linear(h2, w2)
                    close(gemv.gemv(s, w2, norm_w=nw2, eps=1e-5, ssq=parts, silu_up=40),
                          F.silu(gu2[:, :40]) * gu2[:, 40:], "norm from ssq + silu")
                    if N % 2 == 0:
                        gu = F.linear(h, w)
                        want = F.silu(gu[:, : N // 2]) * gu[:, N // 2:]
                        close(gemv.gemv(x, w, norm_w=nw, eps=1e-5, silu_up=N // 2), want, "norm+silu")
                    rows = torch.randperm(M, device="cuda")[: max(1, M - 1)]
                    got = gemv.gemv(x, w, norm_w=nw, eps=1e-5, rows=rows, out_f32=True)
                    self.assertEqual(got.dtype, torch.float32)
                    close(got, F.linear(h[rows], w).float(), "gather+norm+f32")

    def test_rope_epilogue_equals_rope_and_cache(self):
        from lmi_executor.kernels import gemv
        from lmi_executor.kernels.fused import rope_and_cache
        from lmi_executor.layers import rope_cos_sin

        seed = random.randrange(1 << 30)  # fresh inputs every run; the seed is in the failure message
        g = torch.Generator(device="cuda").manual_seed(seed)
        F = torch.nn.functional
        for dtype in (torch.bfloat16, torch.float16):
            for nq, nkv, hd, K in ((4, 2, 16, 64), (32, 8, 128, 4096), (14, 2, 64, 896)):
                cs = rope_cos_sin(hd, 10000.0, None, 512, "cuda")
                for M in (1, 2, 5, 8):
                    for bias in (False, True):
                        for pdl in (False, True):
                            tag = (seed, dtype, nq, nkv, hd, K, M, bias, pdl)
                            N = (nq + 2 * nkv) * hd
                            x = torch.randn((M, K), generator=g, device="cuda").to(dtype)
                            w = (torch.randn((N, K), generator=g, device="cuda") * K**-0.5).to(dtype)
                            b = (torch.randn((N,), generator=g, device="cuda") * 0.1).to(dtype) if bias else None
                            nw = (1 + 0.1 * torch.randn((K,), generator=g, device="cuda")).to(dtype)
                            pos = torch.randint(0, 512, (M,), generator=g, device="cuda")
                            slots = torch.randperm(40, generator=g, device="cuda")[:M]
                            caches = [torch.randn((10, 4, nkv, hd), generator=g, device="cuda").to(dtype)
                                      for _ in range(4)]
                            kc, vc, kc2, vc2 = caches[0], caches[1], caches[0].clone(), caches[1].clone()
                            qkv = gemv.gemv(x, w, bias=b, norm_w=nw, eps=1e-5, pdl=False)
                            want_q = rope_and_cache(qkv, cs, pos, slots, kc2, vc2, nq, nkv, hd)
                            got_q = gemv.gemv(x, w, bias=b, norm_w=nw, eps=1e-5, pdl=pdl,
                                              rope=(cs, pos, slots, kc, vc, nq, nkv, hd))
                            self.assertEqual(tuple(got_q.shape), (M, nq, hd), tag)
                            # Same products and rounding points: equal up to fp32 summation order.
                            for got, want, what in ((got_q, want_q, "q"), (kc, kc2, "k cache"), (vc, vc2, "v cache")):
                                err = ((got.double() - want.double()).norm() / want.double().norm()).item()
                                self.assertLess(err, 5e-3, (what,) + tag)
                            ref = F.linear(x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)
                                           * nw.float(), w.float(), None if b is None else b.float())
                            self.assertLess(((qkv.float() - ref).norm() / ref.norm()).item(), 2e-2, tag)

    def _generate(self, model_dir, small, graphs, dtype="bf16", steps=24, flags=None):
        from lmi_executor.kernels import gemv

        old = os.environ.get("LMI_DECODE_GEMV")
        os.environ["LMI_DECODE_GEMV"] = "1" if small else "0"
        old_flags = dict(gemv.FLAGS)
        gemv.FLAGS.update(flags or {})
        try:
            w = gpu_worker(model_dir, dtype=dtype, enable_cuda_graph=graphs)
            d = Driver(w)
            prompts = {"a": [5, 9, 14, 3, 22, 7, 11, 40, 2, 8, 31], "b": [17, 4, 4, 60, 12]}
            lps = {rid: [] for rid in prompts}
            out = d.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
            for _ in range(steps):
                for rid in prompts:
                    lps[rid].append(out["logprobs"][rid][0]["logprob"])
                out = d.run(cached=[(rid, 1) for rid in prompts])
            self.assertEqual(w.model._gemv is not False and w.model._gemv is not None, small)
            return {rid: d.reqs[rid]["tokens"][len(p):] for rid, p in prompts.items()}, lps
        finally:
            gemv.FLAGS.update(old_flags)
            if old is None:
                del os.environ["LMI_DECODE_GEMV"]
            else:
                os.environ["LMI_DECODE_GEMV"] = old

    def test_small_step_path_equals_general_path(self):
        kjv = os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-kjv")
        tmp = tempfile.mkdtemp()
        make_checkpoint(os.path.join(tmp, "qwen2"), "qwen2", seed=4, dtype=torch.bfloat16)
        make_checkpoint(os.path.join(tmp, "qwen3"), "qwen3", seed=5, dtype=torch.bfloat16, tie=True)
        for model_dir in (kjv, os.path.join(tmp, "qwen2"), os.path.join(tmp, "qwen3")):
            ref_toks, ref_lps = self._generate(model_dir, small=False, graphs=False)
            off = {"pdl": False, "rope": False}  # the small-step kernels without PDL / fusions
            for graphs, flags in ((False, None), (True, None), (True, off)):
                toks, lps = self._generate(model_dir, small=True, graphs=graphs, flags=flags)
                self.assertEqual(toks, ref_toks, (model_dir, graphs, flags))
                for rid in lps:
                    diff = max(abs(a - b) for a, b in zip(lps[rid], ref_lps[rid]))
                    self.assertLess(diff, 0.05, (model_dir, graphs, flags, rid))


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class Int4KernelTest(unittest.TestCase):
    def test_triton_int4_equals_dequantize_then_matmul(self):
        from lmi_executor.kernels.int4_matmul import int4_dequantize, int4_linear, pick_config
        from lmi_executor.quant import linear, quantize_int4

        seed = random.randrange(1 << 30)  # fresh inputs every run; the seed is in the failure message
        g = torch.Generator(device="cuda").manual_seed(seed)
        # bf16/fp16 operands: 1e-3..1e-2; fp32 goes through tl.dot in TF32 (about 3e-4).
        for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float16, 1e-2), (torch.float32, 1e-3)):
            for M, K, N in ((1, 4096, 6144), (1, 14336, 512), (3, 4096, 4096), (5, 64, 96), (16, 96, 130),
                            (17, 4096, 512), (64, 256, 1000), (200, 512, 1024), (300, 512, 256)):
                w = torch.randn((N, K), generator=g, device="cuda") * 0.02 + 0.01 * torch.randn(
                    (N, 1), generator=g, device="cuda")
                x = torch.randn((M, K), generator=g, device="cuda").to(dtype)
                qw = quantize_int4(w, symmetric=M == 3)  # symmetric weights use the same format and kernel
                ref = x.double() @ qw.dequantize(torch.float64).t()
                c = pick_config(M, N, K, qw.group)
                # GEMV rows (M <= GEMV_MAX_ROWS) also through the tl.dot tiles; each with the atomic split-K
                # path and the plain store.
                for cfg in [c] + ([pick_config(16, N, K, qw.group)] if c.get("kernel") == "gemv" else []):
                    for split in sorted({1, 4, cfg["split"]}):
                        got = int4_linear(x, qw, {**cfg, "split": split}).double()
                        self.assertFalse(bool(got.isnan().any()))
                        err = ((got - ref).norm() / ref.norm()).item()
                        self.assertLess(err, tol, (seed, dtype, M, K, N, cfg.get("kernel", "dot"), split))
                # Through linear(): the kernel up to INT4_DEQUANT_ABOVE_ROWS rows, dequantize + cuBLAS above.
                via = linear(x.reshape(1, M, K), qw).reshape(M, N).double()
                self.assertLess(((via - ref).norm() / ref.norm()).item(), tol, ("linear", seed, dtype, M, K, N))
            d = int4_dequantize(qw, dtype)
            self.assertLess(((d.double() - qw.dequantize(torch.float64)).abs().max()).item(),
                            float(qw.dequantize(torch.float64).abs().max()) * 2.0**-7)
