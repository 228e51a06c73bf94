# The message loop. Rank 0 connects to the Unix socket Node listens on, reads request frames, relays each
# to the other ranks (torch.distributed broadcast over a CPU group), runs it, and answers {id, ok,
# result|error}. Ranks > 0 only follow the relay. `execute` is answered out of band: the main thread launches
# the step (queues its GPU work) and reads the next message at once, while the finisher thread waits for the
# step's tokens and sends the reply; Node may thus send the next step before the previous one's reply (it
# keeps at most two in flight). Ranks > 0 launch and finish steps the same way, without replying.
# Invariants: steps finish and are answered in launch order, on every rank; a step whose sampling needs the
# host to know every earlier token waits for the finisher to drain first; the runner's request state changes
# only under `lock`; errors answer {ok: false} and the executor keeps serving, except that errors on ranks
# > 0 or in collectives end the process.
import gc
import os
import queue
import socket
import sys
import threading
import time
import traceback

from .protocol import FrameSocket
from .runner import RING_STEPS
from .worker import Worker

_HANDLERS = {
    "hello": "hello",
    "load": "load",
    "profile": "profile",
    "initCache": "init_cache",
    "execute": "execute",
    "health": "health",
}


def _call(worker: Worker, msg: dict):
    name = _HANDLERS.get(msg.get("type"))
    if name is None:
        raise ValueError(f"unknown message type {msg.get('type')!r}")
    return getattr(worker, name)(msg)


def _settle_heap(kind) -> None:
    """After initCache (model, KV cache, CUDA graphs and the allocator warm-up all exist): one full collection,
    then gc.freeze() moves every object alive to the permanent generation, so the collector's full passes while
    serving walk only what was made since. Without it a full pass walks the whole process with the GIL held
    (torch, Triton, the graphs: 100k objects and 26-38 ms for the tiny CPU test model, none after the freeze).
    A 256-request burst on an H100 showed one 73-89 ms GPU idle at about the same step of every run, its launch
    late rather than slow; with the freeze the same burst's longest idle after its first step was 9 ms
    (LMI_STEP_LOG, docs/benchmarks.md, sixth session)."""
    if kind == "initCache":
        gc.collect()
        gc.freeze()


def _error_reply(msg_id, e: Exception) -> dict:
    tb = traceback.format_exc()
    sys.stderr.write(tb)
    sys.stderr.flush()
    return {"id": msg_id, "ok": False, "error": {"message": f"{type(e).__name__}: {e}", "traceback": tb, "oom": _is_oom(e)}}


class _Replies:
    """Frame writes from two threads: one at a time."""

    def __init__(self, fs: FrameSocket):
        self.fs, self.lock = fs, threading.Lock()

    def send(self, frame: dict) -> None:
        with self.lock:
            self.fs.write(frame)


class _Finisher:
    """Finishes launched steps in order on its own thread and answers each."""

    def __init__(self, worker: Worker, replies):
        """replies: a _Replies (rank 0), or None on ranks > 0, which answer nothing and end the process on an
        error (their state would no longer match rank 0's)."""
        # The runner's request state changes only under this lock (launch on the main thread, finish here).
        self.worker, self.replies, self.lock = worker, replies, threading.Lock()
        self.queue = queue.Queue()
        self.outstanding = 0
        self.cv = threading.Condition()
        # A finished step's reply (rank 0) or finish (other ranks) must not wait for the main thread to drop the GIL
        # on its own while it launches the next step (a prefill launch holds it for ~10 ms): switch within 0.2 ms.
        sys.setswitchinterval(0.0002)
        threading.Thread(target=self._loop, name="step-finisher", daemon=True).start()

    def launch(self, msg_id, plan: dict) -> None:
        """Launches a step ahead of the earlier ones' finish (after it, when its sampling needs their tokens on the
        host) and queues it to be finished and answered. Waits while RING_STEPS launched steps are unfinished: rank
        0 never does (Node keeps RING_STEPS - 1 in flight and gets each reply after its finish), but a rank > 0
        takes the relayed plans as they come, and its finisher can fall behind rank 0's, when a long launch holds
        `lock` (a prompt step, a kernel compiled on first use): launching then would overrun the output ring (a
        TP=2 burst ended that way: "more than 4 launched steps are unfinished"). The earlier steps end on the GPU
        without this rank's later ones, so the wait ends."""
        runner = self.worker.runner
        self._wait_until_outstanding(0 if runner.waits_for_earlier_steps(plan) else RING_STEPS - 1)
        with self.lock:
            handle = runner.launch(plan)
        self.submit(msg_id, handle)

    def submit(self, msg_id, handle) -> None:
        with self.cv:
            self.outstanding += 1
        self.queue.put((msg_id, handle))

    def drain(self) -> None:
        self._wait_until_outstanding(0)

    def _wait_until_outstanding(self, most: int) -> None:
        """Until at most `most` queued steps are unfinished."""
        with self.cv:
            while self.outstanding > most:
                self.cv.wait()

    def _loop(self) -> None:
        while True:
            msg_id, handle = self.queue.get()
            try:
                handle.wait()  # outside the lock: the main thread launches the next step meanwhile
                with self.lock:
                    result = self.worker.runner.finish(handle)
                frame = {"id": msg_id, "ok": True, "result": result}
            except Exception as e:  # noqa: BLE001 - reported to Node with its traceback
                if self.replies is None:
                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
                frame = _error_reply(msg_id, e)
            try:
                if self.replies is not None:
                    self.replies.send(frame)
            finally:
                with self.cv:
                    self.outstanding -= 1
                    self.cv.notify_all()


def serve_rank0(worker: Worker, socket_path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    fs = FrameSocket(sock)
    replies = _Replies(fs)
    finisher = _Finisher(worker, replies) if worker.pipelined else None
    while True:
        t_wait = time.perf_counter()
        try:
            msg, _payload = fs.read()
        except EOFError:
            worker.tp.broadcast_object({"type": "shutdown"})
            return
        t_read = time.perf_counter()
        kind = msg.get("type")
        if finisher is not None and kind != "execute" and kind != "health":
            finisher.drain()  # every other call sees the state of all steps sent before it
        if kind == "shutdown":
            worker.tp.broadcast_object(msg)
            replies.send({"id": msg.get("id"), "ok": True, "result": {}})
            return
        if kind != "health":
            worker.tp.broadcast_object(msg)
        if kind == "execute" and worker.runner is not None:
            worker.runner.note_host_wait(t_read - t_wait, time.perf_counter() - t_read)
        try:
            if kind == "execute" and finisher is not None and worker.runner is not None:
                finisher.launch(msg.get("id"), msg["plan"])
                continue
            result = _call(worker, msg)
            _settle_heap(kind)
            replies.send({"id": msg.get("id"), "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure is reported to Node, with its traceback
            if finisher is not None:
                finisher.drain()  # answer in order: the steps launched before this one first
            replies.send(_error_reply(msg.get("id"), e))


def serve_follower(worker: Worker) -> None:
    """Ranks > 0: run every message rank 0 relays, steps launched ahead as rank 0 launches them (the same
    drains, so both queue the same steps, and so the same collectives, in the same order)."""
    finisher = _Finisher(worker, None) if worker.pipelined else None
    while True:
        t_wait = time.perf_counter()
        msg = worker.tp.broadcast_object(None)
        kind = msg.get("type")
        if kind == "execute" and worker.runner is not None:
            worker.runner.note_host_wait(time.perf_counter() - t_wait, 0.0)  # (rank 0's relay is in the wait)
        if finisher is not None and kind != "execute":
            finisher.drain()
        if kind == "shutdown":
            return
        if kind == "execute" and finisher is not None and worker.runner is not None:
            finisher.launch(None, msg["plan"])
            continue
        _call(worker, msg)
        _settle_heap(kind)


def _is_oom(e: Exception) -> bool:
    return "out of memory" in str(e).lower()
