# memory_profile.graph_reserve_bytes: what the KV budget leaves for the CUDA graphs grows with the decode
# buckets (max_num_seqs, and the small buckets' short-context graphs) and the vocabulary, and is nothing when
# graphs are off. Also the decode attention's launch choice behind those short-context graphs.
import os
import sys
import unittest
from types import SimpleNamespace
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lmi_executor.graph_capture import bucket_for, decode_graph_sizes  # noqa: E402
from lmi_executor.kernels import attention_launch  # noqa: E402
from lmi_executor.kernels.attention_launch import (  # noqa: E402
    LONG_PROMPT_CONTEXT, POWER_LIMITED_DECODE_BATCH, SHORT_CONTEXT, SHORTER_CONTEXT, context_bounds, decode_launch,
    prefill_launch)
from lmi_executor.memory_profile import GRAPH_BASE_BYTES, graph_reserve_bytes  # noqa: E402
from lmi_executor.prefill_graphs import graph_sizes  # noqa: E402


def worker(max_num_seqs=256, graphs=True, backend="triton", vocab=128256, max_tokens=8192, kv_dtype=torch.bfloat16,
           dtype=torch.bfloat16):
    opts = SimpleNamespace(enable_cuda_graph=graphs, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_tokens)
    return SimpleNamespace(opts=opts, model=SimpleNamespace(attn=SimpleNamespace(backend=backend), nkv=8),
                           cfg=SimpleNamespace(vocab_size=vocab), max_model_len=8192, kv_dtype=kv_dtype, dtype=dtype)


# An H100's 132 SMs, 8 KV heads: buckets 1-4 split 16 ways (graphs for any context, <= 512 and <= 256 keys), bucket 8
# 8 ways (any, <= 512); the rest keep one graph. Over fp8: buckets 1-2 keep two (any, <= 512); 4-16 take 32-key tiles
# at any context, so one graph.
SHORT_ROWS_BF16 = 2 * (1 + 2 + 4) + 8
SHORT_ROWS_FP8 = 1 + 2


@mock.patch.object(attention_launch, "_NUM_SMS", 132)
class DecodeLaunchTest(unittest.TestCase):
    def test_short_tiles_only_within_the_bound_and_where_splits_are_many(self):
        for b in (1, 2, 4, 8):
            self.assertGreaterEqual(decode_launch(b, 8)["splits"], 8)
            self.assertEqual(decode_launch(b, 8)["block_n"], 64)  # no bound known: any context
            self.assertEqual(decode_launch(b, 8, 2, SHORT_CONTEXT)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 2, 300)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 2, SHORT_CONTEXT + 1)["block_n"], 64)
        self.assertEqual(decode_launch(16, 8)["splits"], 4)
        self.assertEqual(decode_launch(16, 8, 2, 300)["block_n"], 64)  # 4 splits of a bf16 cache: 64-key tiles
        self.assertEqual(decode_launch(16, 8, 1, 300)["block_n"], 32)  # fp8: every split launch
        for b in (4, 8, 16):  # fp8 from batch 4: 32-key tiles at any context
            self.assertEqual(decode_launch(b, 8, 1)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 1, SHORT_CONTEXT + 1)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 1, SHORT_CONTEXT), decode_launch(b, 8, 1))
        for b in (1, 2):  # fp8 batches 1-2: 32-key tiles only within the bound
            self.assertEqual(decode_launch(b, 8, 1)["block_n"], 64)
            self.assertEqual(decode_launch(b, 8, 1, SHORT_CONTEXT)["block_n"], 32)
        # 2 warps a program from POWER_LIMITED_DECODE_BATCH sequences on (bf16); 4 below; the fp8 launch has 1
        self.assertEqual(decode_launch(POWER_LIMITED_DECODE_BATCH - 1, 8)["num_warps"], 4)
        self.assertEqual(decode_launch(POWER_LIMITED_DECODE_BATCH, 8)["num_warps"], 2)
        self.assertEqual(decode_launch(256, 8, 1)["num_warps"], 1)
        for b in (24, 256):  # one program per (sequence, KV head): the same launch at any context
            self.assertEqual(decode_launch(b, 8)["splits"], 1)
            self.assertEqual(decode_launch(b, 8, 2, 100), decode_launch(b, 8))
            self.assertEqual(decode_launch(b, 8, 1, 100), decode_launch(b, 8, 1))

    def test_prompt_steps_take_64_key_tiles_from_the_long_context_bound(self):
        for ctx in (0, 512, LONG_PROMPT_CONTEXT - 1):
            self.assertEqual(prefill_launch(4, 128, 2, ctx)["block_n"], 32)
            self.assertEqual(prefill_launch(4, 128, 1, ctx)["block_n"], 64)  # fp8: 64-key tiles at any context
        for ctx in (LONG_PROMPT_CONTEXT, 8192):
            self.assertEqual(prefill_launch(4, 128, 2, ctx)["block_n"], 64)
            self.assertEqual(prefill_launch(4, 128, 2, ctx)["block_q"], prefill_launch(4, 128, 2, 0)["block_q"])

    def test_fresh_prompt_steps_take_64_key_tiles_from_the_long_context_bound(self):
        short = prefill_launch(4, 128, 2, LONG_PROMPT_CONTEXT - 1, fresh=True)
        self.assertEqual((short["block_q"], short["block_n"], short["num_warps"]), (16, 32, 4))
        for ctx in (LONG_PROMPT_CONTEXT, 8192):
            long = prefill_launch(4, 128, 2, ctx, fresh=True)
            self.assertEqual((long["block_q"], long["block_n"], long["num_warps"]), (16, 64, 4))
        # head_dim 256 (not measured with the wider launch), fp8 and fp32 (whose tiles would not fit in shared memory
        # 3 deep) keep their launch at any context.
        self.assertEqual(prefill_launch(4, 256, 2, 8192, fresh=True), prefill_launch(4, 256, 2, 0, fresh=True))
        self.assertEqual(prefill_launch(4, 128, 1, 8192, fresh=True)["num_warps"], 4)
        self.assertEqual(prefill_launch(4, 128, 4, 8192, fresh=True), prefill_launch(4, 128, 4, 0, fresh=True))

    def test_eight_splits_within_the_shorter_bound(self):
        self.assertEqual(decode_launch(1, 8, 2, SHORTER_CONTEXT)["splits"], 8)
        self.assertEqual(decode_launch(1, 8, 2, SHORTER_CONTEXT + 1)["splits"], 16)
        self.assertEqual(decode_launch(1, 8, 1, SHORTER_CONTEXT)["splits"], 16)  # not measured over fp8: unchanged
        self.assertEqual(decode_launch(8, 8, 2, SHORTER_CONTEXT)["splits"], 8)  # already 8
        for b in (1, 2, 4, 8, 16):  # the split workspace is sized by the unbounded launch: the most splits
            for bound in (0, SHORTER_CONTEXT, SHORT_CONTEXT):
                self.assertLessEqual(decode_launch(b, 8, 2, bound)["splits"], decode_launch(b, 8)["splits"])

    def test_graph_bounds_are_the_ones_whose_launch_differs(self):
        self.assertEqual(context_bounds(1, 8), [0, SHORT_CONTEXT, SHORTER_CONTEXT])
        self.assertEqual(context_bounds(8, 8), [0, SHORT_CONTEXT])
        self.assertEqual(context_bounds(16, 8), [0])
        self.assertEqual(context_bounds(16, 8, 1), [0])
        self.assertEqual(context_bounds(4, 8, 1), [0])
        self.assertEqual(context_bounds(2, 8, 1), [0, SHORT_CONTEXT])
        self.assertEqual(context_bounds(1, 8, 1), [0, SHORT_CONTEXT])
        self.assertEqual(context_bounds(256, 8), [0])
        sizes = decode_graph_sizes(256)
        self.assertEqual(sum(b * (len(context_bounds(b, 8)) - 1) for b in sizes), SHORT_ROWS_BF16)
        self.assertEqual(sum(b * (len(context_bounds(b, 8, 1)) - 1) for b in sizes), SHORT_ROWS_FP8)


@mock.patch.object(attention_launch, "_NUM_SMS", 132)
class GraphReserveTest(unittest.TestCase):
    def test_buckets(self):
        self.assertEqual(decode_graph_sizes(256)[-3:], [192, 224, 256])
        self.assertEqual(decode_graph_sizes(100)[-2:], [96, 100])
        self.assertEqual(decode_graph_sizes(1), [1])
        sizes = decode_graph_sizes(100)
        self.assertEqual([bucket_for(sizes, n) for n in (1, 3, 16, 17, 97, 100, 101)], [1, 4, 16, 24, 100, 100, None])

    def test_reserve_follows_buckets_and_vocab(self):
        r256 = graph_reserve_bytes(worker(256))
        # Buckets up to 8 rows (with their short-context graphs: 15 + 22 rows) and the 16 prefill rows hold fp32
        # logits, the other 1,432 decode rows bf16 ones, 128,256 a row, plus the base: about 0.74 GiB
        small = 1 + 2 + 4 + 8 + SHORT_ROWS_BF16
        big = sum(decode_graph_sizes(256)) - 15
        self.assertEqual(r256, GRAPH_BASE_BYTES + ((small + 16) * 4 + big * 2) * 128256)
        self.assertEqual(graph_reserve_bytes(worker(256, dtype=torch.float32)) - r256, big * 2 * 128256)
        # an fp8 cache keeps other short-context graphs (uint8 stands in for it: only the element size counts, and
        # Debian's torch has no fp8 dtypes); they are all small buckets
        fp8 = graph_reserve_bytes(worker(256, kv_dtype=torch.uint8))
        self.assertEqual(fp8 - r256, (SHORT_ROWS_FP8 - SHORT_ROWS_BF16) * 128256 * 4)
        self.assertGreater(graph_reserve_bytes(worker(512)), r256 + (300 << 20))
        self.assertLess(graph_reserve_bytes(worker(256, vocab=32000)), r256)
        self.assertEqual(graph_reserve_bytes(worker(graphs=False)), 0)
        self.assertEqual(graph_reserve_bytes(worker(backend="reference")), 0)

    def test_reserve_counts_the_prefill_buckets_that_get_captured(self):
        # No step bound (max_num_batched_tokens 0): PrefillGraphs captures up to max_model_len, so the reserve
        # holds those 16 buckets' logits too, as with a bound of 8192.
        self.assertEqual(graph_reserve_bytes(worker(max_tokens=0)), graph_reserve_bytes(worker()))
        self.assertEqual(graph_sizes(0, 8192), graph_sizes(8192, 8192))
        self.assertEqual(graph_sizes(300, 8192)[-1], 300)

    def test_no_prefill_rows_when_prefill_graphs_are_off(self):
        with mock.patch.dict(os.environ, {"LMI_PREFILL_GRAPHS": "0"}):
            off = graph_reserve_bytes(worker())
        self.assertEqual(graph_reserve_bytes(worker()) - off, 16 * 128256 * 4)


if __name__ == "__main__":
    unittest.main()
