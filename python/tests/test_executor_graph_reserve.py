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

from lmi_executor.graph_capture import decode_graph_sizes  # noqa: E402
from lmi_executor.kernels import attention_launch  # noqa: E402
from lmi_executor.kernels.attention_launch import SHORT_CONTEXT, decode_launch, has_short_launch  # noqa: E402
from lmi_executor.memory_profile import GRAPH_BASE_BYTES, graph_reserve_bytes  # noqa: E402
from lmi_executor.prefill_graphs import graph_sizes  # noqa: E402


def worker(max_num_seqs=256, graphs=True, backend="triton", vocab=128256, max_tokens=8192, kv_dtype=torch.bfloat16):
    opts = SimpleNamespace(enable_cuda_graph=graphs, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_tokens)
    return SimpleNamespace(opts=opts, model=SimpleNamespace(attn=SimpleNamespace(backend=backend), nkv=8),
                           cfg=SimpleNamespace(vocab_size=vocab), max_model_len=8192, kv_dtype=kv_dtype)


SHORT_ROWS_BF16 = 1 + 2 + 4 + 8  # an H100's 132 SMs, 8 KV heads: buckets 1-8 split 8-16 ways


@mock.patch.object(attention_launch, "_NUM_SMS", 132)
class DecodeLaunchTest(unittest.TestCase):
    def test_short_tiles_only_within_the_bound_and_where_splits_are_many(self):
        for b in (1, 2, 4, 8):
            self.assertGreaterEqual(decode_launch(b, 8)["splits"], 8)
            self.assertEqual(decode_launch(b, 8)["block_n"], 64)  # no bound known: any context
            self.assertEqual(decode_launch(b, 8, 2, SHORT_CONTEXT)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 2, 128)["block_n"], 32)
            self.assertEqual(decode_launch(b, 8, 2, SHORT_CONTEXT + 1)["block_n"], 64)
            self.assertTrue(has_short_launch(b, 8))
        self.assertEqual(decode_launch(16, 8)["splits"], 4)
        self.assertFalse(has_short_launch(16, 8))  # 4 splits of a bf16 cache: 64-key tiles were faster
        self.assertTrue(has_short_launch(16, 8, 1))  # fp8: every split launch
        self.assertEqual(decode_launch(16, 8, 1, 300)["block_n"], 32)
        for b in (24, 256):  # one program per (sequence, KV head): the same launch at any context
            self.assertEqual(decode_launch(b, 8)["splits"], 1)
            self.assertFalse(has_short_launch(b, 8))
            self.assertFalse(has_short_launch(b, 8, 1))
        # everything but the tile width is the same, so one split workspace serves both graphs of a bucket
        short, any_ctx = decode_launch(1, 8, 2, 200), decode_launch(1, 8)
        self.assertEqual({k: v for k, v in short.items() if k != "block_n"}, {k: v for k, v in any_ctx.items() if k != "block_n"})


@mock.patch.object(attention_launch, "_NUM_SMS", 132)
class GraphReserveTest(unittest.TestCase):
    def test_buckets(self):
        self.assertEqual(decode_graph_sizes(256)[-3:], [192, 224, 256])
        self.assertEqual(decode_graph_sizes(100)[-2:], [96, 100])
        self.assertEqual(decode_graph_sizes(1), [1])

    def test_reserve_follows_buckets_and_vocab(self):
        r256 = graph_reserve_bytes(worker(256))
        # 1,447 decode rows, 15 more for the short-context graphs, 16 prefill rows of 128,256 fp32 logits, plus the
        # base: about 1.1 GiB
        self.assertEqual(r256, GRAPH_BASE_BYTES + (sum(decode_graph_sizes(256)) + SHORT_ROWS_BF16 + 16) * 128256 * 4)
        # an fp8 cache also keeps one for bucket 16 (uint8 stands in for it: only the element size counts, and
        # Debian's torch has no fp8 dtypes)
        self.assertEqual(graph_reserve_bytes(worker(256, kv_dtype=torch.uint8)) - r256, 16 * 128256 * 4)
        self.assertGreater(graph_reserve_bytes(worker(512)), r256 + (600 << 20))
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
