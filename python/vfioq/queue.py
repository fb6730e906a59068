# SPDX-License-Identifier: MIT
"""A queue pair from Python: commands one at a time (`write`, `read`), or many
at once (`submit`, `submit_batch`) with callbacks or `completions()`."""

import time

from . import _vfioq


class CommandError(Exception):
    """A command the card (or the driver) completed with another status than SUCCESS."""

    def __init__(self, what, completion):
        super().__init__(f"{what}: {completion.status_name} (device status {completion.device_status:#x}, "
                         f"queue {completion.qid}, CID {completion.cid}, {completion.bytes} bytes moved)")
        self.completion = completion


def _is_memory(obj):
    return isinstance(obj, (_vfioq.DmaBuffer, _vfioq.Registration, tuple, list))


class QueuePair:
    """One submission/completion ring pair. It belongs to one thread at a time."""

    def __init__(self, card, qp):
        self._card = card
        self._qp = qp

    # -- what it is
    id = property(lambda self: self._qp.id)
    capacity = property(lambda self: self._qp.capacity)
    outstanding = property(lambda self: self._qp.outstanding)
    closed = property(lambda self: self._qp.closed)
    event_fd = property(lambda self: self._qp.event_fd, doc="interrupt mode: the eventfd (-1 when polled)")

    def stats(self):
        return self._qp.stats()

    # -- many commands at once
    def submit(self, op, devaddr, segments, callback=None, context=None):
        """Queues one command ("write", "read" or "nop") and rings the doorbell; returns its CID.

        `segments` is a list of memory: DmaBuffers, Registrations, or (MEMORY, OFFSET[, LENGTH])
        parts of them. The command holds them until it is reported. With no callback its
        completion waits for completions()."""
        return self._qp.submit(op, devaddr, list(segments), callback, context)

    def prepare(self, op, devaddr, segments, callback=None, context=None):
        """A command made once, to submit in batches as often as wanted: its segments are converted
        here, not at each submission (the fast way to keep a queue at depth from Python)."""
        return self._qp.prepare(op, devaddr, list(segments), callback, context)

    def submit_batch(self, requests):
        """Queues prepared requests, or (OP, DEVADDR, SEGMENTS[, CALLBACK[, CONTEXT]]) tuples, with one
        doorbell; returns how many went (fewer when the queue fills: poll, then submit the rest)."""
        if not isinstance(requests, list):
            requests = list(requests)
        return self._qp.submit_batch([r if isinstance(r, (tuple, _vfioq.Request)) else tuple(r) for r in requests])

    def submit_raw(self, entry, callback=None, context=None):
        """A 64-byte submission entry as it is, but for its CID, which the queue pair fills in."""
        return self._qp.submit_raw(bytes(entry), callback, context)

    def poll(self, max=0):
        """Reaps completions (callbacks run here) and returns how many; never blocks."""
        return self._qp.poll(max)

    def wait(self, timeout=1.0, max=0):
        """Interrupt mode: waits up to `timeout` seconds for the queue's interrupt, then polls. The
        GIL is released while it waits."""
        return self._qp.wait(int(timeout * 1000), max)

    def _reap(self):
        return self._qp.wait(100, 0) if self._qp.event_fd >= 0 else self._qp.poll(0)

    def completions(self, timeout=30.0):
        """Yields the completions of commands submitted without a callback, until none is outstanding.
        Raises TimeoutError when nothing completes for `timeout` seconds."""
        last = time.monotonic()
        while True:
            done = self._qp.take_completions()
            yield from done
            if done:
                last = time.monotonic()
            if self._qp.outstanding == 0:
                yield from self._qp.take_completions()
                return
            if self._reap() == 0 and time.monotonic() - last > timeout:
                raise TimeoutError(f"queue {self.id}: {self._qp.outstanding} commands outstanding and none "
                                   f"completed for {timeout} s")

    # -- one command at a time
    def run(self, op, devaddr, segments, timeout=30.0):
        """Submits one command and returns its completion once it is there; CommandError if it failed."""
        box = []
        self._qp.submit(op, devaddr, list(segments), box.append, None)
        last = time.monotonic()
        while not box:
            if self._reap() == 0 and time.monotonic() - last > timeout:
                raise TimeoutError(f"queue {self.id}: the {op} at card address {devaddr:#x} did not complete "
                                   f"in {timeout} s")
        if not box[0].ok:
            raise CommandError(f"queue {self.id}: {op} at card address {devaddr:#x}", box[0])
        return box[0]

    def write(self, devaddr, data, timeout=30.0):
        """Writes `data` to card memory at `devaddr`. Device memory (a DmaBuffer, a Registration, parts
        or a list of them) goes as it is; any other bytes-like object is copied through a buffer."""
        if _is_memory(data):
            return self.run("write", devaddr, data if isinstance(data, list) else [data], timeout)
        view = memoryview(data).cast("B")
        bounce = self._card.alloc(max(len(view), 1))
        memoryview(bounce)[:len(view)] = view
        return self.run("write", devaddr, [(bounce, 0, len(view))], timeout)

    def read(self, devaddr, into=None, length=None, timeout=30.0):
        """Reads card memory at `devaddr` into device memory `into` (returns the completion), or, given
        `length` alone, returns the bytes read."""
        if into is not None:
            return self.run("read", devaddr, into if isinstance(into, list) else [into], timeout)
        if length is None:
            raise TypeError("read() needs `into` (device memory) or `length`")
        bounce = self._card.alloc(max(length, 1))
        self.run("read", devaddr, [(bounce, 0, length)], timeout)
        return bytes(memoryview(bounce)[:length])

    def close(self):
        """Disables the queue; every outstanding command is reported first."""
        self._qp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._qp.closed:
            self._qp.close()
