# Tensor parallelism through the executor's own message loop, with pipelined steps: the ranks run as `lmi serve`
# starts them (`python -m lmi_executor`, rank 0 on a Unix socket, the others following rank 0's relay), and this
# script plays Node: hello (the "pipelined-steps" capability), load, initCache, then every golden case of a zoo
# model at once, prompts chunked by 5 tokens, each step sent before the previous step's reply is back (the
# engine's two steps in flight). The greedy continuations must equal the transformers goldens, and after the
# shutdown call every rank must exit by itself with status 0.
#   python3 scripts/gpu/tp-serve-check.py [--tp 2] [--device cuda] [--models llama,qwen3,mixtral] [--graphs 0,1]
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))

from lmi_executor.protocol import FrameSocket  # noqa: E402
from plan_builder import PlanBuilder  # noqa: E402

GREEDY = {"strategy": "greedy", "temperature": 1.0, "topK": 0, "topP": 1.0, "typicalP": 1.0, "minP": 0.0,
          "repetitionPenalty": 1.0, "presencePenalty": 0.0, "frequencyPenalty": 0.0, "logitBias": {}, "seed": 0,
          "penaltyAlpha": 0.0, "numTopLogprobs": 0, "promptLogprobs": False, "minTokens": 0, "eosTokenIds": [],
          "ignoreEos": True}


class Node:
    """Rank 0's peer: numbered request frames, replies read in order."""

    def __init__(self, conn):
        self.fs, self.next_id, self.sent = FrameSocket(conn), 0, []

    def send(self, kind, **body):
        self.next_id += 1
        self.fs.write({"id": self.next_id, "type": kind, **body})
        self.sent.append(self.next_id)

    def reply(self):
        msg, _ = self.fs.read()
        want = self.sent.pop(0)
        if msg.get("id") != want:
            raise RuntimeError(f"reply {msg.get('id')} out of order (expected {want})")
        if not msg.get("ok"):
            raise RuntimeError(f"executor error: {msg.get('error', {}).get('message')}")
        return msg["result"]

    def call(self, kind, **body):
        self.send(kind, **body)
        return self.reply()


def _exit_status(p):
    """The rank's exit status, or "hung" when it is still running 60 s after the shutdown (then it is killed)."""
    try:
        return p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        return "hung"


def run_model(model_dir, tp, device, graphs, port) -> tuple:
    with open(os.path.join(model_dir, "golden.json")) as f:
        cases = json.load(f)["cases"]
    sock_dir = tempfile.mkdtemp()
    path = os.path.join(sock_dir, "s")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    opts = {"model_dir": model_dir, "device": device, "dtype": "fp32", "block_size": 16, "max_num_seqs": 16,
            "tensor_parallel_degree": tp, "enable_cuda_graph": graphs, "dist_init_method": f"tcp://127.0.0.1:{port}"}
    env = dict(os.environ, WORLD_SIZE=str(tp), PYTHONPATH=os.path.join(ROOT, "python"))
    procs = [subprocess.Popen([sys.executable, "-m", "lmi_executor", "--socket", path, "--options", json.dumps(opts)],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(tp)]
    try:
        srv.settimeout(300)
        conn, _ = srv.accept()
        node = Node(conn)
        hello = node.call("hello")
        if "pipelined-steps" not in hello["capabilities"]:
            raise RuntimeError(f"rank 0 does not launch steps ahead: {hello['capabilities']}")
        node.call("load")
        node.call("initCache", numBlocks=256)
        plans = PlanBuilder(256, 16)
        want = {f"c{i}": c for i, c in enumerate(cases)}
        inflight = []  # plans sent whose reply is not read yet (at most two, as the engine keeps)

        def collect():
            plans.record(node.reply())
            inflight.pop(0)

        node.send("execute", plan=plans.plan(new=[(rid, c["input_ids"], min(5, len(c["input_ids"])), GREEDY)
                                                  for rid, c in want.items()]))
        inflight.append(1)
        while True:
            runs = []
            for rid, c in want.items():
                r = plans.reqs[rid]
                total = len(c["input_ids"]) + len(c["greedy"]["ids"])
                known = len(r["tokens"]) + len(inflight)  # pending samples count as known
                if r["computed"] < r["prompt_len"]:
                    runs.append((rid, min(5, r["prompt_len"] - r["computed"])))
                elif r["computed"] < total - 1 and r["computed"] < known:
                    runs.append((rid, 1))
            if not runs:
                break
            if len(inflight) == 2:
                collect()
            node.send("execute", plan=plans.plan(cached=runs))
            inflight.append(1)
        while inflight:
            collect()
        node.call("shutdown")
        exact = all(plans.reqs[rid]["tokens"][len(c["input_ids"]):][: len(c["greedy"]["ids"])] == c["greedy"]["ids"]
                    for rid, c in want.items())
        # After the shutdown reply every rank must end by itself, with status 0 (an abort in the teardown is -6).
        return exact, [_exit_status(p) for p in procs]
    finally:
        for p in procs:
            _exit_status(p)
        srv.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="llama,qwen3,mixtral")
    ap.add_argument("--graphs", default="0,1")
    a = ap.parse_args()
    ok, port = True, 29600
    for name in a.models.split(","):
        for graphs in (g == "1" for g in a.graphs.split(",")):
            port += 1
            exact, exits = run_model(os.path.join(ROOT, "models", "zoo", name), a.tp, a.device, graphs, port)
            print(f"| TP={a.tp} {a.device} served, pipelined | {name} | graphs={graphs} | token-exact={exact} | "
                  f"rank exit codes {exits} |", flush=True)
            ok &= exact and all(c == 0 for c in exits)
    print("tp-serve-check OK" if ok else "tp-serve-check FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
