# option.kv_cache_dtype: which values are accepted where (CPU), and on CUDA the fp8 e4m3 cache: the cache
# writers (rotary + cache kernel, the GEMV's rotary epilogue) store exactly the model-dtype values rounded
# to fp8, the Triton attention over an fp8 cache equals the reference attention over the same cache, and
# the tiny model generates with an fp8 cache close to its bf16-cache self (fp8 keeps 3 mantissa bits, so
# tokens may differ once a near-tie flips; logprobs stay close).
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.attention import reference_attention  # noqa: E402
from lmi_executor.worker import resolve_kv_dtype  # noqa: E402
from test_executor_gpu import gpu_worker, random_batch  # noqa: E402
from test_executor_model import Driver, sampling  # noqa: E402

CUDA = torch.cuda.is_available()


class KvDtypeOptionTest(unittest.TestCase):
    def test_auto_and_float_types(self):
        cpu = torch.device("cpu")
        self.assertIs(resolve_kv_dtype("auto", torch.float32, cpu), torch.float32)
        self.assertIs(resolve_kv_dtype("", torch.bfloat16, cpu), torch.bfloat16)
        self.assertIs(resolve_kv_dtype("fp16", torch.float32, cpu), torch.float16)

    def test_fp8_needs_cuda_and_unknown_values_fail_by_name(self):
        cpu = torch.device("cpu")
        with self.assertRaisesRegex(ValueError, r"option\.kv_cache_dtype=fp8 needs the GPU executor"):
            resolve_kv_dtype("fp8", torch.float32, cpu)
        with self.assertRaisesRegex(ValueError, r"option\.kv_cache_dtype='int4' is not supported"):
            resolve_kv_dtype("int4", torch.float32, cpu)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class Fp8CacheTest(unittest.TestCase):
    def test_attention_over_fp8_cache_equals_reference(self):
        from lmi_executor.kernels.paged_attention import paged_attention

        for q_lens, ctx, splits in (([7, 1, 33, 1, 100], [7, 50, 80, 1, 300], 0), ([1] * 5, [1, 17, 64, 300, 1000], 16),
                                    ([1] * 40, [30 + 17 * i for i in range(40)], 0)):
            q, kc, vc, meta = random_batch(q_lens, ctx, 32, 8, 128, 16, torch.bfloat16, 5)
            kc, vc = kc.to(torch.float8_e4m3fn), vc.to(torch.float8_e4m3fn)
            ref = reference_attention(q.double(), kc.float().double(), vc.float().double(), meta, 128**-0.5)
            got = paged_attention(q, kc, vc, meta, 128**-0.5, num_splits=splits).double()
            self.assertLess(((got - ref).norm() / ref.norm()).item(), 1e-2, (q_lens, splits))
            # the reference reads the fp8 cache itself the same way
            ref8 = reference_attention(q.double(), kc, vc, meta, 128**-0.5)
            self.assertLess(((ref8 - ref).norm() / ref.norm()).item(), 1e-6)

    def test_cache_writers_round_model_values_to_fp8(self):
        from lmi_executor.kernels import gemv
        from lmi_executor.kernels.fused import rope_and_cache
        from lmi_executor.layers import rope_cos_sin

        dev, nq, nkv, hd, T, page = "cuda", 8, 2, 64, 5, 16
        g = torch.Generator(device=dev).manual_seed(0)
        cs = rope_cos_sin(hd, 10000.0, None, 256, torch.device(dev))
        pos = torch.tensor([0, 3, 17, 100, 255], device=dev)
        slots = torch.tensor([1, 40, 7, 63, 22], device=dev)
        qkv = (torch.randn((T, (nq + 2 * nkv) * hd), generator=g, device=dev) * 3).to(torch.bfloat16)

        def caches(dtype):
            return (torch.zeros((4, page, nkv, hd), dtype=dtype, device=dev),
                    torch.zeros((4, page, nkv, hd), dtype=dtype, device=dev))

        kb, vb = caches(torch.bfloat16)
        k8, v8 = caches(torch.float8_e4m3fn)
        qb = rope_and_cache(qkv, cs, pos, slots, kb, vb, nq, nkv, hd)
        q8 = rope_and_cache(qkv, cs, pos, slots, k8, v8, nq, nkv, hd)
        self.assertTrue(torch.equal(qb, q8))
        self.assertTrue(torch.equal(k8.view(torch.uint8), kb.to(torch.float8_e4m3fn).view(torch.uint8)))
        self.assertTrue(torch.equal(v8.view(torch.uint8), vb.to(torch.float8_e4m3fn).view(torch.uint8)))
        # The GEMV's rotary epilogue (batch <= 8 decode) writes the same bytes as its bf16 cache rounded.
        x = torch.randn((2, 256), generator=g, device=dev).to(torch.bfloat16)
        w = (torch.randn(((nq + 2 * nkv) * hd, 256), generator=g, device=dev) * 0.1).to(torch.bfloat16)
        kb, vb = caches(torch.bfloat16)
        k8, v8 = caches(torch.float8_e4m3fn)
        qb = gemv.gemv(x, w, rope=(cs, pos[:2], slots[:2], kb, vb, nq, nkv, hd))
        q8 = gemv.gemv(x, w, rope=(cs, pos[:2], slots[:2], k8, v8, nq, nkv, hd))
        self.assertTrue(torch.equal(qb, q8))
        self.assertTrue(torch.equal(k8.view(torch.uint8), kb.to(torch.float8_e4m3fn).view(torch.uint8)))
        self.assertTrue(torch.equal(v8.view(torch.uint8), vb.to(torch.float8_e4m3fn).view(torch.uint8)))

    def test_tiny_model_with_fp8_cache_stays_close(self):
        # The trained tiny model (a random one has near-flat logits, where any rounding flips the argmax).
        d = os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-kjv")
        prompts = {"a": [5, 9, 14, 3, 22, 7, 11, 40, 2, 8, 31], "b": [17, 4, 4, 60, 12]}
        runs = {}
        for kv in ("auto", "fp8"):
            for graphs in (False, True):
                w = gpu_worker(d, dtype="bf16", enable_cuda_graph=graphs, kv_cache_dtype=kv)
                self.assertEqual(w.kv.dtype, torch.float8_e4m3fn if kv == "fp8" else torch.bfloat16)
                drv = Driver(w)
                lps = {rid: [] for rid in prompts}
                out = drv.run(new=[(rid, p, len(p), sampling()) for rid, p in prompts.items()])
                for _ in range(12):
                    for rid in prompts:
                        lps[rid].append(out["logprobs"][rid][0]["logprob"])
                    out = drv.run(cached=[(rid, 1) for rid in prompts])
                runs[(kv, graphs)] = ({rid: drv.reqs[rid]["tokens"][len(p):] for rid, p in prompts.items()}, lps)
        # graphs on and off give the same tokens with either cache
        self.assertEqual(runs[("fp8", False)][0], runs[("fp8", True)][0])
        self.assertEqual(runs[("auto", False)][0], runs[("auto", True)][0])
        ref_toks, ref_lps = runs[("auto", False)]
        toks, lps = runs[("fp8", False)]
        for rid in prompts:
            # the first token comes from the prompt's own K/V, read back from the cache: fp8 rounding shows
            # in the logprob, the greedy choice holds
            self.assertEqual(toks[rid][0], ref_toks[rid][0], (rid, toks[rid], ref_toks[rid]))
            self.assertLess(abs(lps[rid][0] - ref_lps[rid][0]), 0.15, (rid, lps[rid][0], ref_lps[rid][0]))


if __name__ == "__main__":
    unittest.main()
