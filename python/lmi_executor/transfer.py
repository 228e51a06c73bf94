# Small host lists (token ids, row indices, per-request settings) to the device. Invariant: a launch never
# waits for the GPU. Steps are launched ahead of the GPU (pipelined steps), and a copy from pageable memory
# goes through the driver's small staging buffer: once earlier copies still queued behind a running step
# hold it, the next copy blocks until the GPU gets there (measured: every prefill launch of a 256-request
# burst waited for the step before it). So every copy to a CUDA device is staged in one pinned ring
# buffer per device, allocated once; a region is reused only after the event recorded behind its copy has
# passed. to_device makes a new device tensor; copy_into fills a fixed one (a CUDA graph's static inputs).
from collections import deque

import torch

_RING_BYTES = 64 << 20  # a prefill step stages ~0.1 MB: hundreds of steps can be in flight before a wait
_ALIGN = 256


class PinnedRing:
    """Regions of one pinned buffer, handed out in order and wrapped around; `events` makes the GPU-side
    bookkeeping replaceable in tests (it must give objects with record(), synchronize() and query())."""

    def __init__(self, nbytes: int = _RING_BYTES, pin: bool = True, events=None):
        self.buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pin)
        self.size, self.head = nbytes, 0
        self.busy = deque()  # (start, end, event), oldest first
        self.new_event = events or torch.cuda.Event

    def reserve(self, n: int) -> int:
        """Start offset of n free bytes (waiting for the oldest copies if they still hold them)."""
        n = (n + _ALIGN - 1) // _ALIGN * _ALIGN
        if n > self.size:
            raise ValueError(f"a {n}-byte host-to-device copy exceeds the {self.size}-byte staging ring")
        if self.head + n > self.size:
            self.head = 0
        start, end = self.head, self.head + n
        while self.busy and self.busy[0][0] < end and start < self.busy[0][1]:
            self.busy.popleft()[2].synchronize()  # in practice long finished: the ring holds many steps
        self.head = end
        return start

    def done_after(self, start: int, n: int) -> None:
        """The region at start is in use until the work queued so far on the current stream has run. Regions
        whose copies have run are forgotten here, so the queue stays short (one event per copy otherwise
        lives until the ring wraps)."""
        while self.busy and self.busy[0][2].query():
            self.busy.popleft()
        ev = self.new_event()
        ev.record()
        self.busy.append((start, start + n, ev))

    def copy_into(self, dst: torch.Tensor, t: torch.Tensor) -> None:
        """dst (contiguous, t's shape and dtype, on the device) <- t (host), queued on the current stream."""
        n = t.numel() * t.element_size()
        if n == 0:
            return
        start = self.reserve(n)
        staged = self.buf[start : start + n].view(t.dtype).view(t.shape)
        staged.copy_(t)
        dst.copy_(staged, non_blocking=True)
        self.done_after(start, n)

    def to_device(self, t: torch.Tensor, device) -> torch.Tensor:
        out = torch.empty(t.shape, dtype=t.dtype, device=device)
        self.copy_into(out, t)
        return out


_RINGS = {}


def _ring(device: torch.device) -> PinnedRing:
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    ring = _RINGS.get(device)
    if ring is None:
        ring = _RINGS[device] = PinnedRing()
    return ring


def to_device(values, device, dtype=None) -> torch.Tensor:
    t = torch.tensor(values, dtype=dtype)
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return _ring(device).to_device(t, device)


def copy_into(dst: torch.Tensor, t: torch.Tensor) -> None:
    """dst[...] = t (a host tensor of dst's shape and dtype) without the host waiting for the GPU: staged in
    the device's ring on CUDA, a plain copy elsewhere."""
    if dst.device.type != "cuda":
        dst.copy_(t)
        return
    _ring(dst.device).copy_into(dst, t)
