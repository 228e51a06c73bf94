# Weight-only int8: the quantizer's error bound, the int8 model against its fp32 self on a zoo model
# (CPU path here, Triton kernel on CUDA), and the Triton kernel against dequantize-then-matmul.
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.quant import Int8Weight, linear, quantize_int8  # noqa: E402
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

ZOO_LLAMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "zoo", "llama")
CUDA = torch.cuda.is_available()


class QuantizeOptionTest(unittest.TestCase):
    def test_quantize_option_selects_int8_or_is_refused(self):
        from lmi_executor.config import ExecutorOptions
        from lmi_executor.worker import effective_dtype

        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", quantize="bitsandbytes8")), "int8")
        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", quantize="dynamic_int8")), "int8")
        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", dtype="bf16")), "bf16")
        with self.assertRaisesRegex(ValueError, "option.quantize=awq is not supported"):
            effective_dtype(ExecutorOptions(model_dir="x", quantize="awq"))


class QuantizerTest(unittest.TestCase):
    def test_round_trip_error_is_at_most_half_a_step(self):
        w = torch.randn(37, 300, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3, 37)[:, None]
        qw = quantize_int8(w)
        self.assertEqual(qw.q.dtype, torch.int8)
        err = (qw.dequantize(torch.float32) - w).abs()
        self.assertTrue(bool((err <= qw.scale[:, None] / 2 + 1e-7).all()))
        self.assertTrue(bool((qw.q.abs().amax(dim=1) == 127).all()))  # each row uses the full range

    def test_linear_on_int8_equals_dequantized_matmul(self):
        g = torch.Generator().manual_seed(1)
        w, x, b = torch.randn(24, 40, generator=g), torch.randn(5, 40, generator=g), torch.randn(24, generator=g)
        qw = quantize_int8(w)
        ref = x @ qw.dequantize(torch.float32).t() + b
        self.assertTrue(torch.allclose(linear(x, qw, b), ref, atol=1e-5))


@unittest.skipUnless(os.path.exists(os.path.join(ZOO_LLAMA, "model.safetensors")), "zoo llama not present")
class Int8ModelTest(unittest.TestCase):
    def test_int8_model_tracks_full_precision(self):
        # int8 keeps activations in bf16 on CUDA (fp32 on the CPU): compare with that dtype unquantized.
        device = "cuda" if CUDA else "cpu"
        base = "bf16" if CUDA else "fp32"
        prompt = [5, 17, 42, 8, 91, 33, 7, 100, 250]
        outs = {}
        for dt in (base, "int8"):
            w = make_worker(ZOO_LLAMA, num_blocks=64, device=device, dtype=dt, block_size=16, enable_cuda_graph=False)
            if dt == "int8":
                self.assertIsInstance(w.model.layers[0]["qkv_w"], Int8Weight)
            out = Driver(w).run(new=[("a", prompt, len(prompt), sampling(promptLogprobs=True, numTopLogprobs=1))])
            outs[dt] = out
        a, b = outs[base]["promptLogprobs"]["a"][1:], outs["int8"]["promptLogprobs"]["a"][1:]
        worst = max(abs(x["logprob"] - y["logprob"]) for x, y in zip(a, b))
        sys.stderr.write(f"\nint8 vs {base} on {device}: worst |d logprob| {worst:.4f}\n")
        self.assertGreater(worst, 0.0)  # it really is quantized
        # Measured at most 0.31 against the fp32 goldens over the zoo (bench/gpu-int8-accuracy.py, CPU and H100).
        self.assertLess(worst, 0.4)


@unittest.skipUnless(CUDA, "needs a CUDA GPU")
class Int8KernelTest(unittest.TestCase):
    def test_triton_kernel_equals_dequantized_matmul(self):
        from lmi_executor.kernels.int8_matmul import int8_linear

        g = torch.Generator(device="cuda").manual_seed(0)
        # fp32 activations go through tl.dot in TF32 (about 3e-4 relative), bf16 ones in bf16.
        for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float32, 1e-3)):
            for M, K, N in ((1, 4096, 6144), (5, 64, 96), (16, 1000, 130), (17, 4096, 512), (300, 512, 1024)):
                w = torch.randn((N, K), generator=g, device="cuda")
                x = torch.randn((M, K), generator=g, device="cuda").to(dtype)
                qw = quantize_int8(w)
                ref = x.double() @ qw.dequantize(torch.float64).t()
                got = int8_linear(x, qw.q, qw.scale).double()
                err = ((got - ref).norm() / ref.norm()).item()
                self.assertLess(err, tol, (dtype, M, K, N))
                # Through linear(): the kernel up to DEQUANT_ABOVE_ROWS rows, dequantize + cuBLAS above.
                via = linear(x, qw).double()
                self.assertLess(((via - ref).norm() / ref.norm()).item(), tol, ("linear", dtype, M, K, N))
        x = torch.randn((600, 512), generator=g, device="cuda").to(torch.bfloat16)
        qw = quantize_int8(torch.randn((256, 512), generator=g, device="cuda"))
        ref = x.double() @ qw.dequantize(torch.float64).t()
        self.assertLess(((linear(x, qw).double() - ref).norm() / ref.norm()).item(), 1e-2)


if __name__ == "__main__":
    unittest.main()
