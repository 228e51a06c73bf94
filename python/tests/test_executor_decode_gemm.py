# kernels/decode_gemm.py: on every machine, how the kernel is found, built and refused (off, no sm_90 device, a
# failing nvcc, the build cache); with nvcc on the machine, that the CUDA source compiles and exports its entry point;
# on an H100, the fused gate/up + SiLU kernel and the plain one against the unfused path and an fp32 reference
# (eager, repeated and inside a CUDA graph), and every call it must refuse.
import ctypes
import json
import os
import stat
import sys
import tempfile
import unittest
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor import layers  # noqa: E402
from lmi_executor.kernels import decode_gemm  # noqa: E402
from test_executor_model import make_worker  # noqa: E402

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


def fresh_state():
    return mock.patch.dict(decode_gemm._STATE, {"loaded": False, "gemm": None, "why": "not used"})


class FindAndBuildTest(unittest.TestCase):
    def test_off_by_environment(self):
        with fresh_state(), mock.patch.dict(os.environ, {"LMI_DECODE_GEMM": "0"}):
            self.assertIsNone(decode_gemm.get())
            self.assertIn("LMI_DECODE_GEMM=0", decode_gemm.status())

    def test_inactive_is_none_without_touching_the_state(self):
        with fresh_state(), mock.patch.object(decode_gemm, "ACTIVE", False):
            self.assertIsNone(decode_gemm.get())
            self.assertFalse(decode_gemm._STATE["loaded"])

    @unittest.skipIf(HOPPER, "CPU or non-Hopper behaviour")
    def test_needs_a_hopper_device(self):
        with fresh_state(), mock.patch.dict(os.environ, {"LMI_DECODE_GEMM": "1"}):
            self.assertIsNone(decode_gemm.get())
            self.assertIn("sm_90", decode_gemm.status())

    def test_a_failing_compiler_is_reported_and_leaves_no_file(self):
        with tempfile.TemporaryDirectory() as d:
            nvcc = os.path.join(d, "nvcc")
            with open(nvcc, "w") as f:
                f.write('#!/bin/sh\nif [ "$1" = --version ]; then echo "fake nvcc 0.0"; exit 0; fi\n'
                        'echo "decode_gemm.cu(1): error: planted failure" >&2; exit 2\n')
            os.chmod(nvcc, os.stat(nvcc).st_mode | stat.S_IEXEC)
            out = os.path.join(d, "cache")
            with self.assertRaisesRegex(RuntimeError, "nvcc failed \\(2\\).*planted failure"):
                decode_gemm.build(nvcc, out)
            self.assertEqual(os.listdir(out), [])

    def test_the_row_rule_takes_whole_256_token_blocks_only(self):
        # Measured (decode_gemm.py): every multiple of 256 from 256 to 8,192 rows faster fused; other counts pay for
        # the zero-filled rest of their last block (1,100 / 3,000 / 6,700 rows slower fused).
        for rows in (256, 512, 4096, 6656, 8192, 16384):
            self.assertTrue(decode_gemm.fuses_rows(rows), rows)
        for rows in (0, 1, 128, 255, 257, 1100, 3000, 6700, 8191):
            self.assertFalse(decode_gemm.fuses_rows(rows), rows)

    def test_a_cached_build_is_reused_by_key(self):
        with tempfile.TemporaryDirectory() as d:
            nvcc = os.path.join(d, "nvcc")
            with open(nvcc, "w") as f:  # "compiles" by writing the output file named after -o
                f.write('#!/bin/sh\nif [ "$1" = --version ]; then echo "fake nvcc 0.0"; exit 0; fi\n'
                        'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then echo built >"$2"; fi; shift; done\n'
                        'echo run >>"$(dirname "$0")/runs"\n')
            os.chmod(nvcc, os.stat(nvcc).st_mode | stat.S_IEXEC)
            out = os.path.join(d, "cache")
            first = decode_gemm.build(nvcc, out)
            self.assertEqual(decode_gemm.build(nvcc, out), first)
            with open(os.path.join(d, "runs")) as f:
                self.assertEqual(f.read().count("run"), 1)  # the second call found the first's library
            # Other flags (a benchmark's variant) are another library.
            self.assertNotEqual(decode_gemm.build(nvcc, out, ["DGW_STAGES=5"]), first)

    @unittest.skipUnless(decode_gemm.nvcc_path(), "needs nvcc")
    def test_the_source_compiles_and_exports_its_entry_point(self):
        with tempfile.TemporaryDirectory() as d:
            path = decode_gemm.build(decode_gemm.nvcc_path(), d)
            lib = ctypes.CDLL(path)  # loads without a GPU: the CUDA runtime is linked statically
            self.assertTrue(hasattr(lib, "lmi_decode_gemm"))


@unittest.skipUnless(HOPPER, "needs an sm_90 (Hopper) GPU")
class KernelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dg = decode_gemm.get()
        if cls.dg is None:
            raise unittest.SkipTest(f"decode GEMM unavailable: {decode_gemm.status()}")
        torch.manual_seed(0)
        cls.x = torch.randn(256, 1024, device="cuda", dtype=torch.bfloat16)

    def err(self, y, ref):
        return ((y.float() - ref).abs().max() / ref.abs().max()).item()

    @staticmethod
    def reference(x, w):
        """silu(gate) * up from fp32 products, rounded where the unfused path rounds (gate and up to bf16, SiLU)."""
        ref = x.float() @ w.float().t()
        inter = w.shape[0] // 2
        return F.silu(ref[:, :inter].bfloat16().float()).bfloat16().float() * ref[:, inter:].bfloat16().float()

    def test_swiglu_matches_the_unfused_path(self):
        for inter, tile in ((56, 112), (1792, 112), (3584, 112), (112, 224), (3584, 224)):  # one tile, many
            w = torch.randn(2 * inter, 1024, device="cuda", dtype=torch.bfloat16) * 0.05
            want = self.reference(self.x, w)
            got = self.dg.swiglu(self.x, w, tile)
            unfused = layers.silu_and_mul(F.linear(self.x, w))
            self.assertEqual(got.shape, (256, inter))
            self.assertLess(self.err(got, want), 1e-2, inter)
            self.assertLess(self.err(unfused, want), 1e-2, inter)  # the unfused path's own error, for scale
            self.assertLess(self.err(got, unfused.float()), 2e-2, inter)
            self.assertTrue(torch.equal(got, self.dg.swiglu(self.x, w, tile)), "repeatable bit for bit")

    def test_any_row_count(self):
        # Rows past the last full 256 are zero-filled by the loads and left out by the stores.
        w = torch.randn(2 * 1792, 1024, device="cuda", dtype=torch.bfloat16) * 0.05
        for rows in (1, 100, 255, 300, 1000):
            x = torch.randn(rows, 1024, device="cuda", dtype=torch.bfloat16)
            want = self.reference(x, w)
            for tile in (112, 224):
                got = self.dg.swiglu(x, w, tile)
                self.assertEqual(got.shape, (rows, 1792))
                self.assertLess(self.err(got, want), 1e-2, (rows, tile))

    def test_plain_tiles_match_f_linear(self):
        for n, tile in ((1024, 64), (1536, 96), (1792, 112), (448, 112)):
            w = torch.randn(n, 1024, device="cuda", dtype=torch.bfloat16) * 0.05
            y = self.dg.linear(self.x, w, tile)
            self.assertLess(self.err(y, self.x.float() @ w.float().t()), 1e-2, (n, tile))

    def test_inside_a_cuda_graph(self):
        w = torch.randn(2 * 1792, 1024, device="cuda", dtype=torch.bfloat16) * 0.05
        eager = self.dg.swiglu(self.x, w)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = self.dg.swiglu(self.x, w)
        out.zero_()
        g.replay()
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(out, eager))

    def test_the_model_takes_it_for_its_rows_and_agrees_with_the_unfused_path(self):
        # A Llama-shaped dummy model whose MLP the kernel serves (hidden 256, intermediate 448 = 4 tiles of 112):
        # the model's own gate_up weight ([gate; up] as loaded) through the fused path and the unfused one.
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1000,
                           "hidden_size": 256, "intermediate_size": 448, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "rms_norm_eps": 1e-5,
                           "rope_theta": 10000.0, "max_position_embeddings": 512, "eos_token_id": 2,
                           "bos_token_id": 1, "torch_dtype": "bfloat16"}, f)
            model = make_worker(d, device="cuda", dtype="bf16", load_format="dummy").runner.model
        w = model.layers[0]["gate_up_w"]
        for rows, fused in ((256, True), (8192, True), (4096, True), (255, False), (4100, False)):
            h = torch.randn(rows, 256, device="cuda", dtype=torch.bfloat16)
            calls = self.dg.calls
            got = model._gate_up_act(h, w)
            self.assertEqual(self.dg.calls - calls, int(fused), rows)
            with mock.patch.object(decode_gemm, "ACTIVE", False):
                want = model._gate_up_act(h, w)
            self.assertLess(self.err(got, want.float()), 2e-2, rows)

    def test_calls_it_does_not_serve_return_none(self):
        w = torch.randn(2 * 1792, 1024, device="cuda", dtype=torch.bfloat16)
        x = self.x
        self.assertIsNone(self.dg.swiglu(torch.randn(256, 1000, device="cuda", dtype=torch.bfloat16),
                                         torch.randn(2 * 1792, 1000, device="cuda", dtype=torch.bfloat16)))  # K
        self.assertIsNone(self.dg.swiglu(x, w[: 2 * 1790], 112))  # features not a multiple of 56
        self.assertIsNone(self.dg.swiglu(x, w[: 2 * 1736], 224))  # nor of 112 with the wide tile
        self.assertIsNone(self.dg.swiglu(x.half(), w.half()))
        self.assertIsNone(self.dg.swiglu(torch.randn(1024, 256, device="cuda", dtype=torch.bfloat16).t(), w))
        self.assertIsNone(self.dg.linear(x, w, 80))  # no such tile
        self.assertIsNone(self.dg.linear(x, w[:1000], 112))  # N not a multiple of the tile


if __name__ == "__main__":
    unittest.main()
