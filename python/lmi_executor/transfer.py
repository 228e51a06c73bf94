# Small host lists (token ids, row indices, per-request settings) to the device. Invariant: a launch never
# waits for the GPU. Steps are launched ahead of the GPU (pipelined steps), and a copy from pageable memory
# goes through the driver's small staging buffer: once earlier copies still queued behind a running step
# hold it, the next copy blocks until the GPU gets there (measured: every prefill launch of a 256-request
# burst waited for the step before it). So every copy to a CUDA device is staged in one pinned ring
# buffer, allocated once; a region is reused only after the event recorded behind its copy has passed.
from collections import deque

import torch

_RING_BYTES = 64 << 20  # a prefill step stages ~0.1 MB: hundreds of steps can be in flight before a wait
_ALIGN = 256


class PinnedRing:
    """Regions of one pinned buffer, handed out in order and wrapped around; `events` makes the GPU-side
    bookkeeping replaceable in tests (it must give objects with record() / synchronize())."""

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
        """The region at start is in use until the work queued so far on the current stream has run."""
        ev = self.new_event()
        ev.record()
        self.busy.append((start, start + n, ev))

    def to_device(self, t: torch.Tensor, device) -> torch.Tensor:
        n = t.numel() * t.element_size()
        if n == 0:
            return t.to(device)
        start = self.reserve(n)
        staged = self.buf[start : start + n].view(t.dtype).view(t.shape)
        staged.copy_(t)
        out = staged.to(device, non_blocking=True)
        self.done_after(start, n)
        return out


_RINGS = {}


def to_device(values, device, dtype=None) -> torch.Tensor:
    t = torch.tensor(values, dtype=dtype)
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    ring = _RINGS.get(device)
    if ring is None:
        ring = _RINGS[device] = PinnedRing()
    return ring.to_device(t, device)
