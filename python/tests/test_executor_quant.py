# Weight-only int8 and int4: the quantizers' error bounds and int4 packing, selection and refusal through
# option.quantize, the quantized models against their full-precision selves on a zoo model (CPU path here,
# Triton kernels on CUDA), and the int8 Triton kernel against dequantize-then-matmul (int4's kernel test is
# in test_executor_gpu.py).
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from lmi_executor.quant import (  # noqa: E402
    Int4Weight,
    Int8Weight,
    int4_group_size,
    linear,
    pack_int4,
    quantize_int4,
    quantize_int8,
)
from test_executor_model import Driver, make_worker, sampling  # noqa: E402

ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "zoo")
ZOO_LLAMA = os.path.join(ZOO, "llama")
CUDA = torch.cuda.is_available()


class QuantizeOptionTest(unittest.TestCase):
    def test_quantize_option_selects_int8_or_is_refused(self):
        from lmi_executor.config import ExecutorOptions
        from lmi_executor.worker import effective_dtype

        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", quantize="bitsandbytes8")), "int8")
        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", quantize="dynamic_int8")), "int8")
        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", dtype="bf16")), "bf16")
        self.assertEqual(effective_dtype(ExecutorOptions(model_dir="x", quantize="bitsandbytes4")), "int4")
        for method in ("gptq", "awq"):
            with self.assertRaisesRegex(ValueError, f"option.quantize={method} needs a pre-quantized "
                                                    f"{method.upper()} checkpoint.*bitsandbytes4"):
                effective_dtype(ExecutorOptions(model_dir="x", quantize=method))
        with self.assertRaisesRegex(ValueError, "option.quantize=smoothquant is not supported.*load_in_4bit"):
            effective_dtype(ExecutorOptions(model_dir="x", quantize="smoothquant"))

    def test_int4_resolves_to_bf16_on_gpu_and_fp32_on_cpu(self):
        from lmi_executor.worker import resolve_dtype

        self.assertEqual(resolve_dtype("int4", "bfloat16", torch.device("cpu")), torch.float32)
        self.assertEqual(resolve_dtype("int4", "float32", torch.device("cuda")), torch.bfloat16)

    @unittest.skipUnless(os.path.exists(os.path.join(ZOO, "gpt2", "model.safetensors")), "zoo gpt2 not present")
    def test_gpt_family_refuses_int4(self):
        with self.assertRaisesRegex(ValueError, "weight-only int4 .* not supported for GPT2LMHeadModel"):
            make_worker(os.path.join(ZOO, "gpt2"), device="cpu", quantize="bitsandbytes4")


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


class Int4QuantizerTest(unittest.TestCase):
    def test_pack_unpack_round_trip_and_nibble_order(self):
        g = torch.Generator().manual_seed(3)
        q = torch.randint(0, 16, (7, 96), generator=g).to(torch.uint8)
        p = pack_int4(q)
        self.assertEqual((p.dtype, tuple(p.shape)), (torch.uint8, (7, 48)))
        self.assertEqual(int(p[2, 5]), int(q[2, 10]) | (int(q[2, 11]) << 4))  # even k low, odd k high
        w = Int4Weight(p, torch.ones(3, 7, dtype=torch.float16), torch.zeros(3, 7, dtype=torch.float16), 32)
        self.assertTrue(torch.equal(w.unpack(), q))
        self.assertEqual(tuple(w.shape), (7, 96))
        self.assertTrue(torch.equal(w.dequantize(torch.float32), q.float()))  # scale 1, offset 0: the codes

    def test_group_size_follows_k(self):
        self.assertEqual([int4_group_size(k) for k in (4096, 14336, 128, 64, 96, 40)], [128, 128, 128, 64, 32, 8])
        with self.assertRaisesRegex(ValueError, "K=63 is odd"):
            int4_group_size(63)

    def test_dequantized_error_is_at_most_half_a_step_per_group(self):
        g = torch.Generator().manual_seed(4)
        for N, K in ((37, 256), (5, 64), (9, 96)):
            # rows of very different magnitudes, a shifted row (asymmetric range) and a constant group
            w = torch.randn(N, K, generator=g) * torch.linspace(0.01, 3, N)[:, None]
            w[0] += 0.5
            w[1, : int4_group_size(K)] = 0.25
            qw = quantize_int4(w)
            G = K // qw.group
            self.assertEqual((qw.group, tuple(qw.scale.shape), qw.scale.dtype), ({256: 128, 64: 64, 96: 32}[K], (G, N),
                                                                                 torch.float16))
            err = (qw.dequantize(torch.float32) - w).abs().view(N, G, qw.group)
            s = qw.scale.t().float()[:, :, None]
            # half a step, plus fp16 rounding of the offset (|min| * 2^-11) and of the step (15 steps * 2^-11)
            lo = w.view(N, G, qw.group).amin(-1, keepdim=True).abs()
            bound = 0.5 * s * (1 + 30 * 2.0**-11) + lo * 2.0**-11 + 1e-7
            self.assertTrue(bool((err <= bound).all()), (N, K, float((err - bound).max())))
            codes = qw.unpack().view(N, G, qw.group)
            varied = w.view(N, G, qw.group).amax(-1) > w.view(N, G, qw.group).amin(-1)
            # every non-constant group uses the whole code range 0..15
            self.assertTrue(bool((codes.amin(-1)[varied] == 0).all() and (codes.amax(-1)[varied] == 15).all()))
            self.assertEqual(float(err[1, 0].max()), 0.0)  # the constant group is exact

    def test_asymmetric_beats_symmetric_on_gaussian_weights(self):
        w = torch.randn(64, 4096, generator=torch.Generator().manual_seed(5)) * 0.02
        errs = [((quantize_int4(w, symmetric=s).dequantize(torch.float32) - w).norm() / w.norm()).item()
                for s in (False, True)]
        # uniform rounding of a Gaussian group's range over 15 steps: about 9-10% relative error
        self.assertLess(errs[0], 0.11)
        self.assertLess(errs[0], errs[1])

    def test_linear_on_int4_equals_dequantized_matmul(self):
        g = torch.Generator().manual_seed(6)
        w, x, b = torch.randn(24, 256, generator=g), torch.randn(2, 5, 256, generator=g), torch.randn(24, generator=g)
        qw = quantize_int4(w)
        ref = x @ qw.dequantize(torch.float32).t() + b
        self.assertTrue(torch.allclose(linear(x, qw, b), ref, atol=1e-5))
        self.assertFalse(torch.allclose(linear(x, qw, b), x @ w.t() + b, atol=1e-2))  # it really is quantized


@unittest.skipUnless(os.path.exists(os.path.join(ZOO_LLAMA, "model.safetensors")), "zoo llama not present")
class Int4ModelTest(unittest.TestCase):
    def test_int4_model_equals_its_dequantized_self_and_tracks_fp32(self):
        prompt = [5, 17, 42, 8, 91, 33, 7, 100, 250, 3, 77, 12, 64, 9, 1000, 2047]
        w4 = make_worker(ZOO_LLAMA, num_blocks=64, device="cpu", quantize="bitsandbytes4", block_size=16)
        self.assertIsInstance(w4.model.layers[0]["qkv_w"], Int4Weight)
        self.assertIsInstance(w4.model.layers[1]["down_w"], Int4Weight)
        self.assertIsInstance(w4.model.params["lm_head"], torch.Tensor)  # LM head, embeddings, norms stay
        # fp32 model whose projections are the int4 model's weights dequantized: the same function.
        wd = make_worker(ZOO_LLAMA, num_blocks=64, device="cpu", dtype="fp32", block_size=16)
        full = make_worker(ZOO_LLAMA, num_blocks=64, device="cpu", dtype="fp32", block_size=16)
        for L4, Ld in zip(w4.model.layers, wd.model.layers):
            for k in ("qkv_w", "o_w", "gate_up_w", "down_w"):
                Ld[k] = L4[k].dequantize(torch.float32)
        # weight_bytes counts the packed codes (K/2 bytes a row) and two fp16 values per group
        saved = sum(4 * L[k].numel() - (L[k].numel() // 2 + 4 * L[k].numel() // int4_group_size(L[k].shape[1]))
                    for L in full.model.layers for k in ("qkv_w", "o_w", "gate_up_w", "down_w"))
        self.assertEqual(w4.model.weight_bytes(), full.model.weight_bytes() - saved)
        s = sampling(promptLogprobs=True, numTopLogprobs=1)
        lp = {}
        for name, w in (("int4", w4), ("deq", wd), ("fp32", full)):
            lp[name] = Driver(w).run(new=[("a", prompt, len(prompt), s)])["promptLogprobs"]["a"][1:]
        same = max(abs(a["logprob"] - b["logprob"]) for a, b in zip(lp["int4"], lp["deq"]))
        self.assertLess(same, 1e-4)
        d = [abs(a["logprob"] - b["logprob"]) for a, b in zip(lp["int4"], lp["fp32"])]
        top1 = sum(int(a["top"][0][0] == b["top"][0][0]) for a, b in zip(lp["int4"], lp["fp32"]))
        sys.stderr.write(f"\nint4 vs fp32 on cpu: mean |d logprob| {sum(d) / len(d):.3f}, worst {max(d):.3f}, "
                         f"top-1 {top1}/{len(d)}\n")
        self.assertGreater(max(d), 0.0)
        # Measured here: mean 1.32 nats, top-1 11/15. These random 64-wide models have no redundancy (a group is
        # a whole row; int4 leaves ~10% relative weight error): Gaussian noise of 10% of each matrix's std on
        # the same four projections gives the same 1.30 / 9 of 15, while swapped nibbles give 6.0 / 0 of 15.
        # Over the zoo, teacher-forced against fp32 (bench/gpu-quant-accuracy.py), the mean is 0.47-0.83.
        self.assertLess(sum(d) / len(d), 2.5)
        self.assertGreaterEqual(top1, 8)


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
        # Measured at most 0.31 against the fp32 goldens over the zoo (bench/gpu-quant-accuracy.py, CPU and H100).
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
