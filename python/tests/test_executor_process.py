# Process-level behaviour of a rank: it stops on its own when its parent is gone (a rank blocked in a
# collective must not outlive the server), and it refuses a world size that disagrees with its options.
import json
import os
import socket
import subprocess
import sys
import time
import unittest

PY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RankProcessTest(unittest.TestCase):
    def test_rank_exits_when_its_parent_dies(self):
        opts = json.dumps({"model_dir": "/nonexistent", "device": "cpu", "tensor_parallel_degree": 2,
                           "dist_init_method": f"tcp://127.0.0.1:{_free_port()}"})
        env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "PYTHONPATH": PY_DIR}
        # Rank 1 waits for a rank 0 that never comes; its parent shell exits after printing the pid.
        cmd = f"{sys.executable} -m lmi_executor --socket /nonexistent --options '{opts}' >/dev/null 2>&1 & echo $!; sleep 2"
        out = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=30)
        pid = int(out.stdout.strip())
        deadline = time.time() + 15
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.2)
        self.assertFalse(_alive(pid), "the orphaned rank is still running")

    def test_world_size_must_match_options(self):
        opts = json.dumps({"model_dir": "/nonexistent", "device": "cpu", "tensor_parallel_degree": 2})
        r = subprocess.run([sys.executable, "-m", "lmi_executor", "--socket", "/nonexistent", "--options", opts],
                           env={**os.environ, "PYTHONPATH": PY_DIR, "RANK": "0", "WORLD_SIZE": "1"},
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("world size 1 != tensor_parallel_degree 2", r.stderr)


class SettleHeapTest(unittest.TestCase):
    def test_init_cache_freezes_the_heap_and_nothing_else_does(self):
        import gc

        from lmi_executor.server import _settle_heap

        gc.unfreeze()
        try:
            _settle_heap("execute")
            self.assertEqual(gc.get_freeze_count(), 0)
            _settle_heap("initCache")
            self.assertGreater(gc.get_freeze_count(), 0)  # everything alive now is out of later full passes
        finally:
            gc.unfreeze()


if __name__ == "__main__":
    unittest.main()
