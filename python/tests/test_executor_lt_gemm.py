# kernels/lt_gemm.py: tuning tables (parsing, exact row-count lookup, device/version matching) on every machine;
# on a GPU whose name and cuBLASLt version a shipped table matches, the tuned GEMMs against F.linear (eager and
# inside a CUDA graph) and the cases that must fall back (bias, misaligned or non-contiguous operands, shapes or row
# counts the table does not serve).
import json
import os
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lmi_executor import quant  # noqa: E402
from lmi_executor.kernels import lt_gemm  # noqa: E402

CUDA = torch.cuda.is_available()
ALGO = "ab" * 64


def _doc(entries, device="Some GPU", version=130100):
    return {"device": device, "cublaslt": version, "entries": entries}


class TableTest(unittest.TestCase):
    def test_lookup_by_shape_dtype_and_exact_rows(self):
        t = lt_gemm.Table(_doc([{"n": 4096, "k": 14336, "m": 256, "dtype": "bf16", "algo": ALGO},
                                {"n": 4096, "k": 14336, "m": 128, "dtype": "bf16", "algo": "cd" * 64}]))
        self.assertEqual(t.lookup(4096, 14336, "bf16", 256), bytes.fromhex(ALGO))
        self.assertEqual(t.lookup(4096, 14336, "bf16", 128), bytes.fromhex("cd" * 64))
        # An entry serves exactly its row count: none for the rows between or around the tuned ones.
        for rows in (1, 64, 127, 129, 200, 255, 257, 512):
            self.assertIsNone(t.lookup(4096, 14336, "bf16", rows), rows)
        self.assertIsNone(t.lookup(4096, 14336, "fp16", 256))
        self.assertIsNone(t.lookup(14336, 4096, "bf16", 256))

    def test_bad_tables_are_refused_with_the_reason(self):
        with self.assertRaisesRegex(ValueError, "missing 'cublaslt'"):
            lt_gemm.Table({"device": "x", "entries": []}, "t.json")
        with self.assertRaisesRegex(ValueError, "is 3 bytes, expected 64"):
            lt_gemm.Table(_doc([{"n": 1, "k": 2, "m": 3, "dtype": "bf16", "algo": "abcdef"}]), "t.json")

    def test_a_table_applies_only_to_its_device_and_library_version(self):
        a = lt_gemm.Table(_doc([], "NVIDIA H100 80GB HBM3", 130100))
        b = lt_gemm.Table(_doc([], "NVIDIA H200", 130100))
        self.assertIs(lt_gemm.table_for([a, b], "NVIDIA H200", 130100), b)
        self.assertIsNone(lt_gemm.table_for([a, b], "NVIDIA H100 80GB HBM3", 130200))
        self.assertIsNone(lt_gemm.table_for([a, b], "NVIDIA A100-SXM4-80GB", 130100))

    def test_table_path_from_the_environment(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(_doc([]), f)
        try:
            os.environ["LMI_CUBLASLT_TABLE"] = f.name
            self.assertEqual(lt_gemm.table_paths(), [f.name])
            self.assertEqual(lt_gemm.load_tables(lt_gemm.table_paths())[0].device, "Some GPU")
        finally:
            del os.environ["LMI_CUBLASLT_TABLE"]
            os.unlink(f.name)

    def test_shipped_tables_parse(self):
        paths = lt_gemm.table_paths()
        self.assertTrue(paths, "kernels/lt_tables/ holds at least the H100 table")
        for t in lt_gemm.load_tables(paths):
            self.assertTrue(t.entries, t.source)
            for (n, k, dtype), by_m in t.entries.items():
                self.assertIn(dtype, ("bf16", "fp16"))
                self.assertTrue(n > 0 and k > 0 and all(m > 0 for m in by_m), t.source)


@unittest.skipIf(CUDA, "CPU-only behaviour")
class CpuTest(unittest.TestCase):
    def test_no_cuda_means_no_tuned_path_and_linear_unchanged(self):
        self.assertIsNone(lt_gemm.get())
        self.assertIn(lt_gemm.status(), ("no CUDA device", "off (LMI_CUBLASLT=0)"))
        x, w = torch.randn(5, 8), torch.randn(3, 8)
        torch.testing.assert_close(quant.linear(x, w), F.linear(x, w), rtol=0, atol=0)


def _rel_err(y, ref):
    return ((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class TunedGemmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lt = lt_gemm.get()
        if cls.lt is None:
            raise unittest.SkipTest(f"no tuned cuBLASLt path on this card: {lt_gemm.status()}")
        torch.manual_seed(0)

    def _served(self):
        """(N, K, rows) for every bf16 entry of the table."""
        return [(n, k, m) for (n, k, dtype), by_m in sorted(self.lt.table.entries.items()) if dtype == "bf16"
                for m in sorted(by_m)]

    def test_every_entry_matches_f_linear(self):
        for n, k, m in self._served():
            with self.subTest(n=n, k=k, m=m):
                w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                before = self.lt.calls
                y = quant.linear(x, w)
                self.assertEqual(self.lt.calls, before + 1, "the tuned path served this call")
                self.assertEqual(y.shape, (m, n))
                self.assertLess(_rel_err(y, F.linear(x, w)), 1e-2)
                del w

    def test_inside_a_cuda_graph(self):
        n, k, m = self._served()[0]
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        quant.linear(x, w)  # plan made outside the capture
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = quant.linear(x, w)
        x.copy_(torch.randn(m, k, device="cuda", dtype=torch.bfloat16))
        g.replay()
        torch.cuda.synchronize()
        self.assertLess(_rel_err(y, F.linear(x, w)), 1e-2)

    def test_calls_the_table_does_not_serve_fall_back(self):
        n, k, m = self._served()[0]
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(m + 1, k, device="cuda", dtype=torch.bfloat16)
        before = self.lt.calls
        cases = {
            "bias": lambda: quant.linear(x[:m], w, torch.randn(n, device="cuda", dtype=torch.bfloat16)),
            "misaligned": lambda: quant.linear(x.view(-1)[8: 8 + m * k].view(m, k), w),
            "non-contiguous": lambda: quant.linear(x[:m].t().contiguous().t(), w),
            "rows not tuned": lambda: quant.linear(x[:m - 8], w),
            "shape not tuned": lambda: quant.linear(x[:m], w[: n // 2 + 8]),
            "fp32": lambda: quant.linear(x[:m].float(), w.float()),
        }
        for name, f in cases.items():
            with self.subTest(name):
                y = f()
                self.assertEqual(self.lt.calls, before, f"{name} must go to F.linear")
                self.assertTrue(torch.isfinite(y).all())


if __name__ == "__main__":
    unittest.main()
