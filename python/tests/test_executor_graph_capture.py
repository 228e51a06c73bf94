# graph_capture.collector_paused: the cyclic garbage collector is off inside the block and back as it was after;
# the outermost block collects once on entry and inner blocks (one per graph capture in a capture loop) do not.
import gc
import os
import sys
import unittest
import weakref

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lmi_executor.graph_capture import collector_paused  # noqa: E402


class _Node:
    pass


def _cyclic_garbage() -> weakref.ref:
    """A weak reference to a two-object cycle that only the cyclic collector can free."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


class CollectorPausedTest(unittest.TestCase):
    def setUp(self):
        self.was_enabled = gc.isenabled()
        gc.enable()

    def tearDown(self):
        (gc.enable if self.was_enabled else gc.disable)()

    def test_outermost_block_collects_once_and_pauses(self):
        before = _cyclic_garbage()
        with collector_paused():
            self.assertIsNone(before())  # collected on entry
            self.assertFalse(gc.isenabled())
            inside = _cyclic_garbage()
            with collector_paused():  # a capture inside the loop: no collection of its own
                self.assertIsNotNone(inside())
                self.assertFalse(gc.isenabled())
            self.assertFalse(gc.isenabled())  # the inner block leaves the loop's pause alone
            self.assertIsNotNone(inside())
        self.assertTrue(gc.isenabled())
        gc.collect()
        self.assertIsNone(inside())

    def test_collector_off_before_stays_off(self):
        gc.disable()
        garbage = _cyclic_garbage()
        with collector_paused():
            self.assertIsNotNone(garbage())
        self.assertFalse(gc.isenabled())
        gc.collect()
        self.assertIsNone(garbage())

    def test_restored_when_the_block_raises(self):
        with self.assertRaises(RuntimeError):
            with collector_paused():
                raise RuntimeError("capture failed")
        self.assertTrue(gc.isenabled())


if __name__ == "__main__":
    unittest.main()
