# transfer.PinnedRing: regions are handed out in order, wrap around, and a region is reused only after the
# event recorded behind the copy that used it was waited for (CPU: plain memory and fake events).
import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lmi_executor.transfer import PinnedRing  # noqa: E402


class FakeEvent:
    log = []
    made = 0

    def __init__(self):
        self.id = FakeEvent.made
        FakeEvent.made += 1

    def record(self):
        FakeEvent.log.append(("record", self.id))

    def synchronize(self):
        FakeEvent.log.append(("wait", self.id))

    def query(self):
        return FakeEvent.done


FakeEvent.done = False


class PinnedRingTest(unittest.TestCase):
    def setUp(self):
        FakeEvent.log.clear()
        FakeEvent.made = 0
        FakeEvent.done = False

    def waits(self):
        return [i for kind, i in FakeEvent.log if kind == "wait"]

    def test_regions_in_order_then_wrap_and_wait_for_the_oldest_only(self):
        ring = PinnedRing(4096, pin=False, events=FakeEvent)
        starts = []
        for _ in range(4):
            s = ring.reserve(1000)  # rounded up to 1024
            ring.done_after(s, 1024)
            starts.append(s)
        self.assertEqual(starts, [0, 1024, 2048, 3072])
        self.assertEqual(self.waits(), [])
        s = ring.reserve(1500)  # wraps: overlaps the first two regions, which must be done first
        self.assertEqual(s, 0)
        self.assertEqual(self.waits(), [0, 1])
        ring.done_after(s, 1536)
        s = ring.reserve(100)  # 1536..1792: inside region 1, already waited for
        self.assertEqual(s, 1536)
        self.assertEqual(self.waits(), [0, 1])

    def test_finished_copies_are_forgotten_without_waiting(self):
        ring = PinnedRing(4096, pin=False, events=FakeEvent)
        for _ in range(3):
            ring.done_after(ring.reserve(100), 256)
        self.assertEqual(len(ring.busy), 3)
        FakeEvent.done = True  # every copy queued so far has run
        ring.done_after(ring.reserve(100), 256)
        self.assertEqual(len(ring.busy), 1)
        self.assertEqual(self.waits(), [])

    def test_copy_into_fills_the_given_tensor(self):
        ring = PinnedRing(1024, pin=False, events=FakeEvent)
        dst = torch.zeros((2, 3), dtype=torch.int64)
        ring.copy_into(dst, torch.arange(6, dtype=torch.int64).view(2, 3))
        self.assertTrue(torch.equal(dst, torch.arange(6).view(2, 3)))

    def test_copy_contents_and_oversize_refused(self):
        ring = PinnedRing(1024, pin=False, events=FakeEvent)
        out = ring.to_device(torch.tensor([[1, 2], [3, 4]], dtype=torch.int64), torch.device("cpu"))
        self.assertTrue(torch.equal(out, torch.tensor([[1, 2], [3, 4]])))
        with self.assertRaisesRegex(ValueError, "exceeds the 1024-byte staging ring"):
            ring.reserve(2000)


if __name__ == "__main__":
    unittest.main()
