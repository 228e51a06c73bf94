# Re-sharding (option.checkpoint + option.training_mp_size): every supported zoo model is written at degree T=2
# (and T=4 where heads and MLP width divide) by `python3 -m lmi_executor.shard_checkpoint`, then loaded at D=1
# (weights and logits bit-identical to the unsharded load, fp32) and at D=2 / D=4 over gloo, one process per rank
# (greedy continuations equal the transformers goldens). Loads run with POISON_UNREAD, so a slice a rank should
# have read but did not is NaN and fails the comparison. Also: the error cases of the tool and the loader.
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "..")
sys.path[:0] = [PY, HERE]

from lmi_executor import reshard  # noqa: E402
from lmi_executor.config import SUPPORTED_ARCHITECTURES, ExecutorOptions, load_model_config  # noqa: E402
from lmi_executor.loader import SafetensorsFile, iter_checkpoint, write_safetensors  # noqa: E402
from lmi_executor.shard_checkpoint import main as shard_main  # noqa: E402
from lmi_executor.shard_checkpoint import part_name, shard  # noqa: E402
from test_executor_model import Driver, greedy_goldens_batched, make_worker, sampling  # noqa: E402

ZOO = os.path.join(PY, "..", "models", "zoo")


def zoo_models() -> list:
    out = []
    for name in sorted(os.listdir(ZOO)) if os.path.isdir(ZOO) else []:
        with open(os.path.join(ZOO, name, "config.json")) as f:
            if (json.load(f).get("architectures") or ["?"])[0] in SUPPORTED_ARCHITECTURES:
                out.append(name)
    return out


def degrees(name: str) -> list:
    """The degrees to save each zoo model at: 1, 2, and 4 where heads, KV heads and MLP width divide."""
    cfg = load_model_config(os.path.join(ZOO, name))
    out = []
    for T in (1, 2, 4):
        try:
            reshard.check_divisible(cfg, T)
            out.append(T)
        except ValueError:
            pass
    return out


def quiet(*_a, **_k):
    pass


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ReshardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ck = {}  # (model, T) -> checkpoint dir
        for name in zoo_models():
            for T in degrees(name):
                d = os.path.join(cls.tmp.name, f"{name}-tp{T}")
                shard(os.path.join(ZOO, name), d, T, log=quiet)
                cls.ck[(name, T)] = d
        reshard.POISON_UNREAD = True

    @classmethod
    def tearDownClass(cls):
        reshard.POISON_UNREAD = False
        cls.tmp.cleanup()

    def fresh_copy(self, name="llama", T=2) -> str:
        dst = tempfile.mkdtemp(dir=self.tmp.name)
        shutil.rmtree(dst)
        shutil.copytree(self.ck[(name, T)], dst)
        return dst

    # ---- the tool --------------------------------------------------------------------------------------------

    def test_every_family_is_covered_and_t2_for_all(self):
        names = zoo_models()
        self.assertEqual(len(names), 8, names)
        for name in names:
            self.assertIn((name, 2), self.ck, name)
        self.assertIn(("gpt2", 4), self.ck)
        self.assertIn(("gpt_neox", 4), self.ck)

    def test_parts_concatenate_back_to_the_original_tensors(self):
        # Independent of the loader: undo each recorded split by hand and compare with the source.
        for (name, T), d in self.ck.items():
            with open(os.path.join(d, reshard.DEFAULT_JSON)) as f:
                doc = json.load(f)
            self.assertEqual((doc["tp_size"], doc["parallelization"], len(doc["checkpoints"])), (T, "tp", T))
            parts = [SafetensorsFile(os.path.join(d, p)) for p in doc["checkpoints"]]
            seen = set()
            for tname, full in iter_checkpoint(os.path.join(ZOO, name)):
                e = doc["tensors"].get(tname)
                if e is None:
                    continue  # skipped buffers
                seen.add(tname)
                s = e["split"]
                if s is None:
                    for p in parts:
                        self.assertTrue(torch.equal(p.tensor(tname), full), f"{name} T={T} {tname}")
                    continue
                per = [p.tensor(tname) for p in parts]
                pieces, off = [], 0
                for size in s["sections"]:
                    n = size // T
                    pieces += [t.narrow(s["axis"], off // T, n) for t in per]
                    off += size
                self.assertTrue(torch.equal(torch.cat(pieces, s["axis"]), full), f"{name} T={T} {tname}")
            self.assertEqual(seen, set(doc["tensors"]), f"{name} T={T}")

    def test_prefused_tensors_record_sections(self):
        with open(os.path.join(self.ck[("phi3", 2)], reshard.DEFAULT_JSON)) as f:
            t = json.load(f)["tensors"]
        self.assertEqual(t["model.layers.0.self_attn.qkv_proj.weight"]["split"], {"axis": 0, "sections": [64, 32, 32]})
        self.assertEqual(t["model.layers.0.mlp.gate_up_proj.weight"]["split"], {"axis": 0, "sections": [128, 128]})
        self.assertIsNone(t["model.layers.0.input_layernorm.weight"]["split"])
        with open(os.path.join(self.ck[("gpt2", 2)], reshard.DEFAULT_JSON)) as f:
            t = json.load(f)["tensors"]
        self.assertEqual(t["transformer.h.0.attn.c_attn.weight"]["split"], {"axis": 1, "sections": [64, 64, 64]})
        self.assertEqual(t["transformer.h.0.attn.c_proj.weight"]["split"], {"axis": 0, "sections": [64]})

    def test_tool_errors(self):
        out = os.path.join(self.tmp.name, "err-out")
        with self.assertRaisesRegex(ValueError, "num_key_value_heads=2 is not divisible by --tp 4"):
            shard(os.path.join(ZOO, "llama"), out, 4, log=quiet)
        with self.assertRaisesRegex(ValueError, "num_attention_heads=4 is not divisible by --tp 3"):
            shard(os.path.join(ZOO, "gpt2"), out, 3, log=quiet)
        self.assertFalse(os.path.exists(out), "nothing written on a refused layout")
        with self.assertRaisesRegex(FileExistsError, "not an empty directory"):
            shard(os.path.join(ZOO, "llama"), self.ck[("llama", 2)], 2, log=quiet)
        # Unknown architecture, by name.
        odd = tempfile.mkdtemp(dir=self.tmp.name)
        with open(os.path.join(odd, "config.json"), "w") as f:
            json.dump({"architectures": ["FalconForCausalLM"], "model_type": "falcon"}, f)
        with self.assertRaisesRegex(ValueError, "FalconForCausalLM"):
            shard(odd, out, 2, log=quiet)
        # A tensor the layout table does not know.
        src = tempfile.mkdtemp(dir=self.tmp.name)
        for n in ("config.json", "generation_config.json"):
            shutil.copy(os.path.join(ZOO, "llama", n), src)
        tensors = dict(iter_checkpoint(os.path.join(ZOO, "llama")))
        tensors["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(64)
        write_safetensors(os.path.join(src, "model.safetensors"), tensors)
        with self.assertRaisesRegex(ValueError, "o_proj.bias is not a known LlamaForCausalLM weight"):
            shard(src, out, 2, log=quiet)
        # A tensor whose size disagrees with config.json.
        tensors.pop("model.layers.0.self_attn.o_proj.bias")
        tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(130, 64)
        write_safetensors(os.path.join(src, "model.safetensors"), tensors)
        with self.assertRaisesRegex(ValueError, r"up_proj.weight has shape \[130, 64\], expected 128 along axis 0"):
            shard(src, out, 2, log=quiet)
        # The command line: exit status 2 and the message on stderr.
        r = subprocess.run([sys.executable, "-m", "lmi_executor.shard_checkpoint", os.path.join(ZOO, "llama"), out,
                            "--tp", "4"], cwd=PY, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("shard_checkpoint: error: LlamaForCausalLM: num_key_value_heads=2 is not divisible", r.stderr)
        self.assertEqual(shard_main([os.path.join(ZOO, "nope"), out, "--tp", "2"]), 2)

    def test_local_part_takes_each_sections_piece(self):
        # What the models load: rank r of D keeps the r-th 1/D of every section, concatenated in section order.
        phi3, gpt2, llama = (load_model_config(os.path.join(ZOO, n)) for n in ("phi3", "gpt2", "llama"))
        qkv = torch.arange(128 * 3, dtype=torch.float32).reshape(128, 3)  # q|k|v = 64|32|32 rows
        for rank in (0, 1):
            got = reshard.local_part(phi3, "model.layers.0.self_attn.qkv_proj.weight", qkv, rank, 2)
            want = torch.cat([qkv[32 * rank : 32 * rank + 32], qkv[64 + 16 * rank : 80 + 16 * rank],
                              qkv[96 + 16 * rank : 112 + 16 * rank]])
            self.assertTrue(torch.equal(got, want), rank)
        c_attn = torch.arange(64 * 192, dtype=torch.float32).reshape(64, 192)  # Conv1D [in, out], out = q|k|v
        got = reshard.local_part(gpt2, "transformer.h.0.attn.c_attn.weight", c_attn, 3, 4)
        self.assertTrue(torch.equal(got, torch.cat([c_attn[:, 48:64], c_attn[:, 112:128], c_attn[:, 176:192]], 1)))
        o = torch.arange(64 * 64, dtype=torch.float32).reshape(64, 64)
        self.assertTrue(torch.equal(reshard.local_part(llama, "model.layers.1.self_attn.o_proj.weight", o, 1, 2),
                                    o[:, 32:]))
        # Fewer KV heads (2) than ranks (4): K and V are cut per KV head, ranks 0-1 keeping the first, 2-3 the second.
        for rank in range(4):
            got = reshard.local_part(phi3, "model.layers.0.self_attn.qkv_proj.weight", qkv, rank, 4)
            kv = 16 * (rank // 2)
            want = torch.cat([qkv[16 * rank : 16 * rank + 16], qkv[64 + kv : 80 + kv], qkv[96 + kv : 112 + kv]])
            self.assertTrue(torch.equal(got, want), rank)
            k = torch.arange(32 * 64, dtype=torch.float32).reshape(32, 64)
            self.assertTrue(torch.equal(reshard.local_part(llama, "model.layers.0.self_attn.k_proj.weight", k, rank, 4),
                                        k[kv : kv + 16]), rank)
        # Whole on every rank: D=1, replicated tensors, embeddings, GPT LM heads, a vocabulary that does not divide.
        vocab, norm = torch.zeros(4096, 64), torch.ones(64)
        self.assertIs(reshard.local_part(llama, "model.layers.0.self_attn.o_proj.weight", o, 0, 1), o)
        self.assertIs(reshard.local_part(llama, "model.norm.weight", norm, 1, 2), norm)
        self.assertIs(reshard.local_part(llama, "model.embed_tokens.weight", vocab, 1, 2), vocab)
        self.assertIs(reshard.local_part(gpt2, "lm_head.weight", vocab, 1, 2), vocab)
        self.assertEqual(reshard.local_part(llama, "lm_head.weight", vocab, 1, 2).data_ptr(), vocab[2048].data_ptr())
        odd = torch.zeros(97, 64)
        self.assertIs(reshard.local_part(llama, "lm_head.weight", odd, 1, 2), odd)
        with self.assertRaisesRegex(ValueError, r"weight model.layers.0.mlp.up_proj.weight has shape \[130, 64\], "
                                                r"expected 128 along axis 0"):
            reshard.local_part(llama, "model.layers.0.mlp.up_proj.weight", torch.zeros(130, 64), 0, 2)

    # ---- loading at D=1 --------------------------------------------------------------------------------------

    def test_d1_load_is_bit_identical_to_the_unsharded_load(self):
        prompt = [5, 17, 42, 8, 91, 33, 3, 60, 12, 77, 1, 50, 9]
        s = sampling(promptLogprobs=True, numTopLogprobs=20)
        for name in zoo_models():
            base = make_worker(os.path.join(ZOO, name), dtype="fp32")
            want = Driver(base).run(new=[("a", prompt, len(prompt), s)])
            for T in degrees(name):
                if T == 1:
                    continue
                with self.subTest(model=name, T=T):
                    w = make_worker(os.path.join(ZOO, name), dtype="fp32", checkpoint=self.ck[(name, T)],
                                    training_mp_size=T)
                    for a, b in zip(base.model._all_tensors(), w.model._all_tensors()):
                        self.assertTrue(torch.equal(a, b))
                    got = Driver(w).run(new=[("a", prompt, len(prompt), s)])
                    self.assertEqual(got["promptLogprobs"], want["promptLogprobs"])
                    self.assertEqual(got["logprobs"], want["logprobs"])
                    self.assertEqual(got["sampledTokenIds"], want["sampledTokenIds"])

    def test_checkpoint_paths_relative_absolute_file_or_directory(self):
        d = self.ck[("qwen3", 2)]
        ref = make_worker(os.path.join(ZOO, "qwen3"), dtype="fp32")
        # The checkpoint folder is a complete model directory: config.json and the tokenizer were copied.
        q3 = os.path.join(ZOO, "qwen3")
        for model_dir, ck in ((d, reshard.DEFAULT_JSON), (d, "."), (q3, os.path.relpath(d, q3)),
                              (q3, os.path.join(d, reshard.DEFAULT_JSON))):
            with self.subTest(model_dir=model_dir, checkpoint=ck):
                w = make_worker(model_dir, dtype="fp32", checkpoint=ck)
                for a, b in zip(ref.model._all_tensors(), w.model._all_tensors()):
                    self.assertTrue(torch.equal(a, b))

    def test_a_rank_reads_only_the_parts_overlapping_its_slice(self):
        # T=4 -> D=2 without processes: rank r of 2 touches parts 2r and 2r+1 for split tensors the model slices,
        # part 0 for replicated ones, and all four for embeddings (every rank keeps the whole vocabulary).
        d = self.ck[("gpt_neox", 4)]
        cfg = load_model_config(d)
        full = dict(iter_checkpoint(os.path.join(ZOO, "gpt_neox")))
        for rank in (0, 1):
            ck = reshard.TpCheckpoint(os.path.join(d, reshard.DEFAULT_JSON), cfg, 4)
            touched = {}
            for t, part in enumerate(ck.parts):
                orig = part.tensor

                def spy(name, t=t, orig=orig):
                    touched.setdefault(name, set()).add(t)
                    return orig(name)

                part.tensor = spy
            for name, got in ck.iter_tensors(cfg, rank, 2):
                s = reshard.model_slice(cfg, name, list(got.shape), 2)
                if s is None:
                    self.assertTrue(torch.equal(got, full[name]), name)
                    continue
                n = got.shape[s.axis] // 2
                mine, other = got.narrow(s.axis, rank * n, n), got.narrow(s.axis, (1 - rank) * n, n)
                self.assertTrue(torch.equal(mine, full[name].narrow(s.axis, rank * n, n)), name)
                self.assertTrue(other.isnan().all(), f"{name}: read more than its slice")
                self.assertEqual(touched[name], {2 * rank, 2 * rank + 1}, name)
            self.assertEqual(touched["gpt_neox.layers.0.input_layernorm.weight"], {0})
            self.assertEqual(touched["gpt_neox.embed_in.weight"], {0, 1, 2, 3})

    # ---- loading errors --------------------------------------------------------------------------------------

    def load_error(self, checkpoint, model_dir=None, training_mp_size=0, exc=ValueError):
        with self.assertRaises(exc) as cm:
            make_worker(model_dir or os.path.join(ZOO, "llama"), dtype="fp32", checkpoint=checkpoint,
                        training_mp_size=training_mp_size)
        return str(cm.exception)

    def edit_json(self, d, fn):
        p = os.path.join(d, reshard.DEFAULT_JSON)
        with open(p) as f:
            doc = json.load(f)
        fn(doc)
        with open(p, "w") as f:
            json.dump(doc, f)
        return p

    def test_training_mp_size_must_equal_the_saved_degree(self):
        msg = self.load_error(self.ck[("llama", 2)], training_mp_size=1)
        self.assertIn("option.training_mp_size=1 but checkpoint", msg)
        self.assertIn("saved at tensor-parallel degree 2", msg)

    def test_missing_files_and_paths(self):
        msg = self.load_error("no-such-dir/x.json", exc=FileNotFoundError)
        self.assertIn("option.checkpoint=no-such-dir/x.json: no such file or directory", msg)
        empty = tempfile.mkdtemp(dir=self.tmp.name)
        msg = self.load_error(empty, exc=FileNotFoundError)
        self.assertIn(f"has no {reshard.DEFAULT_JSON}", msg)
        d = self.fresh_copy()
        os.remove(os.path.join(d, part_name(1, 2)))
        msg = self.load_error(d, exc=FileNotFoundError)
        self.assertIn(f"part 1 file {os.path.join(d, part_name(1, 2))} does not exist", msg)

    def rewrite_part(self, d, t, fn):
        p = os.path.join(d, part_name(t, 2))
        tensors = {n: v.clone() for n, v in iter_checkpoint_file(p)}
        fn(tensors)
        write_safetensors(p, tensors)
        return p

    def test_tensor_missing_from_a_part(self):
        d = self.fresh_copy()
        p = self.rewrite_part(d, 1, lambda ts: ts.pop("model.layers.1.mlp.down_proj.weight"))
        msg = self.load_error(d)
        self.assertIn(f"tensor model.layers.1.mlp.down_proj.weight is missing from part 1 file {p}", msg)

    def test_shape_disagreement_between_parts(self):
        d = self.fresh_copy()
        name = "model.layers.0.self_attn.q_proj.weight"
        p = self.rewrite_part(d, 1, lambda ts: ts.__setitem__(name, torch.zeros(48, 64, dtype=ts[name].dtype)))
        msg = self.load_error(d)
        self.assertIn(f"tensor {name} in part 1 file {p} has shape [48, 64], expected [32, 64]", msg)

    def test_tensor_not_listed_and_dtype_disagreement(self):
        d = self.fresh_copy()
        p = self.rewrite_part(d, 0, lambda ts: ts.__setitem__("extra.weight", torch.zeros(2)))
        self.assertIn(f"part 0 file {p} holds tensor extra.weight that the JSON does not list", self.load_error(d))
        d = self.fresh_copy()
        name = "model.norm.weight"
        p = self.rewrite_part(d, 1, lambda ts: ts.__setitem__(name, ts[name].float()))
        self.assertIn(f"tensor {name} is F32 in part 1 file {p} but BF16 in part 0", self.load_error(d))

    def test_json_errors(self):
        cases = [
            (lambda doc: doc.pop("tensors"), "no per-tensor split map"),
            (lambda doc: doc.__setitem__("tp_size", 3), "tp_size=3 but 'checkpoints' lists 2 files"),
            (lambda doc: doc.__setitem__("parallelization", "pp"), "parallelization='pp' is not supported"),
            (lambda doc: doc.__setitem__("version", 2.0), "version 2.0 is not supported"),
            (lambda doc: doc.__setitem__("architecture", "MistralForCausalLM"),
             "was written for MistralForCausalLM but the model's config.json is LlamaForCausalLM"),
            (lambda doc: doc["tensors"]["model.layers.0.mlp.gate_proj.weight"]["split"]
             .__setitem__("sections", [64, 60]),
             r"tensor model.layers.0.mlp.gate_proj.weight: split sections \[64, 60\] do not add up to 128"),
            (lambda doc: doc["tensors"]["model.layers.0.mlp.gate_proj.weight"]["split"].__setitem__("axis", 2),
             "split axis 2 is not an axis of shape"),
            (lambda doc: doc["tensors"]["model.layers.0.mlp.gate_proj.weight"]["split"]
             .__setitem__("sections", [63, 65]), r"split section\(s\) \[63, 65\] do not divide by tp_size=2"),
        ]
        for fn, want in cases:
            with self.subTest(want=want):
                d = self.fresh_copy()
                self.edit_json(d, fn)
                self.assertRegex(self.load_error(d), want)
        d = self.fresh_copy()
        with open(os.path.join(d, reshard.DEFAULT_JSON), "w") as f:
            f.write("{not json")
        self.assertIn("is not valid JSON", self.load_error(d))
        # A DeepSpeed-style JSON (type ds_model, no split map) is refused by name, not guessed at.
        d = self.fresh_copy()
        with open(os.path.join(d, reshard.DEFAULT_JSON), "w") as f:
            json.dump({"type": "ds_model", "version": 1.0, "tp_size": 2, "parallelization": "tp",
                       "checkpoints": [part_name(0, 2), part_name(1, 2)]}, f)
        self.assertIn("type='ds_model'", self.load_error(d))

    def test_unknown_executor_option_still_refused(self):
        with self.assertRaisesRegex(ValueError, "unknown executor options: checkpoint_path"):
            ExecutorOptions.from_json(json.dumps({"model_dir": "x", "checkpoint_path": "y"}))
        o = ExecutorOptions.from_json(json.dumps({"model_dir": "x", "checkpoint": "y", "training_mp_size": 2}))
        self.assertEqual((o.checkpoint, o.training_mp_size), ("y", 2))

    # ---- loading at D=2 and D=4 over gloo --------------------------------------------------------------------

    def run_ranks(self, world: int, jobs: list) -> list:
        port = free_port()
        spec = json.dumps(jobs)
        cmd = [sys.executable, os.path.abspath(__file__), "--rank"]
        procs = [subprocess.Popen(cmd + [str(r), str(world), str(port), spec],
                                  cwd=PY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in range(world)]
        outs = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=280)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise
            outs.append((p.returncode, out, err))
        for rc, _out, err in outs:
            self.assertEqual(rc, 0, err[-3000:])
        return json.loads(outs[0][1].strip().splitlines()[-1])

    def test_d2_over_gloo_matches_the_goldens_from_every_saved_degree(self):
        jobs = [[name, T, self.ck[(name, T)]] for name in zoo_models() for T in degrees(name)]
        report = self.run_ranks(2, jobs)
        self.assertEqual(len(report), len(jobs))
        for r in report:
            self.assertTrue(r["tokenExact"], r)
        self.assertGreaterEqual(len({(r["model"], r["T"]) for r in report if r["T"] == 4}), 2)

    def test_t2_to_d4_over_gloo(self):
        # The Llama-family zoo models have 2 KV heads: at D=4 each is kept by two ranks (parallel.kv_heads), read
        # from the T=2 checkpoint's parts (everything a rank does not read is NaN: POISON_UNREAD).
        names = ("gpt2", "gpt_neox", "llama", "phi3", "qwen2", "mixtral")
        jobs = [[name, 2, self.ck[(name, 2)]] for name in names]
        report = self.run_ranks(4, jobs)
        self.assertEqual([r["model"] for r in report], list(names))
        self.assertEqual([r["tokenExact"] for r in report], [True] * len(names), report)

    def test_kv_heads_per_rank(self):
        from lmi_executor.parallel import TensorParallel

        for world, n, want in ((1, 8, 8), (2, 8, 4), (8, 8, 1), (16, 8, 1), (8, 2, 1), (4, 4, 1)):
            self.assertEqual(TensorParallel(0, world).kv_heads(n), want, (world, n))
        with self.assertRaisesRegex(ValueError, "num_key_value_heads=3 is neither divisible by "
                                                "tensor_parallel_degree=4 nor a divisor of it"):
            TensorParallel(0, 4).kv_heads(3)
        with self.assertRaisesRegex(ValueError, "num_key_value_heads=12"):
            TensorParallel(0, 8).kv_heads(12)


def iter_checkpoint_file(path):
    f = SafetensorsFile(path)
    return [(n, f.tensor(n)) for n in f.names()]


def rank_main(rank: int, world: int, port: int, jobs: list) -> None:
    """One rank of a D=world load: each (model, T, checkpoint dir) greedy-decodes the golden prompts batched."""
    from lmi_executor.worker import Worker

    reshard.POISON_UNREAD = True
    report, tp = [], None
    for name, T, ck in jobs:
        d = os.path.join(ZOO, name)
        with open(os.path.join(d, "golden.json")) as f:
            cases = json.load(f)["cases"]
        opts = ExecutorOptions(model_dir=d, device="cpu", dtype="fp32", block_size=16, max_num_seqs=16,
                               tensor_parallel_degree=world, checkpoint=ck, training_mp_size=T,
                               dist_init_method=f"tcp://127.0.0.1:{port}" if tp is None else "")
        if tp is None:
            w = Worker(opts, rank, world)
            tp = w.tp
        else:  # one process group per process: later models reuse it
            w = Worker.__new__(Worker)
            w.opts, w.tp, w.device, w.model, w.runner, w.num_blocks = opts, tp, torch.device("cpu"), None, None, 0
        w.load({})
        w.init_cache({"numBlocks": 256})
        ok = greedy_goldens_batched(w, cases)
        report.append({"model": name, "T": T, "D": world, "tokenExact": ok})
    tp.barrier()
    if rank == 0:
        print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank"]:
        rank_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5]))
    else:
        unittest.main()
