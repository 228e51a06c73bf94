# The message loop. Rank 0 connects to the Unix socket Node listens on, reads request frames, relays each
# to the other ranks (torch.distributed broadcast), runs it, and answers {id, ok, result|error}.
# Ranks > 0 only follow the relay. Invariant: one request in flight; a failed call answers an error and
# keeps serving, except that errors on ranks > 0 or in collectives end the process (the supervisor sees it).
import socket
import sys
import traceback

from .protocol import FrameSocket
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


def serve_rank0(worker: Worker, socket_path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    fs = FrameSocket(sock)
    while True:
        try:
            msg, _payload = fs.read()
        except EOFError:
            worker.tp.broadcast_object({"type": "shutdown"})
            return
        if msg.get("type") == "shutdown":
            worker.tp.broadcast_object(msg)
            fs.write({"id": msg.get("id"), "ok": True, "result": {}})
            return
        if msg.get("type") != "health":
            worker.tp.broadcast_object(msg)
        try:
            result = _call(worker, msg)
            fs.write({"id": msg.get("id"), "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure is reported to Node, with its traceback
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            sys.stderr.flush()
            fs.write({"id": msg.get("id"), "ok": False,
                      "error": {"message": f"{type(e).__name__}: {e}", "traceback": tb, "oom": _is_oom(e)}})


def serve_follower(worker: Worker) -> None:
    while True:
        msg = worker.tp.broadcast_object(None)
        if msg.get("type") == "shutdown":
            return
        _call(worker, msg)


def _is_oom(e: Exception) -> bool:
    return "out of memory" in str(e).lower()
