# memory_profile.graph_reserve_bytes: what the KV budget leaves for the CUDA graphs grows with the decode
# buckets (max_num_seqs) and the vocabulary, and is nothing when graphs are off.
import os
import sys
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lmi_executor.graph_capture import decode_graph_sizes  # noqa: E402
from lmi_executor.memory_profile import GRAPH_BASE_BYTES, graph_reserve_bytes  # noqa: E402
from lmi_executor.prefill_graphs import graph_sizes  # noqa: E402


def worker(max_num_seqs=256, graphs=True, backend="triton", vocab=128256, max_tokens=8192):
    opts = SimpleNamespace(enable_cuda_graph=graphs, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_tokens)
    return SimpleNamespace(opts=opts, model=SimpleNamespace(attn=SimpleNamespace(backend=backend)),
                           cfg=SimpleNamespace(vocab_size=vocab), max_model_len=8192)


class GraphReserveTest(unittest.TestCase):
    def test_buckets(self):
        self.assertEqual(decode_graph_sizes(256)[-3:], [192, 224, 256])
        self.assertEqual(decode_graph_sizes(100)[-2:], [96, 100])
        self.assertEqual(decode_graph_sizes(1), [1])

    def test_reserve_follows_buckets_and_vocab(self):
        r256 = graph_reserve_bytes(worker(256))
        # 1,447 decode rows + 16 prefill rows of 128,256 fp32 logits, plus the base: about 1.1 GiB
        self.assertEqual(r256, GRAPH_BASE_BYTES + (sum(decode_graph_sizes(256)) + 16) * 128256 * 4)
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
        from unittest import mock

        with mock.patch.dict(os.environ, {"LMI_PREFILL_GRAPHS": "0"}):
            off = graph_reserve_bytes(worker())
        self.assertEqual(graph_reserve_bytes(worker()) - off, 16 * 128256 * 4)


if __name__ == "__main__":
    unittest.main()
