"""Tests of the torch decoding steps (torch_decoding.py) and StreamingUtils with tiny hand-written
torch models whose next token is a known function of the input, so every emitted id can be checked.
They run where torch is importable (Debian's /usr/bin/python3 with python3-torch) and skip elsewhere.
The tokenizer here is a small stand-in for a transformers tokenizer (transformers is not installable
in CI); it implements only the calls StreamingUtils makes: __call__ with padding, decode, pad/eos ids."""

import importlib.util
import os
import sys
import types
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

HAS_TORCH = importlib.util.find_spec("torch") is not None


def plus_one_logits(torch, ids, vocab=10):
    """Logits that make (token + 1) mod vocab the argmax at every position."""
    return torch.nn.functional.one_hot((ids + 1) % vocab, vocab).float()


@unittest.skipUnless(HAS_TORCH, "torch is not installed for this Python")
class TorchDecodingTest(unittest.TestCase):
    def setUp(self):
        import torch

        from djl_python import torch_decoding

        self.torch, self.td = torch, torch_decoding

    def causal_model(self):
        torch = self.torch

        class NextIsPlusOne(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.calls = []
                self.config = types.SimpleNamespace(is_encoder_decoder=False, architectures=["TinyForCausalLM"])

            def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=True,
                        position_ids=None):
                self.calls.append((input_ids.shape[1], past_key_values, position_ids.tolist()))
                return types.SimpleNamespace(logits=plus_one_logits(torch, input_ids),
                                             past_key_values=len(self.calls))

        return NextIsPlusOne()

    def test_causal_greedy_reuses_cache_and_counts_positions_past_padding(self):
        from djl_python.hf_streaming import stream_text

        torch = self.torch
        model = self.causal_model()
        ids = torch.tensor([[0, 3, 4], [5, 6, 7]])
        mask = torch.tensor([[0, 1, 1], [1, 1, 1]])  # row 0 is left-padded
        step = self.td.CausalStepper(model, ids, mask, {})
        items = list(stream_text(step, lambda t: ",".join(map(str, t)), None, 2, 3))
        self.assertEqual(items, [{"outputs": ["5", "8"]}, {"outputs": [",6", ",9"]}, {"outputs": [",7", ",0"]}])
        self.assertEqual(model.calls[0], (3, None, [[0, 0, 1], [0, 1, 2]]))
        self.assertEqual(model.calls[1], (1, 1, [[2], [3]]))

    def test_repetition_penalty_and_top_k_one(self):
        torch = self.torch
        chooser = self.td._Chooser({"repetition_penalty": 4.0})
        logits = torch.tensor([[2.0, 1.0, 0.0]])
        self.assertEqual(chooser(logits, torch.tensor([[0]])).tolist(), [1], "token 0 was seen: 2/4 < 1")
        sampler = self.td._Chooser({"do_sample": True, "top_k": 1})
        for _ in range(5):
            self.assertEqual(sampler(torch.tensor([[0.1, 3.0, 0.2]]), torch.tensor([[0]])).tolist(), [1])

    def test_seq2seq_runs_the_encoder_once(self):
        torch = self.torch

        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.calls = []

            def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, past_key_values=None,
                        encoder_outputs=None, use_cache=True):
                self.calls.append((input_ids is not None, encoder_outputs is not None, decoder_input_ids.tolist()))
                return types.SimpleNamespace(logits=plus_one_logits(torch, decoder_input_ids),
                                             past_key_values=len(self.calls), encoder_last_hidden_state="H")

        model = Tiny()
        step = self.td.Seq2SeqStepper(model, torch.tensor([[4, 4]]), torch.tensor([[1, 1]]), {}, 0)
        ids, state = step(None)
        ids2, _ = step(state)
        self.assertEqual((ids, ids2), ([1], [2]))
        self.assertEqual(model.calls, [(True, False, [[0]]), (False, True, [[1]])])

    def tokenizer(self):
        """Digits as token ids, 9 = eos; pads on the left like a decoder-only tokenizer should."""
        torch = self.torch

        class Encoding(dict):
            def to(self, device):
                return Encoding({k: v.to(device) for k, v in self.items()})

        class Tok:
            pad_token, pad_token_id, eos_token, eos_token_id, padding_side = None, None, "<e>", 9, "right"

            def __call__(self, texts, return_tensors=None, padding=False):
                rows = [[int(c) for c in t] for t in texts]
                width = max(map(len, rows))
                ids = torch.tensor([[self.eos_token_id] * (width - len(r)) + r for r in rows])
                mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
                return Encoding(input_ids=ids, attention_mask=mask)

            def decode(self, ids, skip_special_tokens=False):
                return "".join(str(i) for i in ids if i != self.eos_token_id)

        return Tok()

    def test_streaming_utils_generator_yields_lists_and_stops_at_eos(self):
        from djl_python.streaming_utils import StreamingUtils

        gen = StreamingUtils.get_stream_generator("Accelerate")
        tok = self.tokenizer()
        out = list(gen(self.causal_model(), tok, ["7", "45"], None, max_new_tokens=8))
        # 7->8->9(eos); 45->6->7->8->9(eos): both finished after 4 steps, before max_new_tokens.
        self.assertEqual(out, [["8", "6"], ["", "7"], ["", "8"], ["", ""]])
        self.assertEqual((tok.pad_token, tok.padding_side), ("<e>", "left"))
        with self.assertRaisesRegex(ValueError, "not supported for streaming"):
            StreamingUtils.get_stream_generator("vllm")

    def test_huggingface_handler_streams_jsonlines(self):
        from djl_python import Input
        from djl_python import huggingface as hf
        from djl_python.hf_config import parse_options

        model = self.causal_model()
        model.device = self.torch.device("cpu")
        svc = hf.HuggingFaceService()
        svc.opts = parse_options({"model_id": "m", "task": "text-generation", "enable_streaming": "true"}, False)
        svc.task, svc.initialized = "text-generation", True
        svc.pipeline = types.SimpleNamespace(model=model, tokenizer=self.tokenizer())
        body = b'{"inputs": ["6"], "parameters": {"max_new_tokens": 2}}'
        out = svc.inference(Input.from_frame({"content-type": "application/json"}, [("data", body)]))
        self.assertEqual(out.properties["content-type"], "application/jsonlines")
        lines = [out.stream_output_formatter(item) for item in out.stream_content]
        self.assertEqual(lines, ['{"outputs": ["7"]}\n', '{"outputs": ["8"]}\n'])


if __name__ == "__main__":
    unittest.main()
