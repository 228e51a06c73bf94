"""Tests of the huggingface handler's parts that need neither transformers nor a GPU: option parsing,
task inference, the bitsandbytes-missing error, request parsing/splitting, the streaming token loop,
and sampling-parameter validation. The torch decoding steps are tested in test_djl_torch_decoding.py."""

import importlib.util
import json
import os
import sys
import tempfile
import types
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from djl_python import Input  # noqa: E402
from djl_python import huggingface as hf  # noqa: E402
from djl_python.hf_config import infer_task, parse_options, resolve_task  # noqa: E402
from djl_python.hf_streaming import jsonlines_formatter, sampling_settings, stream_text  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def req(body, content_type="application/json", props=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Input.from_frame({"content-type": content_type, **(props or {})}, [("data", raw)])


class TaskInferenceTest(unittest.TestCase):
    def test_architecture_suffixes(self):
        cases = {"LlamaForCausalLM": "text-generation", "GPT2LMHeadModel": "text-generation",
                 "T5ForConditionalGeneration": "text2text-generation", "BertForMaskedLM": "fill-mask",
                 "DistilBertForSequenceClassification": "text-classification",
                 "BertForTokenClassification": "token-classification",
                 "RobertaForQuestionAnswering": "question-answering", "BertModel": "feature-extraction",
                 "TapasForQuestionAnswering": "table-question-answering"}
        for arch, task in cases.items():
            self.assertEqual(infer_task([arch]), task, arch)

    def test_unknown_architecture_names_the_option(self):
        with self.assertRaisesRegex(ValueError, "set option.task"):
            infer_task(["Whisper"])
        with self.assertRaisesRegex(ValueError, "set option.task"):
            infer_task([])

    def test_task_from_local_config_and_unsupported_inferred_task(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"architectures": ["OPTForCausalLM"]}, f)
            opts = parse_options({"model_id": d}, cuda_available=False)
            from djl_python.hf_config import read_local_architectures
            self.assertEqual(resolve_task(opts, lambda: read_local_architectures(d)), "text-generation")
        opts = parse_options({"model_id": "x"}, cuda_available=False)
        with self.assertRaisesRegex(ValueError, "table-question-answering is not supported"):
            resolve_task(opts, lambda: ["TapasForQuestionAnswering"])
        opts = parse_options({"model_id": "x", "task": "fill-mask"}, cuda_available=False)
        self.assertEqual(resolve_task(opts, lambda: self.fail("must not load the config")), "fill-mask")


class OptionsTest(unittest.TestCase):
    def test_defaults_on_cpu_and_gpu(self):
        cpu = parse_options({"model_id": "gpt2"}, cuda_available=False)
        self.assertEqual((cpu.device, cpu.device_map, cpu.dtype, cpu.quantize_bits), ("cpu", None, "", 0))
        gpu = parse_options({"model_id": "gpt2", "device_id": "0"}, cuda_available=True)
        self.assertEqual((gpu.device, gpu.device_map), ("cuda:0", None))
        unassigned = parse_options({"model_id": "gpt2", "device_id": "-1"}, cuda_available=True)
        self.assertEqual(unassigned.device, "cuda:0")
        tp = parse_options({"model_id": "m", "tensor_parallel_degree": "2"}, cuda_available=True)
        self.assertEqual((tp.device, tp.device_map), (None, "auto"))

    def test_explicit_options(self):
        o = parse_options({"model_id": "m", "dtype": "FP16", "device_map": "balanced", "trust_remote_code": "True",
                           "revision": "abc", "low_cpu_mem_usage": "true", "task": "text-generation",
                           "enable_streaming": "HuggingFace"}, cuda_available=True)
        self.assertEqual((o.dtype, o.device_map, o.trust_remote_code, o.revision, o.low_cpu_mem_usage),
                         ("float16", "balanced", True, "abc", True))
        self.assertEqual(o.enable_streaming, "huggingface")
        self.assertEqual(parse_options({"model_id": "m", "dtype": "bf16"}, False).dtype, "bfloat16")

    def test_bad_values_name_the_option(self):
        bad = [({"dtype": "fp8"}, "Invalid data type: fp8"), ({"task": "summarize-all"}, "option.task"),
               ({"trust_remote_code": "maybe"}, "option.trust_remote_code"),
               ({"enable_streaming": "yes please"}, "option.enable_streaming"),
               ({"quantize": "gptq"}, "option.quantize=gptq is not supported"),
               ({"tensor_parallel_degree": "two"}, "option.tensor_parallel_degree")]
        for props, message in bad:
            with self.assertRaisesRegex(ValueError, message):
                parse_options({"model_id": "m", **props}, cuda_available=False)
        with self.assertRaisesRegex(ValueError, "option.model_id is required"):
            parse_options({}, cuda_available=False)

    def test_bitsandbytes_missing_fails_at_load_saying_so(self):
        for props in ({"load_in_8bit": "true"}, {"load_in_4bit": "true"}, {"quantize": "bitsandbytes8"},
                      {"dtype": "int8"}):
            with self.assertRaisesRegex(ValueError, "needs the bitsandbytes package, which is not installed"):
                parse_options({"model_id": "m", **props}, cuda_available=True, bnb_available=False)

    def test_bitsandbytes_present_sets_bits_and_device_map(self):
        o = parse_options({"model_id": "m", "load_in_4bit": "true"}, cuda_available=True, bnb_available=True)
        self.assertEqual((o.quantize_bits, o.device_map), (4, "auto"))
        o = parse_options({"model_id": "m", "quantize": "bitsandbytes"}, cuda_available=True, bnb_available=True)
        self.assertEqual(o.quantize_bits, 8)

    @unittest.skipIf(importlib.util.find_spec("bitsandbytes") is not None, "bitsandbytes is installed here")
    def test_real_probe_reports_missing_bitsandbytes(self):
        with self.assertRaisesRegex(ValueError, "bitsandbytes"):
            parse_options({"model_id": "m", "quantize": "bitsandbytes4"}, cuda_available=False)


class RequestTest(unittest.TestCase):
    def test_parse_forms(self):
        self.assertEqual(hf.parse_request(req({"inputs": "hi", "parameters": {"max_new_tokens": 3}})),
                         (["hi"], {"max_new_tokens": 3}))
        self.assertEqual(hf.parse_request(req({"inputs": ["a", "b"]})), (["a", "b"], {}))
        self.assertEqual(hf.parse_request(req({"question": "q", "context": "c"})),
                         ([{"question": "q", "context": "c"}], {}))
        self.assertEqual(hf.parse_request(req(b"plain text", "text/plain")), (["plain text"], {}))
        with self.assertRaisesRegex(ValueError, "empty list"):
            hf.parse_request(req({"inputs": []}))

    def test_batch_parameters_must_match(self):
        a, b = req({"inputs": "a", "parameters": {"x": 1}}), req({"inputs": ["b", "c"], "parameters": {"x": 1}})
        self.assertEqual(hf.parse_batch([a, b]), (["a", "b", "c"], [1, 2], {"x": 1}))
        with self.assertRaisesRegex(ValueError, "all input batches must have the same parameters"):
            hf.parse_batch([a, req({"inputs": "z"})])

    def test_normalize_and_split(self):
        gen = [[{"generated_text": "a1"}], [{"generated_text": "b1"}], [{"generated_text": "c1"}]]
        norm = hf.normalize_predictions("text-generation", gen, 3)
        self.assertEqual(hf.split_results(norm, [1, 2]), [[{"generated_text": "a1"}],
                                                          [{"generated_text": "b1"}, {"generated_text": "c1"}]])
        single = hf.normalize_predictions("text-classification", [{"label": "POS", "score": 0.9}], 1)
        self.assertEqual(single, [{"label": "POS", "score": 0.9}])
        # fill-mask unwraps a one-element list: its 2 candidates belong to the one input.
        masks = [{"token_str": "a"}, {"token_str": "b"}]
        self.assertEqual(hf.normalize_predictions("fill-mask", masks, 1), [masks])
        # token-classification does not: one input with exactly one entity stays [[entity]].
        self.assertEqual(hf.normalize_predictions("token-classification", [[{"entity": "X"}]], 1), [[{"entity": "X"}]])
        self.assertEqual(hf.normalize_predictions("question-answering", {"answer": "c"}, 1), [{"answer": "c"}])
        with self.assertRaisesRegex(ValueError, "for 2 inputs"):
            hf.normalize_predictions("fill-mask", [[1]], 2)

    def test_version_compare_for_the_dtype_keyword(self):
        self.assertTrue(hf._version_at_least("5.17.0", (4, 56)))
        self.assertTrue(hf._version_at_least("4.56.0.dev0", (4, 56)))
        self.assertFalse(hf._version_at_least("4.40.2", (4, 56)))

    def test_reply_content_type(self):
        self.assertEqual(hf.reply_content_type(req({}, props={})), "application/json")
        self.assertEqual(hf.reply_content_type(req({}, props={"Accept": "*/*"})), "application/json")
        self.assertEqual(hf.reply_content_type(req({}, props={"accept": "tensor/npz"})), "tensor/npz")
        self.assertEqual(hf.reply_content_type(req(b"", "tensor/ndlist")), "tensor/ndlist")

    @unittest.skipIf(HAS_TORCH and HAS_TRANSFORMERS, "torch and transformers are installed here")
    def test_init_without_transformers_says_what_is_missing(self):
        service = hf.HuggingFaceService()
        with self.assertRaisesRegex(ImportError, "djl_python.huggingface needs the '(torch|transformers)' package"):
            service.initialize({"model_id": "gpt2"})


class InferenceFlowTest(unittest.TestCase):
    """HuggingFaceService.inference with a stand-in pipeline callable (transformers cannot be installed
    in CI): checks the request -> pipeline call -> reply shape and batch split, not transformers."""

    def service(self, task, fn, streaming="false"):
        svc = hf.HuggingFaceService()
        svc.opts = parse_options({"model_id": "m", "task": task, "enable_streaming": streaming}, cuda_available=False)
        svc.task, svc.pipeline, svc.initialized = task, fn, True
        return svc

    def test_text_generation_reply_is_one_object_per_input(self):
        calls = []

        def pipe(inputs, **params):
            calls.append((inputs, params))
            return [[{"generated_text": p + "!"}] for p in inputs]

        out = self.service("text-generation", pipe).inference(req({"inputs": ["a", "b"], "parameters": {"x": 1}}))
        self.assertEqual(calls, [(["a", "b"], {"batch_size": 2, "x": 1})])
        self.assertEqual(out.properties["Content-Type"], "application/json")
        self.assertEqual(json.loads(bytes(out.content.value_at(0))), [{"generated_text": "a!"}, {"generated_text": "b!"}])

    def test_dynamic_batch_is_answered_per_request(self):
        def pipe(inputs, **params):
            return [{"label": f"L{x}", "score": 1.0} for x in inputs]

        batch = Input.from_frame(
            {"batch_size": "2", "batch_000.content-type": "text/plain", "batch_001.content-type": "application/json"},
            [("batch_000.data", b"x"), ("batch_001.data", json.dumps({"inputs": ["y", "z"]}).encode())])
        out = self.service("text-classification", pipe).inference(batch)
        self.assertEqual([k for k, _ in out.content.items()], ["batch_0.data", "batch_1.data"])
        self.assertEqual([json.loads(bytes(v)) for _, v in out.content.items()],
                         [[{"label": "Lx", "score": 1.0}], [{"label": "Ly", "score": 1.0}, {"label": "Lz", "score": 1.0}]])

    def test_hf_streamer_mode_refuses_several_prompts_before_streaming(self):
        svc = self.service("text-generation", types.SimpleNamespace(model=None, tokenizer=None), "huggingface")
        with self.assertRaisesRegex(ValueError, "one prompt at a time"):
            svc.inference(req({"inputs": ["a", "b"]}))

    def test_streaming_refuses_a_dynamic_batch(self):
        batch = Input.from_frame({"batch_size": "2", "batch_000.content-type": "text/plain",
                                  "batch_001.content-type": "text/plain"},
                                 [("batch_000.data", b"x"), ("batch_001.data", b"y")])
        with self.assertRaisesRegex(ValueError, "cannot enable streaming for dynamic batching"):
            self.service("text-generation", None, streaming="true").inference(batch)


class StreamLoopTest(unittest.TestCase):
    def test_deltas_eos_and_split_characters(self):
        # Vocabulary: 1="He", 2="llo", 3=first half of "é", 4=second half, 9=eos.
        pieces = {1: b"He", 2: b"llo", 3: "é".encode()[:1], 4: "é".encode()[1:]}

        def decode(ids):
            return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

        script = [[1, 3], [2, 4], [9, 9]]

        def step(state):
            return script[state], state + 1

        items = list(stream_text(step, decode, 0, batch_size=2, max_new_tokens=10, eos_token_id=9))
        self.assertEqual(items, [{"outputs": ["He", ""]}, {"outputs": ["llo", "é"]}, {"outputs": ["", ""]}])
        self.assertEqual(jsonlines_formatter(items[1]), '{"outputs": ["llo", "é"]}\n')

    def test_max_new_tokens_bounds_the_loop(self):
        items = list(stream_text(lambda s: ([5], s), lambda ids: "x" * len(ids), None, 1, 4, eos_token_id=None))
        self.assertEqual(items, [{"outputs": ["x"]}] * 4)

    def test_sampling_settings_follow_djl(self):
        self.assertEqual(sampling_settings({}), (50, False, 1.0, 0, 1.0, 1.0))
        self.assertTrue(sampling_settings({"top_k": 5})[1], "top_k alone turns sampling on, as in DJL")
        for bad, message in (({"max_new_tokens": 0}, "max_new_tokens"), ({"top_p": 1.5}, "top_p"),
                             ({"do_sample": True, "temperature": 0}, "temperature"),
                             ({"repetition_penalty": 0}, "repetition_penalty")):
            with self.assertRaisesRegex(ValueError, message):
                sampling_settings(bad)

    def test_step_with_wrong_batch_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "2 tokens for a batch of 1"):
            list(stream_text(lambda s: ([1, 2], s), str, None, 1, 3))


if __name__ == "__main__":
    unittest.main()
