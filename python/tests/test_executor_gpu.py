# CUDA-only checks (skipped elsewhere): the Triton paged attention against the reference path on mixed
# batches, the tiny model on the GPU against the dense fp64 forward, and CUDA-graph decode against eager.
import os
import random
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.attention import AttentionMetadata, reference_attention  # noqa: E402
from lmi_executor.config import ExecutorOptions  # noqa: E402
from lmi_executor.worker import Worker  # noqa: E402
from test_executor_fixtures import dense_forward, make_checkpoint  # noqa: E402
from test_executor_model import Driver, sampling  # noqa: E402

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
    def check(self, q_lens, ctx_lens, H, KVH, D, dtype, splits=0, tol=2e-2, window=0):
        from lmi_executor.kernels.paged_attention import paged_attention

        for seed in range(2):
            q, kc, vc, meta = random_batch(q_lens, ctx_lens, H, KVH, D, 16, dtype, seed)
            ref = reference_attention(q.double(), kc.double(), vc.double(), meta, D**-0.5, window)
            got = paged_attention(q, kc, vc, meta, D**-0.5, num_splits=splits, window=window).double()
            self.assertFalse(torch.isnan(got).any())
            err = ((got - ref).norm() / ref.norm()).item()
            self.assertLess(err, tol, f"q_lens={q_lens} ctx={ctx_lens} H={H}/{KVH} D={D} {dtype} splits={splits}")

    def test_mixed_prefill_chunk_and_decode(self):
        for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float16, 2e-3), (torch.float32, 1e-5)):
            self.check([7, 1, 33, 1, 100], [7, 50, 80, 1, 300], 8, 2, 64, dtype, tol=tol)
            self.check([129], [129], 32, 8, 128, dtype, tol=tol)

    def test_sliding_window(self):
        self.check([7, 1, 33, 1], [7, 50, 80, 300], 8, 2, 64, torch.float32, tol=1e-5, window=12)
        self.check([1, 1], [40, 700], 8, 2, 64, torch.float32, splits=8, tol=1e-5, window=20)

    def test_decode_with_and_without_splits(self):
        for splits in (1, 4, 16):
            self.check([1] * 5, [1, 17, 64, 300, 1000], 32, 8, 128, torch.bfloat16, splits=splits, tol=1e-2)
            self.check([1, 1], [5, 2000], 16, 16, 64, torch.float32, splits=splits, tol=1e-5)


def gpu_worker(model_dir, **over):
    opts = ExecutorOptions(model_dir=model_dir, device="cuda", block_size=4, max_num_seqs=16, **over)
    w = Worker(opts, 0, 1)
    w.load({})
    w.init_cache({"numBlocks": 64})
    return w


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

    def test_fused_and_unfused_models_agree(self):
        tmp = tempfile.mkdtemp()
        make_checkpoint(tmp, "qwen3", seed=2)
        prompt = [4, 8, 15, 16, 23, 42, 7, 7, 9]
        outs = []
        for fused in (True, False):
            w = gpu_worker(tmp, dtype="fp32", fused_ops=fused, enable_cuda_graph=False)
            outs.append(Driver(w).generate("a", prompt, 12, s=sampling(promptLogprobs=True), chunk=5))
        self.assertEqual(outs[0][0], outs[1][0])
