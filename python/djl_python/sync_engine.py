"""The worker loop: listen on the socket, print the startup line, then serve one request at a time.

Invariants (spec §5.3-§5.7): exactly one request in flight per connection; every request gets
exactly one Output frame back, even when the handler raises (424, or 507 for out-of-memory);
`None` from the handler becomes 204; the entry point is loaded on the first request (the init
request), falling back to the recommended entry point when it lacks the requested function.
"""

import logging
import os
import signal
import socket
import threading
import time

from . import wire
from .inputs import Input
from .outputs import Output
from .service_loader import load_model_service

STARTED_LINE = "Python engine started."
ACCEPT_TIMEOUT_S = 30
_OOM_MARKERS = ("CUDA error: out of memory", "No available memory for the cache blocks", "out of memory")


def is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e)
    return any(marker in text for marker in _OOM_MARKERS)


def error_output(e: BaseException, prefix: str = "") -> Output:
    message = f"{prefix}{e}" if str(e) else f"{prefix}{type(e).__name__}"
    if is_out_of_memory(e):
        return Output().error(message, code=507, message="out of memory")
    return Output().error(message)


class PythonEngine:
    def __init__(self, args):
        self.args = args
        self.model_dir = os.path.abspath(args.model_dir or ".")
        self.entry_point = args.entry_point or ""
        self.recommended_entry_point = args.recommended_entry_point or ""
        self.service = None
        self.rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        if "OMPI_COMM_WORLD_SIZE" in os.environ:
            # torch.distributed and friends read these names; mpirun only sets the OMPI_* ones.
            os.environ.setdefault("WORLD_SIZE", os.environ["OMPI_COMM_WORLD_SIZE"])
            os.environ.setdefault("RANK", str(self.rank))
            os.environ.setdefault("LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", str(self.rank)))

    # --- socket ----------------------------------------------------------------------------------
    def _socket_path(self) -> str:
        name = self.args.sock_name
        return f"{name}.{self.rank}" if "OMPI_COMM_WORLD_SIZE" in os.environ else name

    def _kill_stale(self, path: str):
        """A leftover <sock>.pid means a worker from an earlier run may still hold the name."""
        pid_file = path + ".pid"
        try:
            with open(pid_file, encoding="ascii") as f:
                pid = int(f.read().strip() or "0")
            if pid > 0 and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                logging.warning("killed dangling worker process %d that held %s", pid, path)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pass
        if os.path.exists(path):
            os.unlink(path)
        with open(pid_file, "w", encoding="ascii") as f:
            f.write(str(os.getpid()))

    def _listen(self) -> socket.socket:
        if self.args.sock_type == "tcp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", int(self.args.port) + self.rank))
        else:
            path = self._socket_path()
            self._kill_stale(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
        sock.listen(1)
        sock.settimeout(ACCEPT_TIMEOUT_S)
        return sock

    @staticmethod
    def _exit_with_parent():
        """Exits when the server that started us is gone (re-parented), even in the middle of a long
        model load, so no orphaned worker keeps GPU memory."""
        parent = os.getppid()

        def watch():
            while True:
                time.sleep(1)
                if os.getppid() != parent:
                    os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def run(self):
        self._exit_with_parent()
        server = self._listen()
        print(STARTED_LINE, flush=True)
        try:
            conn, _ = server.accept()
        except socket.timeout:
            logging.error("no connection within %d s, exiting", ACCEPT_TIMEOUT_S)
            return 1
        conn.settimeout(None)
        server.close()
        logging.info("connected; serving %s", self.entry_point or "model.py")
        try:
            while True:
                try:
                    properties, content = wire.read_input_frame(conn)
                except wire.ConnectionClosed:
                    logging.info("connection closed, worker exiting")
                    return 0
                output = self.handle(Input.from_frame(properties, content))
                try:
                    output.send(conn)
                except (BrokenPipeError, ConnectionResetError):
                    logging.info("connection lost while replying, worker exiting")
                    return 0
                except Exception as e:  # noqa: BLE001 — e.g. an oversized item: nothing was written yet
                    logging.exception("cannot encode the handler's reply")
                    error_output(e, prefix="cannot encode the handler's reply: ").send(conn)
        finally:
            conn.close()
            if self.args.sock_type != "tcp":
                for p in (self._socket_path(), self._socket_path() + ".pid"):
                    if os.path.exists(p):
                        os.unlink(p)

    # --- requests --------------------------------------------------------------------------------
    def _init_properties(self, inputs: Input):
        a = self.args
        inputs.properties["device_id"] = str(a.device_id)
        inputs.properties["cluster_size"] = str(a.cluster_size)
        inputs.properties.setdefault("tensor_parallel_degree", str(a.tensor_parallel_degree))
        inputs.properties.setdefault("pipeline_parallel_degree", str(a.pipeline_parallel_degree))

    def _ensure_service(self, function_name: str):
        if self.service is None:
            self.service = load_model_service(self.entry_point, self.model_dir)
        rec = self.recommended_entry_point
        if not self.service.has_function(function_name) and rec and rec != self.service.entry_point:
            logging.info("%s has no function '%s'; falling back to the recommended entry point %s",
                         self.service.entry_point, function_name, rec)
            self.service = load_model_service(rec, self.model_dir)

    def handle(self, inputs: Input) -> Output:
        function_name = inputs.get_function_name() or "handle"
        inputs.properties.setdefault("model_dir", self.model_dir)
        if inputs.is_empty():
            self._init_properties(inputs)
        started = time.time()
        try:
            self._ensure_service(function_name)
        except Exception as e:  # noqa: BLE001 — reported to the server as a failed init
            logging.exception("failed to load entry point %s", self.entry_point or "model.py")
            return error_output(e, prefix=f"failed to load entry point '{self.entry_point or 'model.py'}': ")
        try:
            result = self.service.invoke_handler(function_name, inputs)
        except Exception as e:  # noqa: BLE001 — one bad request must not take the worker down
            logging.exception("handler '%s' failed", function_name)
            return error_output(e)
        if result is None:
            return Output(code=204, message="No content")
        if not isinstance(result, Output):
            logging.error("handler '%s' returned %s, not an Output", function_name, type(result).__name__)
            return Output().error("Invalid output type")
        logging.debug("handler '%s' took %.1f ms", function_name, (time.time() - started) * 1000)
        return result
